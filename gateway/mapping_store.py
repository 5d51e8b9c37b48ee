"""Mappings in the connector schema, kept in step with the mapped tables they describe. Every way of saving a
mapping (console form, JSON API, configuration import, adopt, the worker's start) goes through here, and
here, in the save's own transaction, the capture triggers are installed or removed (gateway/capture.py)."""
from __future__ import annotations

from dataclasses import replace

import psycopg
from psycopg.types.json import Jsonb

from core.convert import FieldSpec
from core.mapping import Mapping, MappingError
from gateway import capture, hc_schema, mapped_tables, staging
from gateway.db import Database


class MappingExists(ValueError):
    pass


class ImportFailed(ValueError):
    """An import stopped at one mapping; nothing of it was kept. The message names the mapping."""


def from_row(row: dict) -> Mapping:
    return Mapping(
        id=row["id"], object_name=row["object_name"], table_schema=row["table_schema"],
        table_name=row["table_name"], direction=row["direction"],
        fields=tuple(FieldSpec(f["name"], f["sf_type"], f.get("length"), f.get("owner") or "both")
                     for f in row["fields"]),
        upsert_field=row["upsert_field"], conflict_rule=row["conflict_rule"], active=row["active"],
        extra=row["extra"] or {},
    )


def _params(m: Mapping) -> dict:
    return {
        "id": m.id, "object_name": m.object_name, "table_schema": m.table_schema, "table_name": m.table_name,
        "direction": m.direction,
        "fields": Jsonb([{"name": f.name, "sf_type": f.sf_type, "length": f.length,
                                **({"owner": f.owner} if f.owner != "both" else {})} for f in m.fields]),
        "upsert_field": m.upsert_field, "conflict_rule": m.conflict_rule, "active": m.active,
        "extra": Jsonb(m.extra),
    }


def list_all(db: Database) -> list[Mapping]:
    return [from_row(r) for r in db.fetchall("list_mappings")]


def get(db: Database, mapping_id: int) -> Mapping | None:
    row = db.fetchone("get_mapping", {"id": mapping_id})
    return from_row(row) if row else None


def get_locked(db: Database, conn: psycopg.Connection, mapping_id: int) -> Mapping | None:
    """The mapping as saved now; saves wait until the caller's transaction ends (lock_mapping)."""
    row = db.run(conn, "lock_mapping", {"id": mapping_id}).fetchone()
    return from_row(row) if row else None


def get_by_object(db: Database, object_name: str) -> Mapping | None:
    row = db.fetchone("get_mapping_by_object", {"object_name": object_name})
    return from_row(row) if row else None


def reading_mappings(db: Database) -> dict[str, Mapping]:
    """Active mappings that bring Salesforce changes into Postgres, by lowercase object name."""
    return {r["object_name"].lower(): from_row(r) for r in db.fetchall("active_reading_mappings")}


def create(db: Database, m: Mapping, start_sync: bool = True) -> Mapping:
    """Insert the mapping and create its table in one transaction; waiting notifications for the object
    become pending again. `start_sync`: queue its first load and the push of rows without sfid."""
    with db.transaction() as conn:
        if db.run(conn, "get_mapping_by_object", {"object_name": m.object_name}).fetchone():
            raise MappingExists(f"a mapping for {m.object_name} exists already")
        return _saved(db, conn, db.run(conn, "insert_mapping", _params(m)).fetchone(), start_sync)


def update(db: Database, m: Mapping) -> Mapping:
    """Save changes; new fields add columns (ALTER TABLE), removed fields keep theirs (no data loss)."""
    with db.transaction() as conn:
        before = db.run(conn, "get_mapping", {"id": m.id}).fetchone()
        row = db.run(conn, "update_mapping", _params(m)).fetchone()
        if row is None:
            raise KeyError(m.id)
        saved = _saved(db, conn, row)
        _if_filter_changed(db, conn, before, saved)
        return saved


def _if_filter_changed(db: Database, conn, before: dict, m: Mapping) -> None:
    """A new row filter (or none any more) selects other records: what left the old one is forgotten and a
    load is queued in the save's transaction (its merge brings what is now inside, and removes what is now
    outside: jobs/load.py), and rows no read filled are queued for a check (the load leaves them)."""
    if (before["extra"] or {}).get("row_filter") == m.extra.get("row_filter"):
        return
    db.run(conn, "forget_filter_leaves", {"mapping_id": m.id})
    if m.reads and m.active:
        db.run(conn, "request_load", {"mapping_id": m.id, "requested_by": "row filter changed"})
        if m.extra.get("row_filter"):
            staging.check_unread_rows(conn, m)


def _saved(db: Database, conn, row: dict, start_sync: bool = False) -> Mapping:
    """What follows every save, in its transaction: the table in step, the capture triggers (present exactly
    while the mapping is active and writes), a new mapping's first sync queued, unmapped replayed, its formula
    refresh due at once (its fields may now include calculated ones)."""
    saved = from_row(row)
    mapped_tables.create_table(conn, saved)
    hc_schema.ensure_hc_objects(conn, saved.table_schema)
    capture.sync_with_mapping(conn, saved)
    if start_sync:
        _queue_first_sync(db, conn, saved)
    if saved.reads and saved.active:
        db.run(conn, "requeue_notifications", {"states": ["unmapped"], "object_name": saved.object_name})
    db.run(conn, "formula_refresh_due_now", {"mapping_id": saved.id})
    return saved


def _queue_first_sync(db: Database, conn, m: Mapping) -> None:
    """A new mapping's first load (reading) and the rows already in its table (writing: logged as inserts
    for the write path), in the mapping's own transaction; the worker's mapping_ready task runs them."""
    if m.reads and m.active:
        db.run(conn, "request_load", {"mapping_id": m.id, "requested_by": "mapping created"})
        if m.extra.get("row_filter"):
            staging.check_unread_rows(conn, m)
    if m.writes and m.active:
        staging.enqueue_push(conn, m)


def bring_up_to_date(db: Database) -> list[str]:
    """Give every mapped table the indexes and every mapped schema the Heroku Connect objects it lacks: a
    deployment from before migration 0060 gets them at the worker's start instead of at the next save of each
    mapping. A cheap check per mapping; DDL (one transaction, one upgrader at a time) only where something is
    missing, the capture triggers reinstalled then. Returns the tables brought up to date."""
    done = []
    for m in list_all(db):
        with db.transaction() as conn:
            if not mapped_tables.exists(conn, m):
                continue
            if not mapped_tables.missing_indexes(conn, m) and hc_schema.has_hc_objects(conn, m.table_schema):
                continue
            db.run(conn, "lock_hc_upgrade")     # workers starting together take turns
            mapped_tables.create_table(conn, m)
            hc_schema.ensure_hc_objects(conn, m.table_schema)
            capture.sync_with_mapping(conn, m)
        done.append(f"{m.table_schema}.{m.table_name}")
    return done


def import_all(db: Database, steps: list, connection: dict | None = None, version: int = 1) -> list[Mapping]:
    """A whole configuration in ONE transaction: mappings, their tables, capture triggers and queued loads,
    and the connection block. Any error rolls all of it back (core.configuration.plan_import has checked the
    entries; this catches what only Postgres can say, e.g. a table whose columns do not fit)."""
    with db.transaction() as conn:
        saved = save_steps(db, conn, steps)
        if connection is not None:
            db.run(conn, "save_connection_config", {"connection": Jsonb(connection), "version": version})
    return saved


def save_steps(db: Database, conn, steps: list, adopting: bool = False) -> list[Mapping]:
    """Save an import plan in the caller's transaction; raises ImportFailed naming the mapping. A schema
    Heroku Connect still manages (its _trigger_log is a table) is refused unless it is being adopted: both
    its triggers and ours would capture every change. Created mappings queue their first sync, except when
    adopting (the adopted table already holds the data; adopt decides per table)."""
    schemas = sorted({s.mapping.table_schema for s in steps if s.action != "unchanged"})
    if schemas and not adopting:
        busy = [r["schema"] for r in db.run(conn, "hc_schema_pending_adoption", {"schemas": schemas}).fetchall()]
        if busy:
            raise ImportFailed(f"schema {busy[0]} is still managed by Heroku Connect (its _trigger_log is a table): "
                               f"adopt it with flask --app webapp connect adopt --schema {busy[0]} --config "
                               "<export.json>, which imports the mappings as it takes the schema over")
    saved = []
    for step in steps:
        if step.action == "unchanged":
            saved.append(step.mapping)
            continue
        try:
            with conn.transaction():     # a savepoint, so the error below is the mapping's own
                if step.action == "create":
                    if db.run(conn, "get_mapping_by_object", {"object_name": step.mapping.object_name}).fetchone():
                        raise MappingExists(f"a mapping for {step.mapping.object_name} exists already")
                    row = db.run(conn, "insert_mapping", _params(step.mapping)).fetchone()
                    saved.append(_saved(db, conn, row, start_sync=not adopting))
                else:
                    before = db.run(conn, "get_mapping", {"id": step.mapping.id}).fetchone()
                    row = db.run(conn, "update_mapping", _params(step.mapping)).fetchone()
                    saved.append(_saved(db, conn, row))
                    _if_filter_changed(db, conn, before, saved[-1])
        except (psycopg.Error, MappingExists, MappingError) as exc:
            message = getattr(getattr(exc, "diag", None), "message_primary", None) or str(exc)
            raise ImportFailed(f"mapping {step.mapping.object_name}: {message}") from exc
    return saved


def connection_config(db: Database) -> dict | None:
    row = db.fetchone("get_connection_config")
    return row["connection"] if row else None


def delete(db: Database, mapping_id: int, drop_table: bool = False) -> Mapping | None:
    """Delete the mapping; a table that stays stops capturing (nobody would drain its changes)."""
    with db.transaction() as conn:
        row = db.run(conn, "delete_mapping", {"id": mapping_id}).fetchone()
        if row is None:
            return None
        gone = from_row(row)
        capture.on_deleted(conn, gone)
        if drop_table:
            mapped_tables.drop_table(conn, gone)
    return gone


def with_changes(m: Mapping, **changes) -> Mapping:
    return replace(m, **changes)
