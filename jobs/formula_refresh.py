"""Formula and roll-up freshness: each mapping's calculated fields re-read on its schedule
(`formula_refresh_minutes`, core/formulas.py) and only the rows whose values changed updated, without
touching systemmodstamp or starting a write back. API calls are counted under their own kind (the caller's
`sf.work("formula_refresh")`), so the budget shows them and spaces or pauses them just before the polls."""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

from psycopg.types.json import Jsonb

from core import formulas, soql
from core.mapping import Mapping
from gateway import mapping_store, staging
from gateway.db import Database
from gateway.salesforce import PermanentError, Salesforce
from jobs import load
from jobs.single_run import Run, single_run
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
    error: str | None = None    # the refresh failed (recorded on the mapping's row too); others went on


def refresh_due(db: Database, sf: Salesforce, bulk_above: int = BULK_ABOVE,
                now: dt.datetime | None = None, factor: float = 1.0) -> list[RefreshResult]:
    """Refresh every active reading mapping whose refresh is due (the periodic task calls this each minute).
    One mapping's failure stops no other's."""
    now = now or dt.datetime.now(dt.timezone.utc)
    results = []
    for m in mapping_store.list_all(db):
        if not (m.reads and m.active) or formulas.refresh_minutes(m) == 0:
            continue
        state = db.fetchone("formula_refresh_state", {"mapping_id": m.id})
        if state is not None and (state["next_run_at"] is None or state["next_run_at"] > now):
            continue
        results.append(_isolated(m, lambda m=m: refresh(db, sf, m, bulk_above=bulk_above, factor=factor)))
    return results


def refresh(db: Database, sf: Salesforce, m: Mapping, bulk_above: int = BULK_ABOVE,
            factor: float = 1.0) -> RefreshResult:
    """One refresh of one mapping; two never overlap (advisory lock). It also notes which parents the
    mapping's formulas read (`refresh_children` follows them) and serves the changed parents already queued."""
    result = RefreshResult(m.id)
    parents = None

    def finish(run: Run) -> None:
        result.api_calls, result.error = run.api_calls, run.error
        ran_at = dt.datetime.now(dt.timezone.utc)
        db.execute("finish_formula_refresh", {
            "mapping_id": m.id, "ran_at": ran_at,
            "next_run_at": formulas.next_refresh(m, ran_at, bool(result.fields), factor),
            "fields": result.fields, "checked": result.checked, "updated": result.updated,
            "api_calls": result.api_calls, "error": run.error,
            "parents": None if parents is None else Jsonb(parents)})

    with single_run(db, sf, "lock_formula_refresh", m.id, finish) as run:
        if not run.held:
            result.skipped = "another refresh of this mapping is running"
            return result
        started = db.fetchone("formula_refresh_clock")["now"]
        describe = sf.describe(m.object_name)
        specs = formulas.calculated_fields(m, describe)
        parents = [r.as_document() for r in formulas.parent_references(m, describe)]
        result.fields = [f.name for f in specs]
        if specs:
            _refresh(db, sf, m, specs, [soql.calculated(m, specs)], result, bulk_above)
        db.execute("forget_formula_children", {"mapping_id": m.id, "before": started})
    if result.updated:
        log.info("formula refresh %s: %s of %s rows changed (%s), %s API calls", m.object_name, result.updated,
                 result.checked, ", ".join(result.fields), result.api_calls)
    return result


def refresh_children(db: Database, sf: Salesforce, bulk_above: int = BULK_ABOVE, factor: float = 1.0,
                     now: dt.datetime | None = None) -> list[RefreshResult]:
    """The calculated fields of the children of parents that changed (the apply path queued them): one query
    per PARENTS_PER_QUERY parents (`Lookup IN (...)`), only changed rows updated, at most MAX_TARGETED_PARENTS
    parents per mapping and turn (the oldest; the rest wait for the next turn or the mapping's full refresh,
    which serves them all). One mapping's failure stops no other's; one Salesforce refuses as naming a field
    that is no longer there makes the full refresh (which describes the object again) run now, once."""
    now = now or dt.datetime.now(dt.timezone.utc)
    waiting: dict[int, list[dict]] = {}
    for row in db.fetchall("formula_children_pending", {"limit": formulas.MAX_TARGETED_PARENTS}):
        waiting.setdefault(row["mapping_id"], []).append(row)
    results = []
    for mapping_id, rows in waiting.items():
        m = mapping_store.get(db, mapping_id)
        state = db.fetchone("formula_refresh_state", {"mapping_id": mapping_id})
        if m is None or state is None or not (m.reads and m.active) or formulas.refresh_minutes(m) == 0:
            _served(db, mapping_id, rows)     # nothing refreshes this mapping's formulas
            continue
        if formulas.targeted_due(state, now, factor):
            results.append(_isolated(m, lambda m=m, state=state, rows=rows: _children_or_full(
                db, sf, m, state, rows, bulk_above, factor)))
    return results


def _isolated(m: Mapping, run) -> RefreshResult:
    """One mapping's refresh; a failure (its error is on the mapping's row, for the console) is logged."""
    try:
        return run()
    except Exception as exc:  # noqa: BLE001 - one mapping's failure must not stop the others' refreshes
        log.warning("formula refresh of %s failed: %s", m.object_name, exc)
        return RefreshResult(m.id, error=f"{type(exc).__name__}: {exc}")


def _children_or_full(db: Database, sf: Salesforce, m: Mapping, state: dict, rows: list[dict],
                      bulk_above: int, factor: float) -> RefreshResult:
    try:
        return _refresh_children(db, sf, m, formulas.references_from(state["parents"]), rows, bulk_above)
    except PermanentError as exc:
        if exc.error_code not in formulas.STALE_QUERY_CODES or state["targeted_error"] is not None:
            raise   # not a stale field, or the full refresh already ran after the last such failure
        log.warning("formula refresh of %s's children refused (%s): refreshing it whole", m.object_name, exc)
        return refresh(db, sf, m, bulk_above=bulk_above, factor=factor)


def _refresh_children(db: Database, sf: Salesforce, m: Mapping, parents, rows: list[dict],
                      bulk_above: int) -> RefreshResult:
    result = RefreshResult(m.id)
    by_lookup = {p.lookup.lower(): p for p in parents}

    def finish(run: Run) -> None:
        result.api_calls, result.error = run.api_calls, run.error
        db.execute("finish_targeted_refresh", {
            "mapping_id": m.id, "ran_at": dt.datetime.now(dt.timezone.utc), "checked": result.checked,
            "updated": result.updated, "error": run.error})

    with single_run(db, sf, "lock_formula_refresh", m.id, finish) as run:
        if not run.held:
            result.skipped = "another refresh of this mapping is running"
            return result
        for row in rows:
            reference = by_lookup.get(row["lookup"].lower())
            names = set(reference.fields) if reference else set()
            specs = [f for f in m.overwritten_fields if f.name in names]
            ids = [i for i in row["parent_ids"] if soql.is_record_id(i)]
            if specs and ids:
                step = formulas.PARENTS_PER_QUERY
                queries = [soql.children_calculated(m, reference.lookup, specs, ids[i:i + step])
                           for i in range(0, len(ids), step)]
                _refresh(db, sf, m, specs, queries, result, bulk_above)
                result.fields += [f.name for f in specs if f.name not in result.fields]
            _served(db, m.id, [row])
    if result.updated:
        log.info("formula refresh %s (children of changed parents): %s of %s rows changed, %s API calls",
                 m.object_name, result.updated, result.checked, result.api_calls)
    return result


def _served(db: Database, mapping_id: int, rows: list[dict]) -> None:
    for row in rows:
        db.execute("formula_children_served", {"mapping_id": mapping_id, "lookup": row["lookup"],
                                               "parent_ids": row["parent_ids"], "queued": row["queued"]})


def _refresh(db: Database, sf: Salesforce, m: Mapping, specs, queries: list[str], result: RefreshResult,
             bulk_above: int) -> None:
    """Id and the calculated fields (`specs`) of the records the queries select into a staging table (REST
    pages, or one Bulk job when the first page says there are more than `bulk_above`), then one UPDATE of
    the rows that differ."""
    name = f"formula_staging_{m.id}"
    columns = ["sfid", "systemmodstamp", "isdeleted", *(f.column for f in specs)]
    with db.transaction() as conn:
        staging.drop(conn, name)
        staging.create(conn, name, m, columns)
    try:
        for query in queries:
            first = sf.query_page(query)
            if first.get("totalSize", 0) > bulk_above and not first.get("done", True):
                stage_bulk_query(db, sf, name, query, columns, [*soql.SYSTEM_FIELDS, *(f.name for f in specs)],
                                 load.LoadOptions())
            else:
                stage_rest_query(db, sf, name, query, columns, specs, first_page=first)
        with db.transaction(origin="salesforce") as conn:
            result.checked += staging.count(conn, name) or 0
            result.updated += staging.refresh_calculated(conn, name, m, specs)
    finally:
        with db.transaction() as conn:
            staging.drop(conn, name)
