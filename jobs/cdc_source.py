"""Change Data Capture as a source on the inbound seam (issue 13; docs/cdc.md, docs/architecture.md "How CDC
plugs in"): the subscriber's sink turns each batch of events into `SalesforceChange`s (core.cdc.changes) and
applies them through jobs/apply.py in the transaction that stores the batch's replay id. What an event cannot
say by itself (gap events, updates of records Postgres lacks, GAP_OVERFLOW, a refused replay id) is written to
forcebridge.cdc_pending in that same transaction and done right after it commits (`drain_pending`): records
read whole through REST (`jobs.drift.fetch_by_ids`, budget permitting), or a poll of the object.

The worker starts `run(settings, stop)` in a background thread when Salesforce credentials are set and an active
mapping has `"sf_source": "cdc"` (jobs/consumer.py); one worker of all is the subscriber (jobs/cdc.py).
"""
from __future__ import annotations

import datetime as dt
import logging
import threading

import psycopg
from psycopg.types.json import Jsonb

from core import cdc as core_cdc
from core.mapping import Mapping, sf_source
from gateway import mapping_store
from gateway.db import Database
from jobs import apply, budget, stats
from jobs.apply import applying

log = logging.getLogger("forcebridge.cdc")
TOPIC = "/data/ChangeEvents"
DOCUMENT = "cdc_subscriber"         # read by jobs/alerts.py and the console's Overview
PENDING_BATCH = 1000


def cdc_mappings(db: Database) -> dict[str, Mapping]:
    """Active reading mappings that take their changes from CDC, by lowercase object name."""
    return {name: m for name, m in mapping_store.reading_mappings(db).items() if sf_source(m) == "cdc"}


def types_of(m: Mapping) -> dict:
    return {f.name: f.sf_type for f in m.read_fields}


class Sink:
    """`sink(conn, fetched)` for jobs.cdc.Subscriber: runs in the transaction that stores the replay id."""

    def __init__(self, db: Database):
        self.db = db
        self.echoes = 0           # echoes of our own writes dropped (for tests and the log)

    def __call__(self, conn: psycopg.Connection, fetched) -> None:
        mappings = cdc_mappings(self.db)
        types = {m.id: types_of(m) for m in mappings.values()}
        wanted = {mid: core_cdc.read_names(t) for mid, t in types.items()}
        changes, pending, counts = [], [], {}
        for event in core_cdc.in_commit_order(fetched.changes):
            m = mappings.get(event.object_name.lower())
            if m is None:
                continue                              # an object no CDC mapping reads
            counts[m.id] = counts.get(m.id, 0) + 1
            if event.is_echo():
                self.echoes += 1
                continue
            if event.operation == "gap":
                pending.extend((m.id, "fetch", rid, None, event.change_type) for rid in event.record_ids)
            elif event.operation == "gap_overflow":
                pending.append((m.id, "poll", None, event.stamp.committed_at, event.change_type))
            else:
                try:
                    changes.extend(core_cdc.changes(event, types[m.id], wanted[m.id]))
                except (core_cdc.EventError, ValueError) as exc:
                    log.warning("CDC %s %s: unreadable (%s); reading the records again", event.object_name,
                                event.record_ids, exc)
                    pending.extend((m.id, "fetch", rid, None, str(exc)) for rid in event.record_ids)
                    continue
                if event.diff and event.operation == "update":   # large text sent as a diff: read it whole
                    pending.extend((m.id, "fetch", rid, None, "diff fields") for rid in event.record_ids)
        undeleted: dict[int, list] = {}
        for c in changes:
            if c.operation == "undelete":
                undeleted.setdefault(mappings[c.object_name.lower()].id, []).append(c.record_id)
        for mapping_id, sfids in undeleted.items():     # the delete is reversed: its tombstone goes
            self.db.run(conn, "cdc_forget_deletes", {"mapping_id": mapping_id, "sfids": sfids})
        applied = apply.apply_changes(self.db, conn, changes, mappings) if changes else apply.Applied()
        by_object = {m.object_name.lower(): m for m in mappings.values()}
        pending.extend((by_object[c.object_name.lower()].id, "fetch", c.record_id, None, "not in Postgres yet")
                       for c in applied.refetch)
        mapping_of = {c.key: mappings[c.object_name.lower()].id for c in changes}
        failed: dict[int, int] = {}
        for key, why in applied.failed.items():
            log.warning("CDC change %s not applied: %s", key, why)
            failed[mapping_of.get(key, 0)] = failed.get(mapping_of.get(key, 0), 0) + 1
        keep_failed(self.db, conn, [c for c in changes if c.key in applied.failed], applied.failed)
        add_pending(self.db, conn, pending)
        stats.add(self.db, conn, "sf_to_pg", [(mid, "cdc_events", n) for mid, n in counts.items()]
                  + [(mid, "synced", n) for mid, n in applied.synced.items()]
                  + [(mid, "failed", n) for mid, n in failed.items()])


def keep_failed(db: Database, conn, failed: list, why: dict[str, str]) -> None:
    """Changes Postgres refused (a value the column cannot take, a constraint of the user's own, a delete a foreign
    key restricts) are kept where a refused Outbound Message is: the inbox, state failed, shown on the Errors page.
    The stream moves on. Their id is `cdc:<replay id hex>:<record id>`; the fields kept are what the event
    carried (for the page). Retry reads the record whole instead (`refetch_retried`)."""
    if failed:
        db.run(conn, "insert_notifications", {"org": "", "action": "cdc", "state": "failed", "notifications": Jsonb([
            {"id": f"cdc:{c.key}", "object_name": c.object_name, "sfid": c.record_id, "fields": c.fields,
             "error": why[c.key]} for c in failed])})


def refetch_retried(db: Database, conn, rows: list[dict], mappings: dict[str, Mapping]) -> list[dict]:
    """Inbox rows (jobs/inbound.py) minus the retried CDC changes (id `cdc:…`) of mapped objects: those are not
    replayed (an update event carries only the changed fields: replayed after a later change it would be refused
    by the never-backwards rule, or make a row of those fields alone), but queued in cdc_pending to read the
    record whole by Id (`drain_pending`, which then marks them applied or failed again); state `refetching`."""
    retried = [r for r in rows if r["notification_id"].startswith("cdc:") and r["object_name"].lower() in mappings]
    if not retried:
        return rows
    add_pending(db, conn, [(mappings[r["object_name"].lower()].id, "fetch", r["sfid"], None, "retried from the "
                            "Errors page", r["notification_id"]) for r in retried])
    ids = {r["notification_id"] for r in retried}
    db.run(conn, "cdc_retry_refetching", {"ids": list(ids)})
    return [r for r in rows if r["notification_id"] not in ids]


def add_pending(db: Database, conn, pending: list[tuple]) -> None:
    """(mapping id, kind, record id, since, reason[, inbox notification id]) rows into cdc_pending."""
    if pending:
        db.run(conn, "cdc_pending_add", {"mapping_ids": [p[0] for p in pending], "kinds": [p[1] for p in pending],
                                         "record_ids": [p[2] for p in pending], "sinces": [p[3] for p in pending],
                                         "reasons": [p[4] for p in pending],
                                         "notification_ids": [p[5] if len(p) > 5 else None for p in pending]})


def poll_instead(db: Database, conn, reason: str, topic: str = TOPIC) -> tuple[dict, dt.datetime | None]:
    """Every CDC mapping polled (queued in cdc_pending) from the last applied event's commit time, or its poll's
    watermark if older: what the subscription did not bring. Returns (the mappings, that time)."""
    row = db.run(conn, "cdc_subscription_state", {"topic": topic}).fetchone()
    since = row["last_commit_at"] if row else None
    mappings = cdc_mappings(db)
    for m in mappings.values():
        if since is not None:
            db.run(conn, "cdc_poll_from", {"mapping_id": m.id, "since": since})
    add_pending(db, conn, [(m.id, "poll", None, since, reason) for m in mappings.values()])
    return mappings, since


def on_refused(db: Database, topic: str = TOPIC):
    """The stored replay id is refused (older than the retention, or unknown): every CDC mapping is polled
    from the last applied event's commit time (or its poll's watermark, if older); said in the log and in the
    `cdc_subscriber` document."""
    def refused(conn: psycopg.Connection, exc) -> None:
        mappings, since = poll_instead(db, conn, f"replay id refused: {exc.error_code}", topic)
        message = (f"Salesforce refused the stored replay id ({exc.error_code}); polling "
                   f"{', '.join(sorted(m.object_name for m in mappings.values())) or 'nothing'} from "
                   f"{since.isoformat() if since else 'the last poll'} for what was missed")
        log.error("CDC %s: %s", topic, message)
        write_document(db, conn, False, refused=message)
    return refused


def on_exceeded(db: Database, topic: str = TOPIC):
    """The org's event delivery allocation is used up and the subscriber waits (jobs.cdc.Subscriber._pause): each
    turn polls every CDC mapping, so the objects are no staler than a mapping without CDC. Only the first turn of
    a pause moves the watermarks back to the last applied event; later turns queue a plain poll (from where the
    previous one got to), none if one is still waiting (the API budget's poll pause, say)."""
    def exceeded(conn: psycopg.Connection, exc, first: bool = True) -> None:
        reason = f"delivery allocation exceeded: {exc.error_code}"
        if first:
            mappings, _ = poll_instead(db, conn, reason, topic)
        else:
            mappings = cdc_mappings(db)
            add_pending(db, conn, [(m.id, "poll", None, None, reason) for m in mappings.values()
                                   if not db.run(conn, "cdc_poll_pending", {"mapping_id": m.id}).fetchone()["queued"]])
        log.warning("CDC %s: delivery allocation exceeded; polling %s meanwhile", topic,
                    ", ".join(sorted(m.object_name for m in mappings.values())) or "nothing")
    return exceeded


def drain_pending(db: Database, sf, limit: int = PENDING_BATCH) -> dict:
    """Do what batches left in cdc_pending: records read whole (budget permitting), polls. Each row is deleted
    after its work is done (a crash in between does it again: reading a record again is harmless)."""
    from jobs import drift, poll

    done = {"fetched": 0, "polled": 0, "waiting": 0}
    rows = db.fetchall("cdc_pending_list", {"limit": limit})
    if not rows:
        return done
    fetches: dict[int, list] = {}
    polls: dict[int, list] = {}
    for r in rows:
        (fetches if r["kind"] == "fetch" else polls).setdefault(r["mapping_id"], []).append(r)
    for mapping_id, group in fetches.items():
        m = mapping_store.get(db, mapping_id)
        failed = {}
        if m is not None:
            if not budget.allows(db, "gap_fetches"):
                done["waiting"] += len(group)
                continue
            ids = sorted({r["record_id"] for r in group if r["record_id"]})
            result = poll.PollResult(m.id)
            with sf.work("gap_fetches"):
                drift.fetch_by_ids(db, sf, m, ids, result, source_name="cdc")
            failed = result.failed
            done["fetched"] += len(ids)
        _fetched(db, group, failed, m is not None)
    for mapping_id, group in polls.items():
        m = mapping_store.get(db, mapping_id)
        if m is not None:
            if not budget.allows(db, "polls"):      # the API budget's poll pause holds these too
                done["waiting"] += len(group)
                continue
            with sf.work("polls"):
                result = poll.poll(db, sf, m, force=True)
            if result.skipped and "another poll" in result.skipped:
                done["waiting"] += len(group)
                continue
            done["polled"] += 1
        db.execute("cdc_pending_done", {"ids": [r["id"] for r in group]})
    return done


def _fetched(db: Database, group: list[dict], failed: dict[str, str], mapped: bool) -> None:
    """The reads of `group` are done: its rows go, and the retried changes among them are applied, or failed
    again with Postgres' reason (or unmapped: no active mapping reads the object any more)."""
    retried = [r for r in group if r["notification_id"]]
    with db.transaction() as conn:
        if retried:
            db.run(conn, "cdc_retry_done", {
                "ids": [r["notification_id"] for r in retried],
                "states": [("failed" if r["record_id"] in failed else "applied") if mapped else "unmapped"
                           for r in retried],
                "errors": [failed.get(r["record_id"]) for r in retried]})
        db.run(conn, "cdc_pending_done", {"ids": [r["id"] for r in group]})


def write_document(db: Database, conn, connected: bool, **more) -> None:
    """The `cdc_subscriber` document (jobs/alerts.py: "CDC subscriber disconnected"; the console's Overview).
    `since` changes only when `connected` does."""
    row = db.run(conn, "get_document", {"key": DOCUMENT}).fetchone()
    old = row["value"] if row else {}
    since = old.get("since") if old.get("connected") == connected and old.get("since") else \
        dt.datetime.now(dt.timezone.utc).isoformat()
    # what only some states say survives the others: a refused replay id, the objects not selected for CDC
    value = {k: v for k, v in old.items() if k in ("refused", "unselected")}
    value.update({"connected": connected, "since": since, "topic": TOPIC, **more})
    db.run(conn, "put_document", {"key": DOCUMENT, "value": Jsonb(value)})


def wanted(settings, db: Database) -> bool:
    """A CDC subscriber is wanted: Salesforce credentials are set and an active mapping says sf_source cdc."""
    from gateway.salesforce import configured

    if not settings.database_url or not configured(settings):
        return False
    try:
        return bool(cdc_mappings(db))
    except psycopg.Error:
        return False


def run(settings, stop: threading.Event, *, db: Database | None = None, check_seconds: float = 10.0,
        **subscriber_options) -> None:
    """The worker's background thread: while a CDC mapping exists, stand for election and subscribe; stop
    when `stop` is set. Pending work (gap fetches, polls) is drained after each stored batch."""
    from gateway.pubsub import PubSubClient
    from gateway.salesforce import Salesforce
    from jobs.cdc import Subscriber

    own_db = db is None
    # its own small pool: a batch's transaction and the reads beside it never wait for the worker's tasks
    db = db or Database(settings.database_url, max_size=3, name="forcebridge-cdc")
    rest = None
    try:
        while not stop.is_set():
            if not wanted(settings, db):
                stop.wait(check_seconds)
                continue
            rest = rest or Salesforce(settings)
            subscriber = Subscriber(
                db, lambda: PubSubClient(settings, rest), TOPIC, Sink(db), on_refused=on_refused(db),
                on_exceeded=on_exceeded(db),
                transaction=lambda: applying(db), after_batch=lambda fetched: _after_batch(db, rest, fetched),
                on_state=lambda state, error: _on_state(db, state, error, lambda: PubSubClient(settings, rest)),
                **{"prefetch": True, **subscriber_options})
            thread = threading.Thread(target=subscriber.run, name="cdc-subscriber", daemon=True)
            thread.start()
            while not stop.is_set() and thread.is_alive():
                stop.wait(check_seconds)
                if not wanted(settings, db):
                    log.info("CDC: no mapping takes its changes from CDC any more; unsubscribing")
                    break
            subscriber.stop()
            thread.join(10)
    finally:
        if rest is not None:
            rest.close()
        if own_db:
            db.close()


def _after_batch(db: Database, sf, fetched) -> None:
    from jobs import row_filters

    try:
        drain_pending(db, sf)
    except Exception:   # noqa: BLE001 - the rows stay in cdc_pending; the next batch tries again
        log.exception("CDC: pending re-reads failed; they stay queued")
    try:
        if row_filters.pending(db):     # records of mappings with a row filter the batch touched
            row_filters.check_pending(db, sf)
    except Exception:   # noqa: BLE001 - the rows stay in filter_checks; the next batch or the minute task tries
        log.exception("CDC: row filter checks failed; they stay queued")


def unselected(client, mappings: dict[str, Mapping]) -> list[str]:
    """Objects of CDC mappings that have no channel of their own in Salesforce (GetTopic answers NOT_FOUND or
    PERMISSION_DENIED): not selected for Change Data Capture in Setup, or not readable by the integration user.
    /data/ChangeEvents brings nothing of them; only the backstop poll does.

    This relies on an assumption no Salesforce reference confirms: that GetTopic on `/data/<Object>ChangeEvent`
    of an entity not selected answers NOT_FOUND (the emulator does). If Salesforce answered it normally, an
    unselected object would not be named here (the safe side: nothing is named wrongly); docs/cdc.md."""
    from gateway.pubsub import PubSubError

    missing = []
    for m in mappings.values():
        try:
            client.get_topic(core_cdc.channel(m.object_name))
        except PubSubError as exc:
            if exc.status not in ("NOT_FOUND", "PERMISSION_DENIED"):
                raise
            missing.append(m.object_name)
    return sorted(missing)


def _on_state(db: Database, state: str, error: str | None, client_factory=None) -> None:
    """The document follows the subscriber's state; on connecting, it also names the CDC objects Salesforce does
    not publish (`unselected`)."""
    extra = {"state": state, "error": error}
    if state == "connected" and client_factory is not None:
        try:
            client = client_factory()
            try:
                extra["unselected"] = unselected(client, cdc_mappings(db))
            finally:
                client.close()
        except Exception as exc:   # noqa: BLE001 - a check for the console: the subscription goes on without it
            log.warning("CDC: cannot check which objects are selected for Change Data Capture: %s", exc)
    try:
        with db.transaction() as conn:
            row = db.run(conn, "cdc_subscription_state", {"topic": TOPIC}).fetchone()
            extra["replay_id"] = bytes(row["replay_id"]).hex() if row and row["replay_id"] else None
            write_document(db, conn, state == "connected", **extra)
    except psycopg.Error as exc:
        log.warning("CDC: cannot write the %s document: %s", DOCUMENT, exc)


def status(db: Database) -> dict | None:
    """The subscriber's state for the console's Overview (None: no mapping takes its changes from CDC)."""
    mappings = cdc_mappings(db)
    if not mappings:
        return None
    row = db.fetchone("cdc_subscription_state", {"topic": TOPIC}) or {}
    doc = (db.fetchone("get_document", {"key": DOCUMENT}) or {}).get("value") or {}
    lag = None
    if row.get("last_event_at") and row.get("last_commit_at"):
        lag = max(0.0, (row["last_event_at"] - row["last_commit_at"]).total_seconds())
    since = doc.get("since")
    # The document and the row are written by the subscriber: with no worker holding the subscription (all of
    # them died) they say what was true when it last wrote, so the state is unknown since then.
    stale = row.get("state") not in (None, "new", "stopped") and \
        not db.fetchone("cdc_subscriber_alive", {"topic": TOPIC})["held"]
    return {"objects": sorted(m.object_name for m in mappings.values()), "topic": TOPIC,
            "connected": bool(doc.get("connected")) and row.get("state") == "connected" and not stale,
            "state": row.get("state"), "error": row.get("error"), "subscriber": row.get("subscriber"),
            "stale": stale, "stale_since": row.get("updated_at") if stale else None,
            "since": dt.datetime.fromisoformat(since) if since else None,
            "last_event_at": row.get("last_event_at"), "lag_seconds": lag,
            "replay_id": bytes(row["replay_id"]).hex() if row.get("replay_id") else None,
            "events_total": row.get("events") or 0, "events_last_hour": db.fetchone("cdc_events_last_hour")["n"],
            "pending": db.fetchone("cdc_pending_count")["n"], "refused": doc.get("refused"),
            "unselected": doc.get("unselected") or []}
