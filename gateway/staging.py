"""Staging tables for loads and drift checks: COPY in, merge into the mapped table in one statement."""
from __future__ import annotations

from typing import Iterable

import psycopg
from psycopg import sql

from core.convert import pg_type
from core.loading import staging_columns
from core.mapping import Mapping
from gateway import change_log
from gateway.db import QUERIES, SCHEMA, template as _q
from gateway.mapped_tables import table_ident

# Only the keys and change stamps: what a drift check compares.
KEY_COLUMNS = ["sfid", "systemmodstamp", "isdeleted"]


def ident(name: str) -> sql.Identifier:
    return sql.Identifier(SCHEMA, name)


def _column_types(m: Mapping, columns: list[str]) -> list[tuple[str, str]]:
    types = {"sfid": "text", "systemmodstamp": "timestamptz", "isdeleted": "boolean"}
    for f in m.fields:
        t = pg_type(f)
        # text in staging: a value too long fails the merge with Postgres's own message, not a COPY mid-page
        types[f.column] = "text" if t.startswith("varchar") else t
    return [(c, types[c]) for c in columns]


def create(conn: psycopg.Connection, name: str, m: Mapping, columns: list[str] | None = None) -> None:
    cols = _column_types(m, columns or staging_columns(m))
    conn.execute(_q("create_staging", staging=ident(name), columns=sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t)) for c, t in cols)))


def drop(conn: psycopg.Connection, name: str) -> None:
    conn.execute(_q("drop_staging", staging=ident(name)))


def truncate(conn: psycopg.Connection, name: str) -> None:
    conn.execute(_q("truncate_staging", staging=ident(name)))


def count(conn: psycopg.Connection, name: str) -> int | None:
    """Rows in the staging table, or None when it is gone (an unlogged table is empty after a Postgres crash)."""
    exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL AS present", (f"{SCHEMA}.{name}",)).fetchone()
    if not exists["present"]:
        return None
    return conn.execute(_q("count_staging", staging=ident(name))).fetchone()["n"]


def _cols(columns: list[str]) -> sql.Composable:
    return sql.SQL(", ").join(sql.Identifier(c) for c in columns)


def copy_csv(conn: psycopg.Connection, name: str, columns: list[str], chunks: Iterable[bytes]) -> None:
    """Stream CSV bytes (one Bulk results page, header line first) into the staging table."""
    query = _q("copy_csv_into_staging", staging=ident(name), columns=_cols(columns))
    with conn.cursor().copy(query) as copy:
        for chunk in chunks:
            copy.write(chunk)


def copy_rows(conn: psycopg.Connection, name: str, columns: list[str], rows: Iterable[tuple]) -> None:
    query = _q("copy_rows_into_staging", staging=ident(name), columns=_cols(columns))
    with conn.cursor().copy(query) as copy:
        for row in rows:
            copy.write_row(row)


def newest_modstamp(conn: psycopg.Connection, name: str):
    return conn.execute(_q("max_staging_modstamp", staging=ident(name))).fetchone()["newest"]


def oldest_missing_modstamp(conn: psycopg.Connection, name: str, m: Mapping):
    """The oldest SystemModstamp among rows with an sfid that the staged snapshot does not hold."""
    return conn.execute(_q("oldest_row_missing_from_staging", table=table_ident(m), staging=ident(name))
                        ).fetchone()["oldest"]


def _hold_writers(conn: psycopg.Connection, m: Mapping) -> None:
    """Make the app's writes to the table wait for this transaction, then move the mapping's captured changes
    into the change log: its guards now see every local change, and none can appear until commit."""
    conn.execute(_q("lock_for_merge", table=table_ident(m)))
    change_log.absorb_mapping(conn, m)


def merge(conn: psycopg.Connection, name: str, m: Mapping, fresh: bool = False) -> int:
    """One statement from staging into the mapped table, under a lock that makes writers wait: a plain INSERT
    when the table is empty (the first load), else link rows by external id and INSERT .. ON CONFLICT with
    the never-backwards guard. `fresh`: the staged state was read just now (a poll), so at an equal stamp it
    wins, as an Outbound Message does. Records deleted in Salesforce at or after their staged state (tombstones)
    are not brought back. Callers go through jobs/apply.py `apply_staged`. Returns rows written."""
    table, staging = table_ident(m), ident(name)
    _hold_writers(conn, m)
    cols = [sql.Identifier(f.column) for f in m.read_fields]
    lead = sql.SQL(", ") if cols else sql.SQL("")
    columns = lead + sql.SQL(", ").join(cols)
    s_columns = lead + sql.SQL(", ").join(sql.SQL("s.{}").format(c) for c in cols)
    # a Postgres-owned column takes Salesforce's value only in a new row
    overwritten = [sql.Identifier(f.column) for f in m.overwritten_fields]
    if conn.execute(_q("mapped_table_is_empty", table=table)).fetchone()["empty"]:
        return conn.execute(_q("insert_staging_into_empty", table=table, staging=staging, columns=columns,
                               s_columns=s_columns, mapping_id=sql.Literal(m.id or 0))).rowcount
    if m.upsert_field and m.field(m.upsert_field):
        conn.execute(_q("link_staging_by_external_id", table=table, staging=staging,
                        ext=sql.Identifier(m.field(m.upsert_field).column)))
    query = _q(
        "merge_staging", table=table, staging=staging, mapping_id=sql.Literal(m.id or 0),
        columns=columns, s_columns=s_columns,
        # SystemModstamp has whole seconds: at an equal stamp the stored row may be the newer one (an Outbound
        # Message for a change in the snapshot's second), so the load only fills what the row lacks
        set_columns=sql.SQL("").join(sql.SQL(
            ", {c} = EXCLUDED.{c}" if fresh else
            ", {c} = CASE WHEN EXCLUDED.systemmodstamp = t.systemmodstamp THEN coalesce(t.{c}, EXCLUDED.{c}) "
            "ELSE EXCLUDED.{c} END").format(c=c) for c in overwritten),
        differs=sql.SQL("").join(sql.SQL(" OR t.{} IS DISTINCT FROM EXCLUDED.{}").format(c, c) for c in overwritten),
    )
    return conn.execute(query).rowcount


def delete_rows(conn: psycopg.Connection, m: Mapping, sfids: list[str], stamps: list, keep: bool) -> int:
    name = "mark_deleted_from_salesforce" if keep else "delete_from_salesforce"
    # remembered, so that a notification built before the delete and delivered after it is not applied
    conn.execute(QUERIES["record_salesforce_deletes"], {"mapping_id": m.id, "sfids": sfids, "stamps": stamps})
    return conn.execute(_q(name, table=table_ident(m)), {"sfids": sfids, "stamps": stamps}).rowcount


def remove_left_filter(conn: psycopg.Connection, m: Mapping, sfids: list[str], stamps: list,
                       writers_held: bool = False) -> int:
    """Records Salesforce says are outside the mapping's row filter at these SystemModstamps: their rows deleted
    unless they changed after that stamp or hold a local change not yet in Salesforce (kept: the drain's check
    after sending decides again), remembered like deletes (marked `left_filter`, forgotten when the filter
    changes). Always deleted, never marked isdeleted (keep_deleted_rows): the records still exist.
    `writers_held`: the caller holds the table's writers back and moved its captured changes (a merge); else
    the rows are locked first. Returns rows deleted."""
    table = table_ident(m)
    if m.writes and m.id is not None:
        # the apply path's lock before any row lock, in that order as everywhere (jobs/apply.py lock_rows): a
        # write-back of creates (which takes it first, then rows) never waits on rows this holds
        conn.execute(QUERIES["lock_inbound_rows"], {"mapping_ids": [m.id]})
    locked = [] if writers_held else [r["id"] for r in conn.execute(_q("lock_left_filter_rows", table=table),
                                                                     {"sfids": sfids})]
    return conn.execute(_q("delete_left_filter", table=table, mapping_id=sql.Literal(m.id or 0)),
                        {"sfids": sfids, "stamps": stamps, "locked": locked}).fetchone()["removed"]


def check_unread_rows(conn: psycopg.Connection, m: Mapping) -> None:
    """Queue for a row filter check the rows no read from Salesforce filled (no SystemModstamp): a load leaves
    them, not knowing whether their records match."""
    conn.execute(_q("filter_checks_add_unread", table=table_ident(m), mapping_id=sql.Literal(m.id or 0)))


def rows_outside_snapshot(conn: psycopg.Connection, name: str, m: Mapping, at) -> list[str]:
    """sfids of rows the staged snapshot (taken at `at`) lacks, read from Salesforce no later than `at`."""
    return [r["sfid"] for r in conn.execute(_q("rows_outside_snapshot", table=table_ident(m), staging=ident(name)),
                                            {"at": at}).fetchall()]


def apply_staged_deletes(conn: psycopg.Connection, name: str, m: Mapping, keep: bool) -> int:
    """Rows the staging table lists as deleted: remembered (tombstones), deleted (or marked) in the mapped table,
    then removed from staging so the merge that follows sees live records only."""
    parts = {"table": table_ident(m), "staging": ident(name)}
    conn.execute(_q("record_staged_deletes", staging=ident(name), mapping_id=sql.Literal(m.id or 0)))
    done = conn.execute(_q("mark_staged_deletes" if keep else "delete_staged_deletes", **parts)).rowcount
    conn.execute(_q("drop_staged_deletes", staging=ident(name)))
    return done


def drift(conn: psycopg.Connection, name: str, m: Mapping, sample: int = 100) -> tuple[dict, dict]:
    """(counts, samples) comparing a staging table of Salesforce keys with the mapped table."""
    parts = {"table": table_ident(m), "staging": ident(name)}
    counts = conn.execute(_q("drift_counts", **parts)).fetchone()
    samples = {kind: [r["sfid"] for r in conn.execute(_q(f"drift_{kind}", **parts), {"limit": sample}).fetchall()]
               for kind in ("missing", "extra", "stale")}
    return dict(counts), samples


def drift_ids(conn: psycopg.Connection, name: str, m: Mapping, kind: str, limit: int) -> list[str]:
    parts = {"table": table_ident(m), "staging": ident(name)}
    return [r["sfid"] for r in conn.execute(_q(f"drift_{kind}", **parts), {"limit": limit}).fetchall()]


def enqueue_push(conn: psycopg.Connection, m: Mapping) -> int:
    """Log every row without sfid (and without an open change) as an insert for the write path."""
    ext_spec = m.field(m.upsert_field) if m.upsert_field else None
    ext = sql.SQL("t.{}::text").format(sql.Identifier(ext_spec.column)) if ext_spec else sql.SQL("NULL::text")
    _hold_writers(conn, m)
    return conn.execute(_q("enqueue_initial_push", table=table_ident(m), mapping_id=sql.Literal(m.id),
                           ext=ext)).rowcount


def rows_without_sfid(conn: psycopg.Connection, m: Mapping) -> int:
    return conn.execute(_q("rows_without_sfid", table=table_ident(m))).fetchone()["n"]



def known_rows(conn: psycopg.Connection, m: Mapping, sfids: list[str]) -> dict[str, dict]:
    """sfid -> the row Postgres holds, for the given records that it has."""
    rows = conn.execute(_q("known_rows", table=table_ident(m)), {"sfids": sfids}).fetchall()
    return {r["sfid"]: r for r in rows}


def refresh_calculated(conn: psycopg.Connection, name: str, m: Mapping, specs) -> int:
    """Calculated columns (`specs`) from staging into the mapped table where they differ; returns rows updated.
    The caller's transaction has origin = salesforce."""
    cols = [sql.Identifier(f.column) for f in specs]
    return conn.execute(_q(
        "refresh_calculated_fields", table=table_ident(m), staging=ident(name),
        set_columns=sql.SQL(", ").join(sql.SQL("{c} = s.{c}").format(c=c) for c in cols),
        differs=sql.SQL(" OR ").join(sql.SQL("t.{c} IS DISTINCT FROM s.{c}").format(c=c) for c in cols),
    )).rowcount
