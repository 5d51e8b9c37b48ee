"""The write path's SQL on mapped tables and the change log, composed from sql/queries with psycopg.sql."""
from __future__ import annotations

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from core.change_states import Action, State, from_states, target
from core.changes import ChangeLogEntry
from core.mapping import Mapping
from gateway.db import QUERIES, Database, template
from gateway.mapped_tables import table_ident


def _template(name: str, m: Mapping, **parts) -> sql.Composed:
    return template(name, table=table_ident(m), **parts)


ABSORB_SLICE = 50_000
ANALYZE_AFTER = 10_000      # rows moved at once that make the change log's statistics stale


def absorb(db: Database) -> int:
    """Move captured changes (change_capture, migration 0004) into the change log, a slice per transaction so
    a burst of a million captured rows never holds one long transaction. Returns how many moved."""
    moved = 0
    while True:
        with db.transaction() as conn:
            n = _move_slice(conn, None)
        moved += n
        if n < ABSORB_SLICE:
            if moved >= ANALYZE_AFTER:
                with db.transaction() as conn:
                    db.run(conn, "analyze_change_log")
            return moved


def absorb_mapping(conn: psycopg.Connection, m: Mapping) -> int:
    """Move one mapping's captured changes in the caller's transaction (which holds the table's writers back,
    so none can appear until it commits). Returns how many moved."""
    moved = 0
    while (n := _move_slice(conn, m.id or 0)) == ABSORB_SLICE:
        moved += n
    return moved + n


def _move_slice(conn: psycopg.Connection, mapping_id: int | None) -> int:
    conn.execute(QUERIES["lock_absorb"])      # movers take turns; held until the transaction ends
    # planned afresh each time: change_capture swings between empty and huge (see the query)
    return conn.execute(QUERIES["absorb_captured_changes"], {"limit": ABSORB_SLICE, "mapping_id": mapping_id},
                        prepare=False).rowcount


def entries_from_rows(rows: list[dict]) -> list[ChangeLogEntry]:
    """Claimed change-log rows (claim_changes, claim_initial_push) in log order."""
    return [ChangeLogEntry(id=r["id"], mapping_id=r["mapping_id"], op=r["op"], record_id=r["record_id"],
                           sfid=r["sfid"], external_id=r["external_id"], fields=tuple(r["fields"] or ()),
                           created_at=r["created_at"], attempts=r["prior_attempts"],
                           excluded=tuple(r.get("excluded") or ()))
            for r in sorted(rows, key=lambda r: r["id"])]


def notify_changes(conn: psycopg.Connection, mapping_id: int) -> None:
    conn.execute(QUERIES["notify_changes"], {"mapping_id": str(mapping_id)})


def generate_external_ids(conn: psycopg.Connection, m: Mapping, ids: list[int]) -> None:
    ext = sql.Identifier(m.field(m.upsert_field).column)
    conn.execute(_template("generate_external_ids", m, ext=ext), {"ids": ids})


def read_rows(conn: psycopg.Connection, m: Mapping, ids: list[int]) -> dict[int, dict]:
    """Record id -> the mapped row as it is now."""
    return {r["id"]: r for r in conn.execute(_template("read_mapped_rows", m), {"ids": ids}).fetchall()}


def write_back_results(conn: psycopg.Connection, m: Mapping, ids: list[int], sfids: list, errs: list,
                       lastops: list) -> None:
    """`errs`: Salesforce's errors as JSON text (None on success); `lastops`: INSERTED or UPDATED."""
    conn.execute(_template("write_back_results", m), {"mapping_id": m.id, "ids": ids, "sfids": sfids, "errs": errs,
                                                      "lastops": lastops})


def merge_inbound_copies(conn: psycopg.Connection, m: Mapping, ids: list[int], sfids: list) -> list[str]:
    """Rows (`ids`) whose records (`sfids`, just created in Salesforce) an inbound path inserted again before
    the write-back: each copy is removed, its open local changes move to the row. Returns the sfids merged."""
    take = sql.SQL(", ").join(
        sql.SQL("{c} = CASE WHEN {name} = ANY(g.local) THEN g.{c} ELSE t.{c} END").format(
            c=sql.Identifier(f.column), name=sql.Literal(f.column)) for f in m.fields)
    ext = m.field(m.upsert_field) if m.upsert_field else None
    is_copy = (sql.SQL("(x.{e} IS NULL OR x.{e} = t.{e})").format(e=sql.Identifier(ext.column)) if ext
               else sql.SQL("true"))
    rows = conn.execute(_template("merge_inbound_copies", m, take_columns=take, is_copy=is_copy),
                        {"mapping_id": m.id, "ids": ids, "sfids": sfids}).fetchall()
    return [r["sfid"] for r in rows]


def pending_local_rows(conn: psycopg.Connection, m: Mapping, sfids: list[str]) -> list[dict]:
    return conn.execute(_template("pending_local_rows", m), {"mapping_id": m.id, "sfids": sfids}).fetchall()


def open_change_bases(conn: psycopg.Connection, m: Mapping, record_ids: list[int]) -> dict[int, list[dict]]:
    """Record id -> its open local changes, oldest first (op, fields, old_values)."""
    out: dict[int, list[dict]] = {}
    for r in conn.execute(QUERIES["open_change_bases"], {"mapping_id": m.id, "record_ids": record_ids}).fetchall():
        out.setdefault(r["record_id"], []).append(r)
    return out


def typed_bases(conn: psycopg.Connection, m: Mapping, bases: dict[int, dict]) -> dict[int, dict]:
    """Record id -> {column: value} with the JSON base values typed by the table's columns (only the columns
    each base names)."""
    if not bases:
        return {}
    ids = list(bases)
    rows = conn.execute(_template("typed_bases", m), {"record_ids": ids,
                                                      "bases": [Jsonb(bases[i]) for i in ids]}).fetchall()
    return {r["fb_record_id"]: {c: r[c] for c in bases[r["fb_record_id"]] if c in r} for r in rows}


def deleted_from_postgres(conn: psycopg.Connection, m: Mapping, sfids: list[str]) -> set[str]:
    return {r["sfid"] for r in conn.execute(_template("deleted_from_postgres", m),
                                            {"mapping_id": m.id, "sfids": sfids}).fetchall()}


def link_rows_by_external_id(conn: psycopg.Connection, m: Mapping, ext_column: str, sfids: list[str],
                             exts: list) -> None:
    conn.execute(_template("link_rows_by_external_id", m, ext=sql.Identifier(ext_column)),
                 {"sfids": sfids, "exts": exts})


def act(db: Database, change_id: int, action: Action) -> dict | None:
    """A person's retry or ignore of one entry, moved as core.change_states decides; the entry's
    (id, mapping_id, record_id, state), or None when its state does not allow it (or it does not exist)."""
    query = "retry_change" if action is Action.RETRY else "ignore_change"
    return db.fetchone(query, {"id": change_id, "from_states": from_states(action), "to_state": str(target(action))})


def retry_all_failed(db: Database) -> int:
    """The console's "retry all": every FAILED entry, as a retry of each would move it."""
    return len(db.fetchall("retry_failed_changes", {"from_state": str(State.FAILED),
                                                    "to_state": str(target(Action.RETRY))}))
