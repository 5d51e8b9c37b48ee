"""Drift checks: every Salesforce Id and SystemModstamp against the mapped table; repairs on request go
through the poll's path (same rules as every other Salesforce -> Postgres write)."""
from __future__ import annotations

import logging

from psycopg.types.json import Jsonb

from core.loading import SYSTEM_SELECT, poll_settings
from core.mapping import Mapping
from gateway import staging
from gateway.db import Database
from gateway.salesforce import Salesforce, SalesforceError
from jobs import load, poll

log = logging.getLogger("forcebridge.drift")
REPAIR_LIMIT = 1_000_000


def staging_name(m: Mapping) -> str:
    return f"drift_staging_{m.id}"


def check(db: Database, sf: Salesforce, m: Mapping, repair: bool = False,
          options: load.LoadOptions = load.LoadOptions()) -> dict:
    """Compare, store the report, repair if asked (reading mappings only: a pg_to_sf table is the source of
    its own rows). Returns the report row."""
    name = staging_name(m)
    with db.transaction() as conn:
        staging.drop(conn, name)
        staging.create(conn, name, m, staging.KEY_COLUMNS)
    try:
        _fetch_keys(db, sf, m, name, options)
        with db.transaction() as conn:
            counts, samples = staging.drift(conn, name, m)
            report = db.run(conn, "insert_drift_report", {"mapping_id": m.id, **counts,
                                                          "samples": Jsonb(samples)}).fetchone()
        if repair and m.reads and (counts["missing"] or counts["extra"] or counts["stale"]):
            report = _repair(db, sf, m, name, report)
    finally:
        with db.transaction() as conn:
            staging.drop(conn, name)
    return report


def _fetch_keys(db: Database, sf: Salesforce, m: Mapping, name: str, options: load.LoadOptions) -> None:
    soql = f"SELECT {', '.join(SYSTEM_SELECT)} FROM {m.object_name}"
    total = sf.count(m.object_name)
    if total > options.rest_max:
        job_id = sf.bulk_query_create(soql)["id"]
        try:
            job = load._wait_for_job(sf, job_id, options)
            if job["state"] != load.JOB_DONE:
                raise SalesforceError(0, "BULK_JOB_FAILED", job.get("errorMessage") or job["state"])
            locator = None
            expected = [n.lower() for n in SYSTEM_SELECT]
            while locator != load.LAST_PAGE:
                with db.transaction() as conn:
                    locator, _ = load.copy_bulk_page(conn, sf, name, job_id, locator, staging.KEY_COLUMNS,
                                                     expected, options)
        finally:
            try:
                sf.bulk_query_delete(job_id)
            except SalesforceError:
                pass
        return
    page = sf.query_page(soql)
    while True:
        with db.transaction() as conn:
            locator, _ = load.copy_rest_page(conn, name, staging.KEY_COLUMNS, [], page)
        if locator == load.LAST_PAGE:
            return
        page = sf.query_page(next_url=locator)


def _repair(db: Database, sf: Salesforce, m: Mapping, name: str, report: dict) -> dict:
    with db.transaction() as conn:
        ids = [sfid for kind in ("missing", "stale", "extra")
               for sfid in staging.drift_ids(conn, name, m, kind, REPAIR_LIMIT)]
    result = poll.PollResult(m.id)
    poll.fetch_by_ids(db, sf, m, ids, poll_settings(m).keep_deleted, result)
    repaired = {"requested": len(ids), "written": result.changed, "deleted": result.deleted,
                "failed": len(result.failed)}
    log.info("drift repair of %s: %s", m.object_name, repaired)
    return db.fetchone("set_drift_repaired", {"id": report["id"], "repaired": Jsonb(repaired)})


def as_json(report: dict) -> dict:
    return {"id": report["id"], "mapping_id": report["mapping_id"], "object_name": report.get("object_name"),
            "checked_at": report["checked_at"].isoformat(), "salesforce_records": report["sf_count"],
            "postgres_rows": report["pg_count"], "missing_in_postgres": report["missing"],
            "deleted_in_salesforce": report["extra"], "older_in_postgres": report["stale"],
            "not_yet_in_salesforce": report["unsynced"], "in_sync": not (report["missing"] or report["extra"]
                                                                          or report["stale"]),
            "samples": report["samples"], "repaired": report["repaired"]}
