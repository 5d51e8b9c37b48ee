"""Capture triggers on mapped tables that write to Salesforce: installed and removed with the mapping."""
from __future__ import annotations

import psycopg
from psycopg import sql

from core.mapping import Mapping
from gateway.db import QUERIES, template
from gateway.mapped_tables import table_ident

_TRIGGERS = {
    "fb_capture_insert": "create_capture_insert_trigger",
    "fb_capture_update": "create_capture_update_trigger",
    "fb_capture_delete": "create_capture_delete_trigger",
    "fb_mark_pending": "create_mark_pending_trigger",
}


def _run(conn: psycopg.Connection, query: str, **parts) -> None:
    conn.execute(template(query, **parts))


def _function(m: Mapping) -> sql.Identifier:
    return sql.Identifier("forcebridge", f"capture_{m.id}")


def install(conn: psycopg.Connection, m: Mapping) -> None:
    """(Re)create the function and triggers for the mapping's current columns, in the caller's transaction."""
    remove(conn, m)
    # a Salesforce-owned column is left out: a change to it alone is neither captured nor marks the row
    columns = [f.column for f in m.sent_fields]
    ext_spec = m.field(m.upsert_field) if m.upsert_field else None
    ext = sql.SQL("r.{}::text").format(sql.Identifier(ext_spec.column)) if ext_spec else sql.SQL("NULL::text")
    changed = sql.SQL(", ").join(
        sql.SQL("CASE WHEN r.{c} IS DISTINCT FROM o.{c} THEN {name} END").format(
            c=sql.Identifier(c), name=sql.Literal(c)) for c in columns)
    old = sql.SQL(", ").join(
        sql.SQL("{name}, CASE WHEN r.{c} IS DISTINCT FROM o.{c} THEN o.{c} END").format(
            c=sql.Identifier(c), name=sql.Literal(c)) for c in columns)
    _run(conn, "create_capture_function", function=_function(m), mapping_id=sql.Literal(m.id), ext=ext,
         changed=changed, old=old)
    new_cols = sql.SQL(", ").join(sql.SQL("NEW.{}").format(sql.Identifier(c)) for c in columns)
    old_cols = sql.SQL(", ").join(sql.SQL("OLD.{}").format(sql.Identifier(c)) for c in columns)
    for trigger, query in _TRIGGERS.items():
        _run(conn, query, name=sql.Identifier(trigger), table=table_ident(m), function=_function(m),
             new_columns=new_cols, old_columns=old_cols)
    _run(conn, "set_lastop_default", table=table_ident(m))


def remove(conn: psycopg.Connection, m: Mapping) -> None:
    for trigger in _TRIGGERS:
        _run(conn, "drop_trigger", name=sql.Identifier(trigger), table=table_ident(m))
    _run(conn, "drop_lastop_default", table=table_ident(m))
    _run(conn, "drop_capture_function", function=_function(m))


def sync_with_mapping(conn: psycopg.Connection, m: Mapping) -> None:
    """Triggers exist exactly while the mapping is active and writes to Salesforce."""
    if m.writes and m.active:
        install(conn, m)
    else:
        remove(conn, m)


def on_deleted(conn: psycopg.Connection, m: Mapping) -> None:
    # the table may stay (drop_table=false); it must stop logging changes nobody will drain
    row = conn.execute(QUERIES["mapped_table_exists"], {"schema": m.table_schema, "table": m.table_name}).fetchone()
    if row["present"]:
        remove(conn, m)

