"""Formula and roll-up freshness: each mapping's calculated fields re-read on its schedule
(`formula_refresh_minutes`, core/formulas.py) and only the rows whose values changed updated, without
touching systemmodstamp or starting a write back. API calls are counted under their own kind (the caller's
`sf.work("formula_refresh")`), so the budget shows them and spaces or pauses them just before the polls."""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

from core import formulas, soql
from core.mapping import Mapping
from gateway import mapping_store, staging
from gateway.db import Database
from gateway.salesforce import Salesforce
from jobs import load
from jobs.staged_read import stage_bulk_query, stage_rest_query

log = logging.getLogger("forcebridge.formula_refresh")
# As the poll: more records than this come through one Bulk API 2.0 query job, not REST pages.
BULK_ABOVE = 10_000


@dataclass
class RefreshResult:
    mapping_id: int
    fields: list[str] = field(default_factory=list)
    checked: int = 0            # records read
    updated: int = 0            # rows whose calculated values changed
    api_calls: int = 0
    skipped: str | None = None


def refresh_due(db: Database, sf: Salesforce, bulk_above: int = BULK_ABOVE,
                now: dt.datetime | None = None, factor: float = 1.0) -> list[RefreshResult]:
    """Refresh every active reading mapping whose refresh is due (the periodic task calls this each minute)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    results = []
    for m in mapping_store.list_all(db):
        if not (m.reads and m.active) or formulas.refresh_minutes(m) == 0:
            continue
        state = db.fetchone("formula_refresh_state", {"mapping_id": m.id})
        if state is not None and (state["next_run_at"] is None or state["next_run_at"] > now):
            continue
        results.append(refresh(db, sf, m, bulk_above=bulk_above, factor=factor))
    return results


def refresh(db: Database, sf: Salesforce, m: Mapping, bulk_above: int = BULK_ABOVE,
            factor: float = 1.0) -> RefreshResult:
    """One refresh of one mapping; two never overlap (advisory lock)."""
    result = RefreshResult(m.id)
    with db.transaction() as lock:
        if not db.run(lock, "lock_formula_refresh", {"mapping_id": m.id}).fetchone()["locked"]:
            result.skipped = "another refresh of this mapping is running"
            return result
        error = None
        with sf.tally() as calls:
            try:
                specs = formulas.calculated_fields(m, sf.describe(m.object_name))
                result.fields = [f.name for f in specs]
                if specs:
                    _refresh(db, sf, m, specs, result, bulk_above)
            except Exception as exc:  # noqa: BLE001 - recorded for the console, then raised
                error = f"{type(exc).__name__}: {exc}"
                raise
            finally:
                result.api_calls = calls[0]
                ran_at = dt.datetime.now(dt.timezone.utc)
                db.execute("finish_formula_refresh", {
                    "mapping_id": m.id, "ran_at": ran_at,
                    "next_run_at": formulas.next_refresh(m, ran_at, bool(result.fields), factor),
                    "fields": result.fields, "checked": result.checked, "updated": result.updated,
                    "api_calls": result.api_calls, "error": error})
    if result.updated:
        log.info("formula refresh %s: %s of %s rows changed (%s), %s API calls", m.object_name, result.updated,
                 result.checked, ", ".join(result.fields), result.api_calls)
    return result


def _refresh(db: Database, sf: Salesforce, m: Mapping, specs, result: RefreshResult, bulk_above: int) -> None:
    """Id and the calculated fields of every record into a staging table (REST pages, or one Bulk job when
    the first page says there are more than `bulk_above`), then one UPDATE of the rows that differ."""
    name = f"formula_staging_{m.id}"
    columns = ["sfid", "systemmodstamp", "isdeleted", *(f.column for f in specs)]
    query = soql.calculated(m, specs)
    with db.transaction() as conn:
        staging.drop(conn, name)
        staging.create(conn, name, m, columns)
    try:
        first = sf.query_page(query)
        if first.get("totalSize", 0) > bulk_above and not first.get("done", True):
            stage_bulk_query(db, sf, name, query, columns, [*soql.SYSTEM_FIELDS, *(f.name for f in specs)],
                             load.LoadOptions())
        else:
            stage_rest_query(db, sf, name, query, columns, specs, first_page=first)
        with db.transaction(origin="salesforce") as conn:
            result.checked = staging.count(conn, name) or 0
            result.updated = staging.refresh_calculated(conn, name, m, specs)
    finally:
        with db.transaction() as conn:
            staging.drop(conn, name)
