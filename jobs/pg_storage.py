"""Huey storage in Postgres (HUEY_URL=postgresql://...): the queue survives hosts whose disk does not.
Tables live in the connector's schema (forcebridge.huey_*); several consumers share them safely."""
from __future__ import annotations

import os
import threading
import time

import psycopg
from huey import Huey
from huey.constants import EmptyData
from huey.storage import BaseStorage

from gateway.db import QUERIES, Database


class PostgresStorage(BaseStorage):
    """Huey's storage contract on psycopg 3. Dequeue is `DELETE .. (SELECT .. FOR UPDATE SKIP LOCKED)`,
    so each task goes to exactly one consumer; a consumer waits with LISTEN instead of polling."""

    blocking = True
    priority = True

    def __init__(self, name: str = "huey", dsn: str = "", blocking: bool = True, read_timeout: float = 1.0,
                 max_connections: int = 4, **_ignored):
        super().__init__(name)
        if not dsn:
            raise ValueError("PostgresStorage needs a dsn (postgresql://...)")
        self.dsn = dsn
        self.blocking = blocking
        self.read_timeout = read_timeout
        self.max_connections = max_connections
        self._lock = threading.Lock()
        self._pid = None
        self._db: Database | None = None
        self._local = threading.local()
        self._tables_ready = False

    # -- connections -------------------------------------------------------------------------------

    def _database(self) -> Database:
        """One small pool per process. A process forked from one that used the storage (gunicorn's
        master, say) gets a pool of its own instead of sharing the parent's sockets."""
        with self._lock:
            if self._pid != os.getpid():
                self._pid = os.getpid()
                self._db = Database(self.dsn, min_size=1, max_size=self.max_connections, name=f"huey-{self.name}")
                self._local = threading.local()
                self._tables_ready = False
            db = self._db
            if not self._tables_ready:
                self._create_tables(db)
                self._tables_ready = True
        return db

    @staticmethod
    def _create_tables(db: Database) -> None:
        with db.transaction() as conn:
            if db.run(conn, "huey_tables_exist").fetchone()["ready"]:
                return
            db.run(conn, "huey_ddl_lock")
            db.run(conn, "huey_create_tables")

    def _run(self, name: str, **params):
        db = self._database()
        with db.transaction() as conn:
            cursor = db.run(conn, name, {"queue": self.name, **params})
            return cursor.fetchall() if cursor.description else cursor.rowcount

    def _listener(self) -> psycopg.Connection:
        """A connection of this thread's own that LISTENs for enqueued tasks (autocommit, outside the pool:
        it sits idle in a wait most of its life)."""
        self._database()
        conn = getattr(self._local, "listener", None)
        if conn is not None and (conn.closed or conn.broken):
            conn = None
        if conn is None:
            conn = psycopg.connect(self.dsn, autocommit=True)
            conn.execute(QUERIES["huey_listen"])
            self._local.listener = conn
        return conn

    def close(self):
        with self._lock:
            if self._pid == os.getpid():
                listener = getattr(self._local, "listener", None)
                if listener is not None:
                    listener.close()
                    self._local.listener = None
                if self._db is not None:
                    self._db.close()
            self._pid = None
            self._db = None
        return True

    # -- queue -------------------------------------------------------------------------------------

    def enqueue(self, data, priority=None):
        self._run("huey_enqueue", data=bytes(data), priority=priority or 0)

    def _take(self):
        rows = self._run("huey_dequeue")
        return bytes(rows[0]["data"]) if rows else None

    def dequeue(self):
        if not self.blocking:
            return self._take()
        # LISTEN before the first look: a task enqueued between the look and the wait still wakes us.
        listener = self._listener()
        deadline = time.monotonic() + self.read_timeout
        while True:
            data = self._take()
            if data is not None:
                return data
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                woke = list(listener.notifies(timeout=remaining, stop_after=1))
            except psycopg.OperationalError:
                listener.close()
                raise
            if not woke:
                return None

    def queue_size(self):
        return self._run("huey_queue_size")[0]["n"]

    def enqueued_items(self, limit=None):
        return [bytes(r["data"]) for r in self._run("huey_enqueued_items", limit=limit)]

    def flush_queue(self):
        self._run("huey_flush_queue")

    # -- schedule ----------------------------------------------------------------------------------

    def add_to_schedule(self, data, ts):
        self._run("huey_add_to_schedule", data=bytes(data), run_at=ts.timestamp())

    def read_schedule(self, ts):
        rows = self._run("huey_read_schedule", run_at=ts.timestamp())
        return [bytes(r["data"]) for r in sorted(rows, key=lambda r: (r["run_at"], r["id"]))]

    def schedule_size(self):
        return self._run("huey_schedule_size")[0]["n"]

    def scheduled_items(self, limit=None):
        return [bytes(r["data"]) for r in self._run("huey_scheduled_items", limit=limit)]

    def flush_schedule(self):
        self._run("huey_flush_schedule")

    # -- results, locks, revocations ---------------------------------------------------------------

    @staticmethod
    def _key(key) -> str:
        return key.decode("utf-8") if isinstance(key, bytes) else key

    def put_data(self, key, value, is_result=False):
        self._run("huey_put_data", key=self._key(key), value=bytes(value))

    def peek_data(self, key):
        rows = self._run("huey_peek_data", keys=[self._key(key)])
        return bytes(rows[0]["value"]) if rows else EmptyData

    def peek_many(self, keys):
        wanted = {self._key(k): k for k in keys}
        rows = self._run("huey_peek_data", keys=list(wanted))
        return {wanted[r["key"]]: bytes(r["value"]) for r in rows}

    def pop_data(self, key):
        rows = self._run("huey_pop_data", key=self._key(key))
        return bytes(rows[0]["value"]) if rows else EmptyData

    def has_data_for_key(self, key):
        return bool(self._run("huey_peek_data", keys=[self._key(key)]))

    def put_if_empty(self, key, value, ttl=None):
        if ttl is not None:
            raise NotImplementedError("ttl is not supported by this storage.")
        return bool(self._run("huey_put_if_empty", key=self._key(key), value=bytes(value)))

    def incr(self, key, amount=1):
        return self._run("huey_incr", key=self._key(key), amount=amount)[0]["value"]

    def delete_counter(self, key):
        self._run("huey_delete_counter", key=self._key(key))

    def result_store_size(self):
        return self._run("huey_result_store_size")[0]["n"]

    def result_items(self):
        return {r["key"]: bytes(r["value"]) for r in self._run("huey_result_items")}

    def flush_results(self):
        self._run("huey_flush_results")

    def flush_counters(self):
        self._run("huey_flush_counters")


class PostgresHuey(Huey):
    storage_class = PostgresStorage
