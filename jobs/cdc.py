"""The CDC subscriber: one per org and topic however many workers run, elected through a Postgres advisory
lock; it stores each batch's replay id in the transaction that stored what the batch brought, resumes
from it after any restart, and reconnects with backoff and jitter.

What events become is the sink's business: `sink(conn, fetched)` runs inside that transaction (the
inbound seam's CDC source plugs in here; nothing calls this module yet, see docs/cdc.md).

    subscriber = Subscriber(db, lambda: PubSubClient(settings), "/data/ChangeEvents", sink)
    threading.Thread(target=subscriber.run, daemon=True).start(); ...; subscriber.stop()
"""
from __future__ import annotations

import logging
import os
import queue
import random
import socket
import threading
import time
from typing import Callable

import psycopg

from core.cdc import reconnect_delay
from gateway.db import QUERIES, Database
from gateway.pubsub import AllocationExceeded, Fetched, PubSubError, ReplayIdRefused

log = logging.getLogger("forcebridge.cdc")
STANDBY_SECONDS = 2.0            # how often a worker that is not the subscriber asks for the lock
# The delivery allocation used up: Salesforce advises staying disconnected for a while (its window is a rolling
# 24 hours; reconnecting at once fails again). Meanwhile the backstop poll covers the objects every COVER_SECONDS.
ALLOCATION_PAUSE_SECONDS = 1800.0
COVER_SECONDS = 600.0            # core.loading.DEFAULT_POLL_SECONDS: as often as a mapping without CDC is polled
MAX_EVENTS = 1000                # the most events stored in one transaction (with prefetch)

Sink = Callable[[psycopg.Connection, Fetched], None]


class LostElection(Exception):
    """The connection that held the subscriber lock is gone: another worker may be subscribing now."""


class Subscriber:
    def __init__(self, db: Database, client_factory: Callable, topic: str, sink: Sink, *,
                 on_refused: Callable[[psycopg.Connection, ReplayIdRefused], None] | None = None,
                 preset: str = "LATEST", batch: int = 100, standby_seconds: float = STANDBY_SECONDS,
                 backoff_base: float = 1.0, backoff_cap: float = 60.0, rng: random.Random | None = None,
                 transaction: Callable | None = None, after_batch: Callable | None = None,
                 on_state: Callable[[str, str | None], None] | None = None, prefetch: bool = False,
                 on_exceeded: Callable[..., None] | None = None,
                 allocation_pause: float = ALLOCATION_PAUSE_SECONDS, cover_seconds: float = COVER_SECONDS,
                 max_events: int = MAX_EVENTS):
        self.db, self.client_factory, self.topic, self.sink = db, client_factory, topic, sink
        self.on_refused = on_refused
        # the delivery allocation used up: `on_exceeded(conn, error, first=)` every cover_seconds while paused
        self.on_exceeded, self.allocation_pause, self.cover_seconds = on_exceeded, allocation_pause, cover_seconds
        # the transaction each batch and its replay id are stored in (the inbound seam's `applying(db)`),
        # what runs after it committed (pending re-reads), who hears of state changes (the console's document)
        self.transaction = transaction or self.db.transaction
        self.after_batch, self.on_state = after_batch, on_state
        # prefetch: the stream is read (and decoded) in a thread of its own, asking for the next batch as one
        # arrives (gateway.pubsub), while this one stores what already came: the batches waiting, up to
        # `max_events` events, in one transaction with the last one's replay id
        self.prefetch, self.max_events = prefetch, max(1, max_events)
        self.preset, self.batch, self.standby_seconds = preset, batch, standby_seconds
        self.backoff_base, self.backoff_cap = backoff_base, backoff_cap
        self.rng = rng or random.Random()
        self.name = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.elected = threading.Event()
        self.terms = 0                  # how many times this one was elected
        self._stopping = threading.Event()
        self._client = None
        self._client_lock = threading.Lock()

    # ------------------------------------------------------------------ lifecycle

    def stop(self) -> None:
        """Ends run() soon: a stream blocked waiting for events is cancelled by closing its channel."""
        self._stopping.set()
        with self._client_lock:
            if self._client is not None:
                self._client.close()

    def run(self) -> None:
        """Stand by until elected, then subscribe until stopped or the lock's connection is lost."""
        while not self._stopping.is_set():
            lock_conn = self._elect()
            if lock_conn is None:
                self._stopping.wait(self.standby_seconds)
                continue
            self.terms += 1
            self.elected.set()
            try:
                self._serve(lock_conn)
            except LostElection:
                log.warning("CDC %s: lost the subscriber lock; standing by", self.topic)
            finally:
                self.elected.clear()
                lock_conn.close()

    def _elect(self) -> psycopg.Connection | None:
        try:
            conn = psycopg.connect(self.db.url, autocommit=True)
        except psycopg.Error as exc:
            log.warning("CDC %s: cannot reach Postgres to elect a subscriber: %s", self.topic, exc)
            return None
        if conn.execute(QUERIES["cdc_try_elect"], {"topic": self.topic}).fetchone()[0]:
            log.info("CDC %s: this worker (%s) is the subscriber", self.topic, self.name)
            return conn
        conn.close()
        return None

    @staticmethod
    def _still_elected(lock_conn: psycopg.Connection) -> None:
        try:
            lock_conn.execute("SELECT 1")
        except psycopg.Error as exc:
            raise LostElection(str(exc)) from None

    # ------------------------------------------------------------------ subscribing

    def _serve(self, lock_conn: psycopg.Connection) -> None:
        attempt = 0
        connected = False
        while not self._stopping.is_set():
            client = stream = reader = None
            try:
                self._still_elected(lock_conn)
                position = self.db.fetchone("cdc_position", {"topic": self.topic})["replay_id"]
                client = self._new_client()
                stream = client.subscribe(self.topic, replay_id=bytes(position) if position else None,
                                          preset=self.preset, batch=self.batch,
                                          **({"prefetch": True} if self.prefetch else {}))
                if self.prefetch:
                    reader = _Reader(stream, ahead=max(1, self.max_events // max(1, self.batch)))
                for fetched in (reader.batches(self.max_events) if reader else stream):
                    self._still_elected(lock_conn)
                    self._store(fetched)
                    if attempt or not connected:
                        connected = True
                        self._notify("connected", None)
                    attempt = 0
                    if self.after_batch is not None:
                        self.after_batch(fetched)
                    if self._stopping.is_set():
                        break
            except ReplayIdRefused as exc:
                log.error("CDC %s: Salesforce refused the stored replay id (%s); starting again from %s, what "
                          "was missed needs a poll", self.topic, exc.error_code, self.preset)
                with self.db.transaction() as conn:
                    self.db.run(conn, "cdc_replay_refused", {"topic": self.topic, "error": str(exc)})
                    if self.on_refused is not None:
                        self.on_refused(conn, exc)
                connected = False
                if self.after_batch is not None:
                    self.after_batch(None)      # the poll on_refused queued, now
            except AllocationExceeded as exc:
                log.error("CDC %s: Salesforce's event delivery allocation is used up (%s); staying disconnected for "
                          "%.0f s, polling meanwhile", self.topic, exc.error_code, self.allocation_pause)
                connected = False
                self._pause(exc, lock_conn)
            except LostElection:
                raise
            except Exception as exc:          # noqa: BLE001 - Salesforce, Postgres or the sink: retry later
                if self._stopping.is_set():
                    break
                delay = reconnect_delay(attempt, self.rng.random(), base=self.backoff_base, cap=self.backoff_cap)
                attempt += 1
                if isinstance(exc, PubSubError):
                    log.warning("CDC %s: %s; reconnecting in %.1f s", self.topic, exc, delay)
                else:
                    log.exception("CDC %s: failed; starting again from the stored position in %.1f s", self.topic,
                                  delay)
                self._set_state("reconnecting", f"{type(exc).__name__}: {exc}")
                self._stopping.wait(delay)
            finally:
                if reader is not None:
                    reader.close()
                elif stream is not None:
                    stream.close()
                if client is not None:
                    self._drop_client(client)       # a read blocked on the stream ends here
                if reader is not None:
                    reader.join()
        self._set_state("stopped", None)

    def _pause(self, exc: AllocationExceeded, lock_conn: psycopg.Connection) -> None:
        """Stay disconnected for about allocation_pause (jittered, so several orgs' connectors do not return
        together), asking on_exceeded to cover the objects every cover_seconds (`first`: the pause's first turn);
        then subscribe again from the stored replay id. Only while still elected: a worker that lost the lock
        queues no polls beside the new subscriber's."""
        self._set_state("allocation_exceeded", f"{exc.error_code}: {exc.message}")
        until = time.monotonic() + self.allocation_pause * (1 + 0.25 * self.rng.random())
        first = True
        while not self._stopping.is_set():
            self._still_elected(lock_conn)
            if self.on_exceeded is not None:
                try:
                    with self.db.transaction() as conn:
                        self.on_exceeded(conn, exc, first=first)
                    first = False
                    if self.after_batch is not None:
                        self.after_batch(None)      # the polls on_exceeded queued, now
                except Exception:                   # noqa: BLE001 - Postgres away: the next turn tries again
                    log.exception("CDC %s: cannot queue the polls that cover the paused subscription", self.topic)
            left = until - time.monotonic()
            if left <= 0:
                return
            self._stopping.wait(min(self.cover_seconds, left))

    def _store(self, fetched: Fetched) -> None:
        """The sink's writes and the new position in one transaction: both or neither."""
        commits = [c.stamp.committed_at for c in fetched.changes]
        with self.transaction() as conn:
            if fetched.changes or fetched.failed:
                self.sink(conn, fetched)
            self.db.run(conn, "cdc_advance", {
                "topic": self.topic, "replay_id": fetched.latest_replay_id, "subscriber": self.name,
                "events": len(fetched.changes) + len(fetched.failed),
                "last_commit_at": max(commits) if commits else None})

    def _set_state(self, state: str, error: str | None) -> None:
        try:
            self.db.execute("cdc_set_state", {"topic": self.topic, "state": state, "error": error,
                                              "subscriber": self.name})
        except psycopg.Error as exc:
            log.warning("CDC %s: cannot record state %s: %s", self.topic, state, exc)
        self._notify(state, error)

    def _notify(self, state: str, error: str | None) -> None:
        if self.on_state is not None:
            self.on_state(state, error)

    def _new_client(self):
        client = self.client_factory()
        with self._client_lock:
            self._client = client
        if self._stopping.is_set():
            client.close()
        return client

    def _drop_client(self, client) -> None:
        with self._client_lock:
            if self._client is client:
                self._client = None
        client.close()


_END = object()


class _Reader:
    """Iterates a subscribe() stream in its own thread, so the next batches travel and are decoded while the
    subscriber stores one. At most `ahead` batches wait here (memory stays bounded; the stream's own credit
    stops the server beyond that). The stream's error, if any, is raised to the consumer in order."""

    def __init__(self, stream, ahead: int):
        self._waiting: queue.Queue = queue.Queue(maxsize=ahead)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(stream,), name="cdc-reader", daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        try:
            for fetched in stream:
                if not self._put(fetched):
                    return
            self._put(_END)
        except BaseException as exc:    # noqa: BLE001 - handed to the consumer, which decides
            self._put(exc)
        finally:
            stream.close()

    def _put(self, item) -> bool:
        while not self._closed.is_set():
            try:
                self._waiting.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def batches(self, max_events: int):
        """Fetched after Fetched, what already waits merged into one (up to `max_events` events): its changes
        in arrival order, the last one's replay id. The stream's end or error comes after what preceded it."""
        held = None
        while True:
            item, held = (held, None) if held is not None else (self._waiting.get(), None)
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            merged, count = [item], _size(item)
            while count < max_events:
                try:
                    item = self._waiting.get_nowait()
                except queue.Empty:
                    break
                size = _size(item)
                if size is None or count + size > max_events:
                    held = item             # next round, after this merge is stored
                    break
                merged.append(item)
                count += size
            yield merge(merged)

    def close(self) -> None:
        self._closed.set()

    def join(self) -> None:
        self._thread.join(10)


def _size(item) -> int | None:
    """Events a waiting item brings (a keepalive: 0); None for the stream's end or error."""
    if item is _END or isinstance(item, BaseException):
        return None
    return len(item.changes) + len(item.failed)


def merge(batches: list[Fetched]) -> Fetched:
    """Consecutive FetchResponses as one: every change and unreadable event in order, the last position."""
    if len(batches) == 1:
        return batches[0]
    last = batches[-1]
    return Fetched([c for b in batches for c in b.changes], last.latest_replay_id, last.pending, last.rpc_id,
                   [f for b in batches for f in b.failed])
