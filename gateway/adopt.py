"""Taking over a schema Heroku Connect managed, in place (`flask --app webapp connect adopt`): every row and
id stays; Connect's capture and status triggers and the functions behind them go; its trigger log moves into
ours (history archived, unsent entries queued, failures kept visible); Salesforce -> Postgres resumes from the
newest SystemModstamp each table holds. One transaction: an adoption that fails changes nothing."""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from core.mapping import Mapping
from gateway import capture, hc_schema, mapping_store
from gateway.db import Database, template as _q
from gateway.mapped_tables import table_ident

log = logging.getLogger("forcebridge.adopt")


class AdoptError(ValueError):
    """The schema cannot be adopted as it is; the message says why and what to do."""


@dataclass
class Adoption:
    schema: str
    mappings: list[str] = field(default_factory=list)
    dropped_triggers: list[str] = field(default_factory=list)
    dropped_functions: list[str] = field(default_factory=list)
    moved_open: int = 0
    moved_failed: int = 0
    moved_history: int = 0
    watermarks: dict = field(default_factory=dict)     # object -> ISO SystemModstamp, None: a load is queued
    loads_requested: list[int] = field(default_factory=list)
    already_adopted: bool = False


def adopt(db: Database, schema: str, steps: list | None = None, request_load=None,
          connection: dict | None = None) -> Adoption:
    """Adopt `schema`. `steps`: an import plan (core.configuration.plan_import) saved in the same transaction,
    for mappings not created yet, with its `connection` block; `request_load(conn, mapping)` queues the first
    load of an empty table."""
    result = Adoption(schema)
    with db.transaction(origin="salesforce") as conn:
        db.run(conn, "adopt_as_connector")
        objects = {r["name"]: r["kind"] for r in db.run(conn, "adopt_schema_objects", {"schema": schema})}
        if objects.get("_trigger_log") != "r":
            _check_adopted(db, conn, schema, objects, result)
            return result
        if objects.get("_trigger_log_archive") != "r":
            raise AdoptError(f"{schema}._trigger_log_archive is missing: was the whole schema restored?")
        hc_triggers = db.run(conn, "adopt_hc_triggers", {"schema": schema}).fetchall()
        conn.execute(_q("adopt_copy_log", schema=sql.Identifier(schema)))
        _drop_hc_objects(db, conn, schema, hc_triggers, result)
        if steps:
            mapping_store.save_steps(db, conn, steps, adopting=True)
        if connection:
            db.run(conn, "save_connection_config", {"connection": Jsonb(connection), "version": 1})
        mappings = [mapping_store.from_row(r) for r in db.run(conn, "list_mappings").fetchall()]
        mappings = [m for m in mappings if m.table_schema == schema]
        _check_every_table_is_mapped(hc_triggers, mappings, schema)
        result.mappings = [m.object_name for m in mappings]
        for m in mappings:
            capture.sync_with_mapping(conn, m)
        _move_log(db, conn, mappings, result)
        hc_schema.ensure_hc_objects(conn, schema)   # our _trigger_log views, _hcmeta, get_xmlbinary() ...
        for m in mappings:
            _resume_reads(db, conn, m, result, request_load)
        db.run(conn, "record_adoption", {
            "schema": schema, "mappings": result.mappings, "moved_open": result.moved_open,
            "moved_failed": result.moved_failed, "moved_history": result.moved_history,
            "dropped_triggers": result.dropped_triggers, "watermarks": Jsonb(result.watermarks)})
    return result


def _check_adopted(db, conn, schema: str, objects: dict, result: Adoption) -> None:
    """No `_trigger_log` table of Connect's: adopted before (nothing is changed again), or not Connect's."""
    if not db.run(conn, "schema_exists", {"schema": schema}).fetchone()["present"]:
        raise AdoptError(f"there is no schema {schema} in this database: restore the dump first")
    if not db.run(conn, "adoption_of_schema", {"schema": schema}).fetchone():
        if db.run(conn, "adopt_hc_triggers", {"schema": schema}).fetchall():
            raise AdoptError(f"{schema} has Heroku Connect's triggers but no _trigger_log table: restore the whole "
                             "schema (pg_dump --schema) so its unsent changes are not lost")
        raise AdoptError(f"{schema} is not a Heroku Connect schema: it has no _trigger_log table")
    result.already_adopted = True
    result.mappings = [r["object_name"] for r in db.run(conn, "list_mappings").fetchall()
                       if r["table_schema"] == schema]


def _drop_hc_objects(db, conn, schema: str, hc_triggers: list[dict], result: Adoption) -> None:
    for t in hc_triggers:
        conn.execute(_q("adopt_drop_trigger", trigger=sql.Identifier(t["trigger"]),
                        table=sql.Identifier(schema, t["table_name"])))
        result.dropped_triggers.append(f"{t['table_name']}.{t['trigger']}")
    functions = {(t["function_schema"], t["function"], "") for t in hc_triggers
                 if t["function_schema"] == schema and t["function"].startswith("hc_")}
    functions |= {(schema, r["function"], r["arguments"])
                  for r in db.run(conn, "adopt_log_functions", {"schema": schema}).fetchall()}
    conn.execute(_q("adopt_drop_log_tables", schema=sql.Identifier(schema)))
    for fn_schema, name, arguments in sorted(functions):
        conn.execute(_q("adopt_drop_function", function=sql.Identifier(fn_schema, name),
                        arguments=sql.SQL(arguments)))   # argument types as the catalog spells them
        result.dropped_functions.append(f"{fn_schema}.{name}({arguments})")


def _check_every_table_is_mapped(hc_triggers: list[dict], mappings: list[Mapping], schema: str) -> None:
    tables = {t["table_name"] for t in hc_triggers} - {m.table_name for m in mappings}
    if tables:
        raise AdoptError(
            f"{schema} has Heroku Connect tables no mapping describes: {', '.join(sorted(tables))}. Adopt with the "
            "connection's export (`heroku connect:export`): flask --app webapp connect adopt "
            f"--schema {schema} --config <export.json>")


def _move_log(db, conn, mappings: list[Mapping], result: Adoption) -> None:
    spec = Jsonb([{"table_name": m.table_name, "mapping_id": m.id,
                   "ext": m.field(m.upsert_field).column if m.upsert_field and m.field(m.upsert_field) else None,
                   "columns": [f.column for f in m.fields]} for m in mappings if m.writes])
    unsent = db.run(conn, "adopt_unmapped_open", {"tables": [m.table_name for m in mappings if m.writes]}).fetchall()
    if unsent:
        raise AdoptError("Heroku Connect had not sent changes of tables no writing mapping names: " + ", ".join(
            f"{r['table_name']} ({r['n']})" for r in unsent) + ". Import its export (read_write mappings) first.")
    states = [r["state"] for r in db.run(conn, "adopt_move_open", {"mappings": spec}).fetchall()]
    result.moved_failed = states.count("FAILED")
    result.moved_open = len(states) - result.moved_failed
    result.moved_history = db.run(conn, "adopt_move_history", {"mappings": spec}).rowcount


def _resume_reads(db, conn, m: Mapping, result: Adoption, request_load) -> None:
    if not (m.reads and m.active):
        return
    row = conn.execute(_q("adopt_newest_modstamp", table=table_ident(m))).fetchone()
    newest = row["newest"]
    if newest is None:            # an empty table: nothing to resume from, load it
        result.watermarks[m.object_name] = None
        if request_load:
            request_load(conn, m)
            result.loads_requested.append(m.id)
        return
    if newest.tzinfo is None:     # Connect's timestamp without time zone holds UTC
        newest = newest.replace(tzinfo=dt.timezone.utc)
    db.run(conn, "adopt_poll_state", {"mapping_id": m.id, "watermark": newest})
    db.run(conn, "adopt_cancel_loads", {"mapping_id": m.id})
    result.watermarks[m.object_name] = newest.isoformat()
