"""Initial loads and reloads: Salesforce -> staging table page by page (COPY), then one merge statement.
Every page commits with its locator, so a load that dies continues from the last page it committed."""
from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from typing import Callable

import psycopg

from core import soql
from core.convert import parse_datetime
from core.loading import progress, staging_columns
from core.mapping import Mapping
from gateway import mapping_store, staging
from gateway.db import QUERIES, Database
from gateway.salesforce import PermanentError, Salesforce, SalesforceError, TransientError
from jobs import apply
from jobs.staged_read import JOB_DEAD, LAST_PAGE, copy_bulk_pages, copy_rest_page, wait_for_job

log = logging.getLogger("forcebridge.load")


@dataclass(frozen=True)
class LoadOptions:
    page_size: int | None = None      # maxRecords per Bulk results page (None: Salesforce picks)
    rest_max: int = 10_000            # objects up to this size load through REST query paging (fewer calls)
    lease_seconds: int = 300          # renewed on every page; a runner silent that long is presumed dead
    job_wait_seconds: float = 3600.0
    chunk_bytes: int = 1 << 20
    on_page: Callable[[dict], None] | None = None   # called after each committed page with the load row


class LoadBusy(Exception):
    """Another runner holds this load's lease."""


class LoadGone(Exception):
    """The load's row vanished under the runner (its mapping was deleted)."""


def staging_name(load_id: int) -> str:
    return f"load_staging_{load_id}"


def request(db: Database, mapping_id: int, requested_by: str = "api") -> dict:
    """Queue a load of the mapping, or return the one already queued or running."""
    with db.transaction() as conn:
        row = db.run(conn, "request_load", {"mapping_id": mapping_id, "requested_by": requested_by}).fetchone()
        return row or db.run(conn, "open_load", {"mapping_id": mapping_id}).fetchone()


def request_in(conn, mapping: Mapping, requested_by: str) -> None:
    """Mapping hook: queue the first load inside the mapping's own transaction."""
    if mapping.reads and mapping.active:
        conn.execute(QUERIES["request_load"], {"mapping_id": mapping.id, "requested_by": requested_by})


def run_pending(db: Database, sf: Salesforce, options: LoadOptions = LoadOptions()) -> list[dict]:
    """Run every queued load and every load whose runner died; returns their final rows."""
    finished = []
    for row in db.fetchall("loads_to_run"):
        try:
            done = run(db, sf, row["id"], options)
        except LoadBusy:
            continue
        if done is not None:
            finished.append(done)
    return finished


def run(db: Database, sf: Salesforce, load_id: int, options: LoadOptions = LoadOptions()) -> dict:
    runner = uuid.uuid4().hex
    row = db.fetchone("claim_load", {"id": load_id, "lease_seconds": options.lease_seconds, "runner": runner})
    if row is None:
        current = db.fetchone("get_load", {"id": load_id})
        if current is None or current["state"] in ("done", "failed", "cancelled"):
            return current
        raise LoadBusy(f"load {load_id} is running elsewhere")
    mapping = mapping_store.get(db, row["mapping_id"])
    try:
        if mapping is None:
            return _set_state(db, row, "cancelled", "the mapping was deleted")
        if row["state"] == "running":
            row = _fetch(db, sf, mapping, row, options)
        done = _merge(db, sf, mapping, row)
        _reload_if_filter_changed(db, mapping)
        return done
    except LoadGone:
        _drop_staging(db, load_id)
        return None
    except LoadBusy:
        raise   # the lease is someone else's now: leave it alone
    except TransientError as exc:
        # Salesforce is away for now: keep every page so far, let the backstop continue later
        log.warning("load %s paused: %s", load_id, exc)
        db.execute("release_load", {"id": load_id, "error": str(exc), "runner": runner})
        raise
    except (SalesforceError, psycopg.errors.DataError, psycopg.errors.IntegrityError) as exc:
        # Salesforce refused, or Postgres refused a value: trying again would fail again; the load says why
        if _set_state(db, row, "failed", str(exc)) is None:
            raise LoadBusy(f"load {load_id} was taken over by another runner") from exc
        _drop_staging(db, load_id)
        raise
    except BaseException as exc:
        db.execute("release_load", {"id": load_id, "error": f"interrupted: {type(exc).__name__}: {exc}",
                                    "runner": runner})
        raise


def _set_state(db: Database, row: dict, state: str, error: str | None = None, merged: int | None = None):
    """None when the load is not this runner's any more."""
    return db.fetchone("set_load_state", {"id": row["id"], "state": state, "error": error, "merged": merged,
                                          "runner": row["runner"]})


def _drop_staging(db: Database, load_id: int) -> None:
    with db.transaction() as conn:
        staging.drop(conn, staging_name(load_id))


# -- fetching --------------------------------------------------------------------------------------------
def _fetch(db: Database, sf: Salesforce, m: Mapping, row: dict, options: LoadOptions) -> dict:
    name = staging_name(row["id"])
    if row["method"] is not None:
        with db.transaction() as conn:
            present = staging.count(conn, name)
        if present != row["loaded"]:
            log.warning("load %s: staging holds %s rows, %s expected; starting over", row["id"], present, row["loaded"])
            row = {**row, "method": None}
    if row["method"] is None:
        row = _begin(db, sf, m, row, options)
    if row["method"] == "bulk":
        return _fetch_bulk(db, sf, m, row, options)
    return _fetch_rest(db, sf, m, row, options)


def _begin(db: Database, sf: Salesforce, m: Mapping, row: dict, options: LoadOptions) -> dict:
    total = sf.count(m.object_name)
    method, job_id, snapshot = "rest", None, None
    if total > options.rest_max:
        job = sf.bulk_query_create(soql.records(m))
        method, job_id, snapshot = "bulk", job["id"], parse_datetime(job["createdDate"])
    with db.transaction() as conn:
        name = staging_name(row["id"])
        staging.drop(conn, name)
        staging.create(conn, name, m)
        db.run(conn, "start_load_query", {"id": row["id"], "method": method, "sf_job_id": job_id, "total": total,
                                          "snapshot_at": snapshot})
    log.info("load %s of %s: %s records by %s", row["id"], m.object_name, total, method)
    return {**row, "method": method, "sf_job_id": job_id, "total": total, "snapshot_at": snapshot,
            "locator": None, "loaded": 0, "pages": 0}


def _renew(db: Database, row: dict, options: LoadOptions) -> None:
    if db.fetchone("renew_load_lease", {"id": row["id"], "runner": row["runner"],
                                        "lease_seconds": options.lease_seconds}) is None:
        if db.fetchone("get_load", {"id": row["id"]}) is None:
            raise LoadGone()
        raise LoadBusy(f"load {row['id']} was taken over by another runner")


def _fetch_bulk(db: Database, sf: Salesforce, m: Mapping, row: dict, options: LoadOptions) -> dict:
    waited = time.monotonic()
    try:
        job = wait_for_job(sf, row["sf_job_id"], options.job_wait_seconds, renew=lambda: _renew(db, row, options))
    except PermanentError as exc:
        if exc.status != 404:
            raise
        job = {"state": "Failed", "errorMessage": "the query job is gone"}
    if job["state"] in JOB_DEAD:
        if row["pages"] == 0 and row.get("retried"):
            raise PermanentError(400, "BULK_JOB_FAILED", job.get("errorMessage") or job["state"])
        # results expire and jobs fail: the pages so far belong to a snapshot we cannot finish; start over
        log.warning("load %s: query job %s is %s; starting a new one", row["id"], row["sf_job_id"], job["state"])
        row = _begin(db, sf, m, {**row, "method": None}, options)
        return _fetch_bulk(db, sf, m, {**row, "retried": True}, options)
    log.info("load %s: query job %s %s after %.1fs", row["id"], row["sf_job_id"], job["state"],
             time.monotonic() - waited)
    total = job.get("numberRecordsProcessed")
    if total is not None and total != row["total"]:
        db.execute("set_load_total", {"id": row["id"], "total": total})
        row = {**row, "total": total}
    fetching = time.monotonic()
    current = [row]

    def record(conn, locator: str, rows: int) -> None:
        current[0] = _record_page(db, conn, current[0], {"locator": locator, "rows": rows, "total": None}, options)

    copy_bulk_pages(db, sf, staging_name(row["id"]), row["sf_job_id"], staging_columns(m), soql.record_fields(m),
                    options, locator=row["locator"], on_page=record,
                    committed=(lambda: options.on_page(current[0])) if options.on_page else None)
    row = current[0]
    log.info("load %s: results pages fetched in %.1fs (%s pages staged)", row["id"], time.monotonic() - fetching,
             row["pages"])
    return row


def _record_page(db: Database, conn, row: dict, page: dict, options: LoadOptions) -> dict:
    """Move the load's locator and counts in the page's transaction, only while this runner still owns it;
    otherwise the transaction (and the page's COPY) is rolled back."""
    updated = db.run(conn, "record_load_page", {"id": row["id"], "runner": row["runner"], "snapshot_at": None,
                                                "lease_seconds": options.lease_seconds, **page}).fetchone()
    if updated is None:
        if db.run(conn, "get_load", {"id": row["id"]}).fetchone() is None:
            raise LoadGone()
        raise LoadBusy(f"load {row['id']} was taken over by another runner")
    return updated


def _fetch_rest(db: Database, sf: Salesforce, m: Mapping, row: dict, options: LoadOptions) -> dict:
    columns = staging_columns(m)
    specs = list(m.read_fields)
    locator = row["locator"]
    while locator != LAST_PAGE:
        try:
            page = sf.query_page(None if locator else soql.records(m), next_url=locator)
        except PermanentError as exc:
            if exc.error_code != "INVALID_QUERY_LOCATOR":
                raise
            log.warning("load %s: query locator expired; starting over", row["id"])
            row = _begin(db, sf, m, {**row, "method": None}, LoadOptions(rest_max=1 << 62))
            locator = None
            continue
        with db.transaction() as conn:
            locator, rows = copy_rest_page(conn, staging_name(row["id"]), columns, specs, page)
            row = _record_page(db, conn, row, {"locator": locator, "rows": rows, "total": page.get("totalSize")},
                               options)
        if options.on_page:
            options.on_page(row)
    return row


# -- merging ---------------------------------------------------------------------------------------------
def _merge(db: Database, sf: Salesforce, m: Mapping, row: dict) -> dict:
    name = staging_name(row["id"])
    started = time.monotonic()
    if _set_state(db, row, "merging") is None:
        raise LoadBusy(f"load {row['id']} was taken over by another runner")
    with db.transaction(origin="salesforce") as conn:
        # a filter saved while this load ran forgot the rows that left the old one: removing rows by the old
        # filter now would leave them out for good (the reload's merge refuses what a newer removal holds)
        current = mapping_store.get_locked(db, conn, m.id)
        _, merged = apply.apply_staged(conn, name, m, "load")
        if soql.row_filter(m) and current is not None and soql.row_filter(current) == soql.row_filter(m):
            _remove_outside(conn, name, m, row)
        lacking = staging.oldest_missing_modstamp(conn, name, m)
        # REST loads have no job time: the newest record loaded is where polls start (less their overlap).
        # Rows the snapshot lacks (Outbound Messages that came before the load; found by the chaos suite)
        # move the start back, so the poll sees a delete that happened before the snapshot.
        watermark = row["snapshot_at"] or staging.newest_modstamp(conn, name)
        if lacking is not None and (watermark is None or lacking < watermark):
            watermark = lacking
        db.run(conn, "init_poll_state", {"mapping_id": m.id, "watermark": watermark})
        staging.drop(conn, name)
        done = db.run(conn, "set_load_state", {"id": row["id"], "state": "done", "error": None,
                                               "merged": merged, "runner": row["runner"]}).fetchone()
        if done is None:
            if db.run(conn, "get_load", {"id": row["id"]}).fetchone() is None:
                raise LoadGone()
            raise LoadBusy(f"load {row['id']} was taken over by another runner")
    if row["sf_job_id"]:
        try:
            sf.bulk_query_delete(row["sf_job_id"])
        except SalesforceError as exc:   # Salesforce deletes old jobs itself after 7 days
            log.info("could not delete query job %s: %s", row["sf_job_id"], exc)
    log.info("load %s of %s done: %s records, %s rows written (merge %.1fs)", row["id"], m.object_name,
             done["loaded"], merged, time.monotonic() - started)
    return done


def _reload_if_filter_changed(db: Database, m: Mapping) -> None:
    """The row filter changed while this load ran (the change could not queue a load: a mapping has one open
    load): the next load, with the new filter, is queued now."""
    current = mapping_store.get(db, m.id)
    if current is not None and soql.row_filter(current) != soql.row_filter(m) and current.reads and current.active:
        log.info("load of %s: the row filter changed meanwhile; loading again", m.object_name)
        request(db, m.id, "row filter changed")


def _remove_outside(conn, name: str, m: Mapping, row: dict) -> None:
    """A load of a mapping with a row filter (its first, a reload, the one a changed filter queues): rows whose
    records the snapshot lacks are outside the filter (or deleted) and leave the table as records leaving the
    filter do, at the snapshot's time: a Bulk job's creation (Salesforce's clock), else the load's start less
    the poll's overlap (our clock; a row changed after that stays, and the poll's check of records leaving
    the filter removes it if it must go). A row never read from Salesforce (the app created it while the load
    ran: sfid written back, no SystemModstamp) stays for its write's own check. Rows with local changes waiting
    stay until those are sent."""
    at = row["snapshot_at"] or (row["started_at"] - soql.POLL_OVERLAP if row.get("started_at") else None)
    outside = staging.rows_outside_snapshot(conn, name, m, at) if at is not None else []
    if outside:
        removed = staging.remove_left_filter(conn, m, outside, [at] * len(outside), writers_held=True)
        log.info("load %s of %s: %s rows outside the row filter removed", row["id"], m.object_name, removed)


def progress_of(row: dict) -> dict:
    """A load row as the console and the API show it: state, counts, rate and ETA."""
    seconds = float(row.get("seconds") or 0.0)
    if not seconds and row.get("started_at") and row.get("updated_at"):
        seconds = (row["updated_at"] - row["started_at"]).total_seconds()
    p = progress(int(row["loaded"]), row["total"], seconds)
    return {"id": row["id"], "mapping_id": row["mapping_id"], "object_name": row.get("object_name"),
            "state": row["state"], "method": row["method"], "pages": row["pages"], "merged": row["merged"],
            "error": row["error"], "requested_by": row["requested_by"],
            "created_at": _iso(row["created_at"]), "started_at": _iso(row["started_at"]),
            "finished_at": _iso(row["finished_at"]), **p.as_dict()}


def _iso(value):
    return value.isoformat() if value else None
