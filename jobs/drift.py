"""Drift checks: every Salesforce Id and SystemModstamp against the mapped table; repairs on request go
through the poll's path (same rules as every other Salesforce -> Postgres write)."""
from __future__ import annotations

import logging

from psycopg.types.json import Jsonb

from core import soql, sources
from core.mapping import Mapping
from gateway import staging
from gateway.db import Database
from gateway.salesforce import Salesforce
from jobs import load, poll
from jobs.apply import applying
from jobs.staged_read import stage_bulk_query, stage_rest_query

log = logging.getLogger("forcebridge.drift")
REPAIR_LIMIT = 1_000_000
IDS_PER_QUERY = 200          # keeps a SOQL "Id IN (...)" well under the URL length limit


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
    """Every record's keys into the staging table: a Bulk job above options.rest_max records, else REST pages."""
    if sf.count(m.object_name) > options.rest_max:
        stage_bulk_query(db, sf, name, soql.keys(m), staging.KEY_COLUMNS, list(soql.SYSTEM_FIELDS), options)
    else:
        stage_rest_query(db, sf, name, soql.keys(m), staging.KEY_COLUMNS, [])


def _repair(db: Database, sf: Salesforce, m: Mapping, name: str, report: dict) -> dict:
    with db.transaction() as conn:
        ids = [sfid for kind in ("missing", "stale", "extra")
               for sfid in staging.drift_ids(conn, name, m, kind, REPAIR_LIMIT)]
    result = poll.PollResult(m.id)
    fetch_by_ids(db, sf, m, ids, result)
    repaired = {"requested": len(ids), "written": result.changed, "deleted": result.deleted,
                "failed": len(result.failed)}
    log.info("drift repair of %s: %s", m.object_name, repaired)
    return db.fetchone("set_drift_repaired", {"id": report["id"], "repaired": Jsonb(repaired)})


def fetch_by_ids(db: Database, sf: Salesforce, m: Mapping, ids: list[str], result: poll.PollResult,
                 source_name: str = "drift") -> None:
    """Bring these records up to date (the drift repair; any source that must read records whole, e.g. after
    a gap): queryAll by Id, applied like a poll's pages; a record Salesforce no longer has at all (or whose sfid
    cannot be an Id) is deleted like one in the recycle bin."""
    not_ids = [sources.deleted(m.object_name, sfid, None, source_name) for sfid in ids
               if not soql.is_record_id(sfid)]
    if not_ids:     # rows whose sfid cannot name a Salesforce record: not in Salesforce
        with applying(db) as conn:
            poll.apply_changes(db, conn, m, not_ids, result)
    ids = [sfid for sfid in ids if soql.is_record_id(sfid)]
    for i in range(0, len(ids), IDS_PER_QUERY):
        chunk = ids[i:i + IDS_PER_QUERY]
        records = []
        page = sf.query_page(soql.by_ids(m, chunk), include_deleted=True)
        while True:
            records.extend(page.get("records", []))
            if page.get("done", True) or not page.get("nextRecordsUrl"):
                break
            page = sf.query_page(next_url=page["nextRecordsUrl"])
        seen = {r["Id"] for r in records}
        with applying(db) as conn:
            poll.apply_records(db, conn, m, records, source_name, result)
        unreturned = [sfid for sfid in chunk if sfid not in seen]
        if unreturned:
            settle_unreturned(db, sf, m, unreturned, source_name, result)


def settle_unreturned(db: Database, sf: Salesforce, m: Mapping, ids: list[str], source_name: str,
                      result: poll.PollResult) -> None:
    """Records a read by Id (a queryAll) did not return. Without a row filter they are gone from Salesforce
    and deleted like vanished records. With one, Salesforce is asked which of them do NOT match it (one more
    call): one it still has, not deleted, is outside the filter and its row leaves at that record's
    SystemModstamp (a tombstone marked `left_filter`, forgotten when the filter changes); one in the recycle
    bin is deleted at its stamp. Those neither read returned are asked for without the filter (one more call,
    rare): one Salesforce has matches the filter again since the first read and is queued for another check;
    one it does not have at all is deleted like a vanished record."""
    found, back = {}, set()
    if soql.row_filter(m):      # at most IDS_PER_QUERY ids: one page holds them all
        found = _by_id(sf, soql.outside_by_ids(m, ids))
        neither = [sfid for sfid in ids if sfid not in found]
        if neither:
            back = set(_by_id(sf, soql.stamps_by_ids(m, neither)))
    outside = {sfid: sources.stamp_of(r) for sfid, r in found.items() if not r.get("IsDeleted")}
    gone = [sources.deleted(m.object_name, sfid, sources.stamp_of(found[sfid]) if sfid in found else None,
                            source_name) for sfid in ids if sfid not in outside and sfid not in back]
    with applying(db) as conn:
        if outside:
            result.deleted += staging.remove_left_filter(conn, m, list(outside), list(outside.values()))
        if back:
            db.run(conn, "filter_checks_add", {"mapping_id": m.id, "sfids": sorted(back),
                                               "sources": [source_name] * len(back)})
        poll.apply_changes(db, conn, m, gone, result)


def _by_id(sf: Salesforce, query: str) -> dict[str, dict]:
    """Id -> record of a queryAll of at most IDS_PER_QUERY records (one page)."""
    return {r["Id"]: r for r in sf.query_page(query, include_deleted=True).get("records", [])}


def as_json(report: dict) -> dict:
    return {"id": report["id"], "mapping_id": report["mapping_id"], "object_name": report.get("object_name"),
            "checked_at": report["checked_at"].isoformat(), "salesforce_records": report["sf_count"],
            "postgres_rows": report["pg_count"], "missing_in_postgres": report["missing"],
            "deleted_in_salesforce": report["extra"], "older_in_postgres": report["stale"],
            "not_yet_in_salesforce": report["unsynced"], "in_sync": not (report["missing"] or report["extra"]
                                                                          or report["stale"]),
            "samples": report["samples"], "repaired": report["repaired"]}
