"""The polling backstop: what no Outbound Message brought (deletes, messages dropped after 24 h, changes
made while we were down) is fetched by SystemModstamp above each mapping's watermark."""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

from core import budget, soql, sources
from core.convert import parse_datetime
from core.loading import newest_modstamp, poll_settings, rest_datetime, staging_columns
from core.mapping import Mapping
from gateway import mapping_store, staging
from gateway.db import Database
from gateway.salesforce import PermanentError, Salesforce
from jobs import apply, load, stats
from jobs.apply import applying
from jobs.single_run import Run, single_run
from jobs.staged_read import stage_bulk_query

log = logging.getLogger("forcebridge.poll")
# Like Heroku Connect: more changed records than this come through a Bulk API 2.0 job, not REST pages.
BULK_ABOVE = 10_000


@dataclass
class PollResult:
    mapping_id: int
    read: int = 0               # records the change query read (written or not)
    changed: int = 0            # rows written (new or newer)
    deleted: int = 0
    failed: dict = field(default_factory=dict)   # sfid -> reason
    api_calls: int = 0
    skipped: str | None = None  # why no poll ran


def poll_due(db: Database, sf: Salesforce, bulk_above: int = BULK_ABOVE) -> list[PollResult]:
    """Poll every mapping whose interval has passed (the periodic task calls this each minute)."""
    results = []
    for row in db.fetchall("polls_due"):
        m = mapping_store.get(db, row["mapping_id"])
        if m is not None:
            results.append(poll(db, sf, m, bulk_above=bulk_above))
    return results


def poll(db: Database, sf: Salesforce, m: Mapping, force: bool = False, bulk_above: int = BULK_ABOVE) -> PollResult:
    """One poll of one mapping; two polls of a mapping never overlap (advisory lock)."""
    settings = poll_settings(m)
    result = PollResult(m.id)
    if settings.seconds == 0 and not force:
        result.skipped = "polling is off"
        db.execute("finish_poll", _finish(m, result, 3600))
        return result

    def finish(run: Run) -> None:
        if result.skipped is None:       # a poll ran: what it did (and its error) for the console
            result.api_calls = run.api_calls
            db.execute("finish_poll", _finish(m, result, settings.seconds or 3600, sf, run.error))
            _count(db, m, result)

    with single_run(db, sf, "lock_poll", m.id, finish) as run:
        if not run.held:
            result.skipped = "another poll of this mapping is running"
            return result
        state = db.fetchone("get_poll_state", {"mapping_id": m.id})
        if state is None:
            result.skipped = "no load has finished yet"
            return result
        read_at = _poll_changes(db, sf, m, state, settings, result, bulk_above)
        if soql.row_filter(m):
            _poll_leavers(db, sf, m, state["watermark"], result)
        if read_at is not None:
            # Everything stamped more than the overlap before the query ran was visible to it: the next poll
            # reads from there, not from the newest change (a quiet org's mass change is read once, not forever).
            with db.transaction() as conn:
                db.run(conn, "advance_poll", {"mapping_id": m.id, "watermark": read_at, "deleted_since": None,
                                              "read_from": state["watermark"]})
        if settings.delete_mode == "getDeleted":
            _poll_deletes(db, sf, m, state, settings, result)
    if result.changed or result.deleted:
        log.info("poll %s: %s changed, %s deleted, %s API calls", m.object_name, result.changed, result.deleted,
                 result.api_calls)
    return result


def _poll_changes(db, sf, m, state, settings, result, bulk_above: int) -> dt.datetime | None:
    """Changed records oldest first, a page per transaction; queryAll brings deleted ones in the same calls.
    Returns Salesforce's time no later than the query ran (None if it gave none)."""
    include_deleted = settings.delete_mode == "queryAll"
    choice = choose_api(state, settings.seconds, bulk_above)
    if choice.api == "bulk":
        log.info("poll %s: about %s changes expected, one Bulk job", m.object_name, choice.expected)
        read_at = _poll_changes_bulk(db, sf, m, state, settings, result, include_deleted)
        if result.read > bulk_above:   # fewer: the first page would have been the whole answer, nothing saved
            sf.credit(m.object_name, choice.saved, "polls")
        return read_at
    page, read_at = sf.query_first_page(soql.changed_since(m, state["watermark"]), include_deleted=include_deleted)
    if page.get("totalSize", 0) > bulk_above and not page.get("done", True):
        return _poll_changes_bulk(db, sf, m, state, settings, result, include_deleted)
    while True:
        records = page.get("records", [])
        result.read += len(records)
        with applying(db) as conn:
            apply_records(db, conn, m, records, "poll", result)
            db.run(conn, "advance_poll", {"mapping_id": m.id, "watermark": newest_modstamp(records),
                                          "deleted_since": None, "read_from": state["watermark"]})
        if page.get("done", True) or not page.get("nextRecordsUrl"):
            return read_at
        page = sf.query_page(next_url=page["nextRecordsUrl"])


def choose_api(state: dict, interval_seconds: int, bulk_above: int) -> budget.PollChoice:
    """REST pages or one Bulk job, from the last poll's count (core/budget.py poll_api)."""
    last = state.get("last_polled_at")
    since = (dt.datetime.now(dt.timezone.utc) - last).total_seconds() if last else None
    return budget.poll_api(state.get("last_changed") if last else None, since, interval_seconds or 3600, bulk_above,
                           state.get("last_covered_seconds"))


def _poll_changes_bulk(db, sf, m, state, settings, result, include_deleted: bool) -> dt.datetime | None:
    """Many changes (a long outage, a mass update): one Bulk job into a staging table, deletes applied, the
    rest merged in one statement by the load's rule (rows with local changes waiting keep their values).
    Returns the job's creation time (Salesforce's clock; its query ran no earlier)."""
    name = f"poll_staging_{m.id}"
    with db.transaction() as conn:
        staging.drop(conn, name)
        staging.create(conn, name, m)
    try:
        job = stage_bulk_query(db, sf, name, soql.changed_since(m, state["watermark"], ordered=False),
                               staging_columns(m), soql.record_fields(m), load.LoadOptions(), include_deleted)
        result.read += int(job.get("numberRecordsProcessed") or 0)
        with db.transaction(origin="salesforce") as conn:
            newest = staging.newest_modstamp(conn, name)
            deleted, changed = apply.apply_staged(conn, name, m, "poll", deletes=True)
            result.deleted += deleted
            result.changed += changed
            db.run(conn, "advance_poll", {"mapping_id": m.id, "watermark": newest, "deleted_since": None,
                                          "read_from": state["watermark"]})
    finally:
        with db.transaction() as conn:
            staging.drop(conn, name)
    return parse_datetime(job["createdDate"]) if job.get("createdDate") else None


def _poll_leavers(db, sf, m, watermark, result) -> None:
    """Records changed since the watermark that no longer match the row filter: the filtered query does not
    return them, so their rows are found by asking for the filter's complement (Id and SystemModstamp only) and
    leave the table at that stamp, as deleted records do (a tombstone marked `left_filter`)."""
    page = sf.query_page(soql.left_filter_since(m, watermark))
    while True:
        stamps = {r["Id"]: sources.stamp_of(r) for r in page.get("records", [])}
        with applying(db) as conn:
            held = staging.known_rows(conn, m, list(stamps)) if stamps else {}
            if held:
                result.deleted += staging.remove_left_filter(conn, m, list(held), [stamps[s] for s in held])
        if page.get("done", True) or not page.get("nextRecordsUrl"):
            return
        page = sf.query_page(next_url=page["nextRecordsUrl"])


def _poll_deletes(db, sf, m, state, settings, result) -> None:
    """getDeleted from where the last window ended. Salesforce's clock decides the window's end; ours is only
    a proposal (the response's latestDateCovered is where the next window starts)."""
    fresh = db.fetchone("get_poll_state", {"mapping_id": m.id})
    start = fresh["deleted_since"] or fresh["watermark"]
    if start is None:
        return
    end = max(dt.datetime.now(dt.timezone.utc), fresh["watermark"] or start, start + dt.timedelta(minutes=1))
    try:
        answer = sf.get_deleted(m.object_name, rest_datetime(start), rest_datetime(end))
    except PermanentError as exc:
        # a window older than Salesforce keeps (about 15-30 days): the recycle bin through queryAll instead
        log.warning("getDeleted %s failed (%s); asking queryAll", m.object_name, exc)
        _poll_recycle_bin(db, sf, m, start, settings, result)
        return
    gone = [sources.deleted(m.object_name, g["id"], parse_datetime(g["deletedDate"]), "poll")
            for g in answer.get("deletedRecords") or []]
    with db.transaction(origin="salesforce") as conn:
        if gone:
            apply_changes(db, conn, m, gone, result)
        covered = answer.get("latestDateCovered")
        db.run(conn, "advance_poll", {"mapping_id": m.id, "watermark": None, "read_from": None,
                                      "deleted_since": parse_datetime(covered) if covered else None})


def _poll_recycle_bin(db, sf, m, start, settings, result) -> None:
    """Deleted records from `start` on, every page; each page moves deleted_since forward in its own
    transaction, so the next poll neither reads them again nor misses any."""
    page = sf.query_page(soql.recycle_bin(m, start), include_deleted=True)
    while True:
        records = page.get("records", [])
        with applying(db) as conn:
            apply_records(db, conn, m, records, "poll", result)
            newest = newest_modstamp(records)
            if newest and newest > start:
                db.run(conn, "advance_poll", {"mapping_id": m.id, "watermark": None, "read_from": None,
                                              "deleted_since": newest})
        if page.get("done", True) or not page.get("nextRecordsUrl"):
            return
        page = sf.query_page(next_url=page["nextRecordsUrl"])


def apply_records(db: Database, conn, m: Mapping, records: list[dict], source_name: str,
                  result: PollResult) -> None:
    """REST records (query or queryAll pages) through the one apply path: newest wins, echoes of our own
    writes dropped, conflicts with local changes settled, deleted records deleted (or marked)."""
    collected = sources.collect(((r["Id"], r) for r in records),
                                lambda r: sources.from_rest_record(m.object_name, r, source_name))
    result.failed.update(collected.failed)
    apply_changes(db, conn, m, collected.changes, result)


def apply_changes(db: Database, conn, m: Mapping, changes: list, result: PollResult) -> None:
    """Changes of one mapping's object, counted in the poll's result."""
    if not changes:
        return
    applied = apply.apply_changes(db, conn, changes, {m.object_name.lower(): m})
    result.failed.update(applied.failed)
    result.changed += applied.written
    result.deleted += applied.deleted


def _finish(m: Mapping, result: PollResult, interval: int, sf: Salesforce | None = None,
            error: str | None = None) -> dict:
    usage = sf.api_usage if sf is not None else None
    return {"mapping_id": m.id, "interval": interval, "changed": result.changed, "deleted": result.deleted,
            "calls": result.api_calls, "api_used": usage.used if usage else None,
            "api_limit": usage.limit if usage else None,
            "error": error or (f"{len(result.failed)} records failed: {next(iter(result.failed.values()))}"
                               if result.failed else None)}


def _count(db: Database, m: Mapping, result: PollResult) -> None:
    with db.transaction() as conn:
        stats.add(db, conn, "sf_to_pg", [(m.id, "polled", result.changed), (m.id, "deleted", result.deleted),
                                         (m.id, "failed", len(result.failed)),
                                         (m.id, "poll_api_calls", result.api_calls)])
