"""The polling backstop: what no Outbound Message brought (deletes, messages dropped after 24 h, changes
made while we were down) is fetched by SystemModstamp above each mapping's watermark."""
from __future__ import annotations

import contextlib
import datetime as dt
import logging
from dataclasses import dataclass, field

from core.convert import from_salesforce, parse_datetime, utc_naive
from core.inbound import InboxItem, plan_apply
from core.loading import (by_ids_soql, changed_since_soql, newest_modstamp, poll_settings, record_fields,
                          recycle_bin_soql, rest_datetime, select_fields, staging_columns)
from core.mapping import Mapping
from gateway import change_log, mapping_store, staging
from gateway.db import Database
from gateway.salesforce import PermanentError, Salesforce
from jobs import conflicts, load, stats
from jobs.inbound import upsert_isolating_failures

log = logging.getLogger("forcebridge.poll")
IDS_PER_QUERY = 200          # keeps a SOQL "Id IN (...)" well under the URL length limit
# Like Heroku Connect: more changed records than this come through a Bulk API 2.0 job, not REST pages.
BULK_ABOVE = 10_000


@dataclass
class PollResult:
    mapping_id: int
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
    with db.transaction() as lock:
        if not db.run(lock, "lock_poll", {"mapping_id": m.id}).fetchone()["locked"]:
            result.skipped = "another poll of this mapping is running"
            return result
        state = db.fetchone("get_poll_state", {"mapping_id": m.id})
        if state is None:
            result.skipped = "no load has finished yet"
            return result
        error = None
        with sf.tally() as calls:
            try:
                _poll_changes(db, sf, m, state, settings, result, bulk_above)
                if settings.delete_mode == "getDeleted":
                    _poll_deletes(db, sf, m, state, settings, result)
            except Exception as exc:  # noqa: BLE001 - the error is recorded for the console, then raised
                error = f"{type(exc).__name__}: {exc}"
                raise
            finally:
                result.api_calls = calls[0]
                db.execute("finish_poll", _finish(m, result, settings.seconds or 3600, sf, error))
                _count(db, m, result)
    if result.changed or result.deleted:
        log.info("poll %s: %s changed, %s deleted, %s API calls", m.object_name, result.changed, result.deleted,
                 result.api_calls)
    return result


def _poll_changes(db, sf, m, state, settings, result, bulk_above: int) -> None:
    """Changed records oldest first, a page per transaction; queryAll brings deleted ones in the same calls."""
    include_deleted = settings.delete_mode == "queryAll"
    page = sf.query_page(changed_since_soql(m, state["watermark"]), include_deleted=include_deleted)
    if page.get("totalSize", 0) > bulk_above and not page.get("done", True):
        _poll_changes_bulk(db, sf, m, state, settings, result, include_deleted)
        return
    while True:
        records = page.get("records", [])
        with _applying(db) as conn:
            apply_records(db, conn, m, records, settings.keep_deleted, result)
            db.run(conn, "advance_poll", {"mapping_id": m.id, "watermark": newest_modstamp(records),
                                          "deleted_since": None})
        if page.get("done", True) or not page.get("nextRecordsUrl"):
            return
        page = sf.query_page(next_url=page["nextRecordsUrl"])


def _poll_changes_bulk(db, sf, m, state, settings, result, include_deleted: bool) -> None:
    """Many changes (a long outage, a mass update): one Bulk job into a staging table, deletes applied, the
    rest merged in one statement by the load's rule (rows with local changes waiting keep their values)."""
    name = f"poll_staging_{m.id}"
    job_id = sf.bulk_query_create(changed_since_soql(m, state["watermark"], ordered=False), include_deleted)["id"]
    with db.transaction() as conn:
        staging.drop(conn, name)
        staging.create(conn, name, m)
    try:
        job = load._wait_for_job(sf, job_id, load.LoadOptions())
        if job["state"] != load.JOB_DONE:
            raise PermanentError(500, "BULK_JOB_FAILED", job.get("errorMessage") or job["state"])
        locator, expected = None, [n.lower() for n in select_fields(m)]
        while locator != load.LAST_PAGE:
            with db.transaction() as conn:
                locator, _ = load.copy_bulk_page(conn, sf, name, job_id, locator, staging_columns(m), expected,
                                                 load.LoadOptions())
        with db.transaction(origin="salesforce") as conn:
            newest = staging.newest_modstamp(conn, name)
            result.deleted += staging.apply_staged_deletes(conn, name, m, settings.keep_deleted)
            result.changed += staging.merge(conn, name, m, fresh=True)
            db.run(conn, "advance_poll", {"mapping_id": m.id, "watermark": newest, "deleted_since": None})
    finally:
        with db.transaction() as conn:
            staging.drop(conn, name)
        try:
            sf.bulk_query_delete(job_id)
        except PermanentError:
            pass


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
    gone = answer.get("deletedRecords") or []
    with db.transaction(origin="salesforce") as conn:
        if gone:
            result.deleted += staging.delete_rows(
                conn, m, [g["id"] for g in gone], [parse_datetime(g["deletedDate"]) for g in gone],
                settings.keep_deleted)
        covered = answer.get("latestDateCovered")
        db.run(conn, "advance_poll", {"mapping_id": m.id, "watermark": None,
                                      "deleted_since": parse_datetime(covered) if covered else None})


def _poll_recycle_bin(db, sf, m, start, settings, result) -> None:
    """Deleted records from `start` on, every page; each page moves deleted_since forward in its own
    transaction, so the next poll neither reads them again nor misses any."""
    page = sf.query_page(recycle_bin_soql(m, start), include_deleted=True)
    while True:
        records = page.get("records", [])
        with _applying(db) as conn:
            apply_records(db, conn, m, records, settings.keep_deleted, result)
            newest = newest_modstamp(records)
            if newest and newest > start:
                db.run(conn, "advance_poll", {"mapping_id": m.id, "watermark": None, "deleted_since": newest})
        if page.get("done", True) or not page.get("nextRecordsUrl"):
            return
        page = sf.query_page(next_url=page["nextRecordsUrl"])


@contextlib.contextmanager
def _applying(db: Database):
    """The transaction that applies Salesforce's records, opened after captured changes moved into the change
    log, where apply_records' guards (conflicts.settle) look for local changes."""
    change_log.absorb(db)
    with db.transaction(origin="salesforce") as conn:
        yield conn


def apply_records(db: Database, conn, m: Mapping, records: list[dict], keep_deleted: bool,
                  result: PollResult) -> None:
    """REST records into the mapped table through the inbound path's rules: newest wins, echoes of our
    own writes dropped, conflicts with local changes settled; deleted records deleted (or marked)."""
    live = [r for r in records if not r.get("IsDeleted")]
    gone = [r for r in records if r.get("IsDeleted")]
    if live:
        # the overlap brings back records Postgres already holds in that very state: leave those rows alone
        known = staging.known_rows(conn, m, [r["Id"] for r in live])
        live = [r for r in live if not _holds(known.get(r["Id"]), r, m)]
    if live:
        items = [InboxItem(f"poll:{r['Id']}", m.object_name, r["Id"], record_fields(r)) for r in live]
        plan = plan_apply(items, {m.object_name.lower(): m})
        result.failed.update({i.split(":", 1)[1]: reason for i, reason in plan.failed.items()})
        for batch in plan.batches:
            batch = conflicts.settle(db, conn, batch)
            if batch.sfids:
                failures = upsert_isolating_failures(conn, batch)
                result.failed.update({i.split(":", 1)[1]: reason for i, reason in failures.items()})
                result.changed += len(batch.sfids) - len(failures)
    if gone:
        stamps = [parse_datetime(r["SystemModstamp"]) if r.get("SystemModstamp") else None for r in gone]
        result.deleted += staging.delete_rows(conn, m, [r["Id"] for r in gone], stamps, keep_deleted)


def _holds(row: dict | None, record: dict, m: Mapping) -> bool:
    """Postgres has this record in exactly this state. SystemModstamp has whole seconds only, so two
    changes in one second share a stamp: the values decide."""
    if row is None or row["_hc_err"] or not record.get("SystemModstamp") or row["isdeleted"]:
        return False
    if row["systemmodstamp"] != utc_naive(parse_datetime(record["SystemModstamp"])):   # UTC, no zone
        return False
    fields = record_fields(record)
    try:
        return all(row.get(f.column) == from_salesforce(f, fields.get(f.name)) for f in m.read_fields if f.name in fields)
    except ValueError:
        return False


def fetch_by_ids(db: Database, sf: Salesforce, m: Mapping, ids: list[str], keep_deleted: bool,
                 result: PollResult) -> None:
    """Bring these records up to date (drift repair): queryAll by Id; a record Salesforce no longer has at
    all is deleted like one in the recycle bin."""
    for i in range(0, len(ids), IDS_PER_QUERY):
        chunk = ids[i:i + IDS_PER_QUERY]
        records = []
        page = sf.query_page(by_ids_soql(m, chunk), include_deleted=True)
        while True:
            records.extend(page.get("records", []))
            if page.get("done", True) or not page.get("nextRecordsUrl"):
                break
            page = sf.query_page(next_url=page["nextRecordsUrl"])
        seen = {r["Id"] for r in records}
        vanished = [sfid for sfid in chunk if sfid not in seen]
        with _applying(db) as conn:
            apply_records(db, conn, m, records, keep_deleted, result)
            if vanished:
                result.deleted += staging.delete_rows(conn, m, vanished, [None] * len(vanished), keep_deleted)


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
