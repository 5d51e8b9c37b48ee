"""Heroku Connect's objects in a mapped schema, created idempotently: apps written for HC find them as HC made
them (_trigger_log and _trigger_log_archive as views over our ledger, _hcmeta, _sf_event_log, get_xmlbinary(),
hc_capture_insert_from_row / hc_capture_update_from_row, the hstore extension)."""
from __future__ import annotations

import psycopg
from psycopg import sql

from core.mapping import MappingError
from gateway.db import QUERIES, template


class HcSchemaError(MappingError):
    """The schema holds an object of Heroku Connect's name that is not ours to replace."""


_CAPTURE_FROM_ROW = ("hc_capture_insert_from_row", "hc_capture_update_from_row")


def _run(conn: psycopg.Connection, name: str, **parts) -> None:
    conn.execute(template(name, **parts))


def ensure_hc_objects(conn: psycopg.Connection, schema: str) -> None:
    """Create (or bring up to date) Heroku Connect's objects in `schema`, in the caller's transaction.
    Called for every mapping save (gateway/mapping_store._saved) and by the adopt command once it has moved
    HC's own _trigger_log/_trigger_log_archive tables into the ledger and dropped them: a table of those
    names still present is refused (HcSchemaError), never replaced."""
    # two saves at once would race on CREATE EXTENSION / CREATE OR REPLACE VIEW ("tuple concurrently updated")
    conn.execute(QUERIES["lock_hc_upgrade"])
    for view in ("_trigger_log", "_trigger_log_archive"):
        kind = _relation_kind(conn, schema, view)
        if kind is not None and kind != "v":
            raise HcSchemaError(
                f"{schema}.{view} exists and is not ForceBridge's view (Heroku Connect's own table?): adopt the "
                f"schema (flask --app webapp connect adopt --schema {schema}) to move its rows into the ledger")
    ident, name = sql.Identifier(schema), sql.Literal(schema)
    _run(conn, "create_schema", schema=ident)
    _run(conn, "create_hstore")
    hstore_schema = conn.execute(QUERIES["hstore_schema"]).fetchone()["schema"]
    hstore = sql.Identifier(hstore_schema, "hstore")
    _run(conn, "create_hcmeta", schema=ident)
    _run(conn, "create_sf_event_log", schema=ident)
    if _function_result(conn, schema, "get_xmlbinary", 0) is None:
        _run(conn, "create_get_xmlbinary", schema=ident)   # an adopted HC schema keeps its own (same answer)
    _run(conn, "create_trigger_log_view", schema=ident, schema_name=name)
    _run(conn, "create_trigger_log_archive_view", schema=ident, schema_name=name)
    _run(conn, "drop_trigger_log_update_trigger", schema=ident)
    _run(conn, "create_trigger_log_update_trigger", schema=ident)
    for function in _CAPTURE_FROM_ROW:
        # Heroku Connect's own versions write into its trigger log table: replaced by ours (a different
        # result type cannot be replaced in place)
        result = _function_result(conn, schema, function, 3)
        if result is not None and result != "integer":
            _run(conn, "drop_capture_from_row", function=sql.Identifier(schema, function), hstore=hstore)
    parts = {"schema": ident, "schema_name": name, "hstore": hstore,
             "hstore_to_jsonb": sql.Identifier(hstore_schema, "hstore_to_jsonb")}
    _run(conn, "create_capture_insert_from_row", **parts)
    _run(conn, "create_capture_update_from_row", **parts)


def has_hc_objects(conn: psycopg.Connection, schema: str) -> bool:
    """The schema holds our _trigger_log view (ensure_hc_objects ran for it)."""
    return _relation_kind(conn, schema, "_trigger_log") == "v"


def _relation_kind(conn: psycopg.Connection, schema: str, name: str) -> str | None:
    row = conn.execute(QUERIES["relation_kind"], {"schema": schema, "name": name}).fetchone()
    return row["kind"] if row else None


def _function_result(conn: psycopg.Connection, schema: str, name: str, args: int) -> str | None:
    row = conn.execute(QUERIES["function_result"], {"schema": schema, "name": name, "args": args}).fetchone()
    return row["result"] if row else None
