"""Salesforce records into a staging table, the fast path of large reads (loads, polls, drift checks): a Bulk
API 2.0 query job's CSV pages COPYed as they arrive (memory holds one chunk), or REST query pages COPYed row
by row. What the staging table then holds is applied by jobs/apply.py `apply_staged`."""
from __future__ import annotations

import time
from typing import Callable

from core.convert import from_salesforce
from core.sources import rest_fields, stamp_of
from gateway import staging
from gateway.db import Database
from gateway.salesforce import PermanentError, Salesforce, SalesforceError, TransientError

LAST_PAGE = "null"          # Bulk 2.0's Sforce-Locator on the last page; we store the same for REST
JOB_DONE = "JobComplete"
JOB_DEAD = ("Failed", "Aborted")


def wait_for_job(sf: Salesforce, job_id: str, wait_seconds: float, renew: Callable[[], None] | None = None) -> dict:
    """Until the query job is done; `renew()` keeps a runner's lease meanwhile (a job can run for minutes)."""
    delay, waited = 0.05, 0.0
    while True:
        if renew:
            renew()
        job = sf.bulk_query_job(job_id)
        if job["state"] == JOB_DONE or job["state"] in JOB_DEAD:
            return job
        if waited > wait_seconds:
            raise TransientError(0, "JOB_TIMEOUT", f"query job {job_id} still {job['state']}")
        time.sleep(delay)
        waited += delay
        # quick checks while a small job may finish any moment, then gentle on the API allowance
        delay = min(delay * 1.5, 0.5 if waited < 30 else 5.0)


def copy_bulk_page(conn, sf: Salesforce, name: str, job_id: str, locator: str | None, columns: list[str],
                   expected: list[str], page_size: int | None, chunk_bytes: int) -> tuple[str, int]:
    """COPY one Bulk results page into a staging table as it arrives; returns (next locator, rows)."""
    response = sf.bulk_query_results(job_id, locator, page_size)
    try:
        staging.copy_csv(conn, name, columns, _checked(response.iter_content(chunk_bytes), expected))
        return (response.headers.get("Sforce-Locator") or LAST_PAGE,
                int(response.headers.get("Sforce-NumberOfRecords") or 0))
    finally:
        response.close()


def _checked(chunks, expected: list[str]):
    """Pass the CSV through, checking its header names the columns in the order the staging table has
    them (API v49 and older sort them alphabetically)."""
    first = True
    for chunk in chunks:
        if first:
            header = chunk.split(b"\n", 1)[0].decode("utf-8", "replace").strip()
            names = [h.strip().strip('"').lower() for h in header.split(",")]
            if names != expected:
                raise PermanentError(0, "UNEXPECTED_COLUMNS", f"results columns {names} differ from {expected}")
            first = False
        yield chunk


def copy_bulk_pages(db: Database, sf: Salesforce, name: str, job_id: str, columns: list[str], fields: list[str],
                    options, locator: str | None = None,
                    on_page: Callable[[object, str, int], None] | None = None,
                    committed: Callable[[], None] | None = None) -> None:
    """Every results page from `locator` on, each COPYed in its own transaction; `on_page(conn, next locator,
    rows)` runs in that transaction (a load commits its resume position with the page), `committed()` after
    it. `options` gives page_size and chunk_bytes."""
    expected = [f.lower() for f in fields]
    while locator != LAST_PAGE:
        with db.transaction() as conn:
            locator, rows = copy_bulk_page(conn, sf, name, job_id, locator, columns, expected, options.page_size,
                                           options.chunk_bytes)
            if on_page:
                on_page(conn, locator, rows)
        if committed:
            committed()


def stage_bulk_query(db: Database, sf: Salesforce, name: str, soql: str, columns: list[str], fields: list[str],
                     options, include_deleted: bool = False) -> dict:
    """One Bulk API 2.0 query job, whole, into the staging table `name` (created by the caller); the job is
    deleted afterwards whatever happened. `options` gives job_wait_seconds, page_size and chunk_bytes.
    Returns the finished job's info (createdDate: Salesforce's clock when it was created; numberRecordsProcessed)."""
    created = sf.bulk_query_create(soql, include_deleted)
    job_id = created["id"]
    try:
        job = wait_for_job(sf, job_id, options.job_wait_seconds)
        if job["state"] != JOB_DONE:
            raise PermanentError(500, "BULK_JOB_FAILED", job.get("errorMessage") or job["state"])
        copy_bulk_pages(db, sf, name, job_id, columns, fields, options)
        return {**job, "createdDate": created.get("createdDate") or job.get("createdDate")}
    finally:
        try:
            sf.bulk_query_delete(job_id)
        except SalesforceError:
            pass


def copy_rest_page(conn, name: str, columns: list[str], specs, page: dict) -> tuple[str, int]:
    """COPY one REST query page into a staging table; returns (next page URL or LAST_PAGE, rows)."""
    records = page.get("records", [])
    staging.copy_rows(conn, name, columns, (_typed_row(r, specs) for r in records))
    locator = page.get("nextRecordsUrl") if not page.get("done", True) else None
    return locator or LAST_PAGE, len(records)


def _typed_row(record: dict, specs) -> tuple:
    fields = rest_fields(record)
    return (record["Id"], stamp_of({"SystemModstamp": fields.get("SystemModstamp")}),
            (fields.get("IsDeleted") or "false") == "true",
            *(from_salesforce(s, fields.get(s.name)) for s in specs))


def stage_rest_query(db: Database, sf: Salesforce, name: str, soql: str, columns: list[str], specs,
                     first_page: dict | None = None) -> None:
    """Every page of a REST query into the staging table `name`, a transaction per page (`first_page`: the
    query's first page when the caller already asked for it)."""
    page = first_page if first_page is not None else sf.query_page(soql)
    while True:
        with db.transaction() as conn:
            locator, _ = copy_rest_page(conn, name, columns, specs, page)
        if locator == LAST_PAGE:
            return
        page = sf.query_page(next_url=locator)
