"""The one apply path of Salesforce -> Postgres. Every source hands it `core.sources.SalesforceChange`s (or, for
large reads, rows it staged: `apply_staged`); this module alone decides what lands: tombstones of Salesforce
deletes, echoes of our own writes and conflicts with local changes (jobs/conflicts.settle), the typed upsert
and deletes under the never-backwards rule (forcebridge.not_backwards, migration 0100)."""
from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import dataclass, field

import psycopg

from core.convert import from_salesforce, utc_naive
from core.inbound import DeleteBatch, UpsertBatch, plan_apply
from core.loading import poll_settings
from core.mapping import Mapping
from core.soql import row_filter
from core.sources import SalesforceChange, source
from gateway import change_log, mapped_tables, staging
from gateway.db import QUERIES, Database, template
from jobs import conflicts

# A value Postgres refuses (too long, say) or a constraint of the user's own on the mapped table (NOT NULL,
# UNIQUE, FK, CHECK, or an index of theirs a value is too large for): either fails only the offending
# change, never the whole batch, which would otherwise be claimed again forever and stop all
# Salesforce -> Postgres sync.
REFUSED = (psycopg.errors.DataError, psycopg.errors.IntegrityError, psycopg.errors.ProgramLimitExceeded)


@dataclass
class Applied:
    done: list[str] = field(default_factory=list)          # keys settled: written, or rightly left out
    failed: dict[str, str] = field(default_factory=dict)    # key -> reason
    unmapped: list[str] = field(default_factory=list)       # keys of objects without an active reading mapping
    # changes carrying only some fields (complete=False) of records Postgres does not hold: not written (a row
    # of those fields alone would be wrong); the source reads the records whole (by Id) and applies them
    refetch: list[SalesforceChange] = field(default_factory=list)
    # changes of mappings with a row filter that no query built with the filter brought (Outbound Messages,
    # CDC): not written; their records wait in forcebridge.filter_checks for jobs/row_filters.py
    checking: list[SalesforceChange] = field(default_factory=list)
    synced: Counter = field(default_factory=Counter)        # mapping id -> changes settled (written or left out)
    written: int = 0                                        # rows upserted
    deleted: int = 0                                        # rows deleted (or marked deleted)


@contextlib.contextmanager
def applying(db: Database):
    """The transaction that applies Salesforce's changes, opened after captured changes moved into the change
    log, where the conflict rules look for local changes."""
    change_log.absorb(db)
    with db.transaction(origin="salesforce") as conn:
        yield conn


def apply_changes(db: Database, conn: psycopg.Connection, changes: list[SalesforceChange],
                  mappings: dict[str, Mapping]) -> Applied:
    """Apply the changes in the caller's transaction (opened with origin = salesforce: `applying`).
    `mappings`: lowercase object name -> active reading Mapping. Changes are in arrival order."""
    out = Applied()
    named = {c.object_name.lower() for c in changes}
    lock_rows(conn, [m for name, m in mappings.items() if name in named])
    changes = _without_unchecked(db, conn, changes, mappings, out)
    changes = _without_held(conn, changes, mappings, out)
    changes = _without_partial_unknown(conn, changes, mappings, out)
    plan = plan_apply(changes, mappings)
    out.failed.update(plan.failed)
    out.unmapped = list(plan.unmapped)
    followed = formula_parents(conn) if plan.batches else set()
    for batch in plan.batches:
        if batch.mapping.object_name.lower() in followed:
            queue_formula_children(conn, batch.mapping.object_name, batch.sfids)
        batch = batch.without(_deleted_in_salesforce(conn, batch))
        # the write path's hook: echoes of our own writes dropped, conflicts with local changes settled
        batch = conflicts.settle(db, conn, batch)
        if batch.sfids:
            failures = upsert_isolating_failures(conn, batch)
            out.failed.update(failures)
            out.written += len(batch.sfids) - len(failures)
    for gone in plan.deletes:
        deleted, failures = delete(conn, gone)
        out.deleted += deleted
        out.failed.update(failures)
    for batch in plan.batches:
        keys = [k for k in batch.keys if k not in out.failed]
        out.done.extend(keys)
        out.synced[batch.mapping.id] += len(keys)
    for gone in plan.deletes:
        out.done.extend(k for k in gone.keys if k not in out.failed)
    out.done.extend(plan.superseded)
    return out


def _without_unchecked(db: Database, conn, changes: list[SalesforceChange], mappings: dict[str, Mapping],
                       out: Applied) -> list[SalesforceChange]:
    """A mapping with a row filter takes only records Salesforce says match it. A change no filtered query
    brought (an Outbound Message, a CDC event) is not written: its record is queued for a check
    (jobs/row_filters.py reads it whole through the filter: it arrives if it matches, its row leaves if not).
    Deletes need no check."""
    waiting: dict[str, dict[str, str]] = {}
    for c in changes:
        m = mappings.get(c.object_name.lower())
        if m is not None and row_filter(m) and not c.within_filter and not c.deletes:
            waiting.setdefault(m.object_name.lower(), {})[c.record_id] = c.source
            out.checking.append(c)
    if not waiting:
        return changes
    for name, records in waiting.items():
        db.run(conn, "filter_checks_add", {"mapping_id": mappings[name].id, "sfids": list(records),
                                           "sources": list(records.values())})
    out.done.extend(dict.fromkeys(c.key for c in out.checking))
    checking = {id(c) for c in out.checking}
    return [c for c in changes if id(c) not in checking]


def _without_held(conn, changes: list[SalesforceChange], mappings: dict[str, Mapping],
                  out: Applied) -> list[SalesforceChange]:
    """A source that reads overlapping windows (a poll) brings back records Postgres already holds in that very
    state: those rows are left alone (counted done, not written)."""
    rereading: dict[str, list[SalesforceChange]] = {}
    for c in changes:
        m = mappings.get(c.object_name.lower())
        if m is not None and not c.deletes and source(c.source).rereads:
            rereading.setdefault(m.object_name.lower(), []).append(c)
    held = set()
    for name, group in rereading.items():
        m = mappings[name]
        known = staging.known_rows(conn, m, [c.record_id for c in group])
        held.update(c.key for c in group if _holds(known.get(c.record_id), c, m))
    if not held:
        return changes
    out.done.extend(held)
    return [c for c in changes if c.key not in held]


def _without_partial_unknown(conn, changes: list[SalesforceChange], mappings: dict[str, Mapping],
                             out: Applied) -> list[SalesforceChange]:
    """Changes that carry only the changed fields apply to rows Postgres holds; for a record it lacks they go
    back to the source in `out.refetch`."""
    partial: dict[str, list[SalesforceChange]] = {}
    for c in changes:
        m = mappings.get(c.object_name.lower())
        if m is not None and not c.complete and not c.deletes:
            partial.setdefault(m.object_name.lower(), []).append(c)
    unknown = set()
    for name, group in partial.items():
        known = staging.known_rows(conn, mappings[name], [c.record_id for c in group])
        unknown.update(c.key for c in group if c.record_id not in known)
    if not unknown:
        return changes
    out.refetch.extend(c for c in changes if c.key in unknown)
    return [c for c in changes if c.key not in unknown]


def _holds(row: dict | None, change: SalesforceChange, m: Mapping) -> bool:
    """Postgres has this record in exactly this state. SystemModstamp has whole seconds only, so two
    changes in one second share a stamp: the values decide."""
    if row is None or row["_hc_err"] or change.stamp is None or row["isdeleted"]:
        return False
    if row["systemmodstamp"] != utc_naive(change.stamp):   # UTC, no zone
        return False
    try:
        return all(row.get(f.column) == from_salesforce(f, change.fields.get(f.name))
                   for f in m.read_fields if f.name in change.fields)
    except ValueError:
        return False


def _deleted_in_salesforce(conn: psycopg.Connection, batch: UpsertBatch) -> set[str]:
    """Keys of changes a delete already superseded (tombstones): built before the delete and delivered after
    it, they would bring the row back (found by the chaos suite)."""
    if not batch.sfids:
        return set()
    return {r["notification_id"] for r in conn.execute(QUERIES["deleted_in_salesforce"], {
        "mapping_id": batch.mapping.id, "sfids": batch.sfids, "stamps": batch.modstamps,
        "ids": batch.keys}).fetchall()}


def delete(conn: psycopg.Connection, gone: DeleteBatch) -> tuple[int, dict[str, str]]:
    """Records Salesforce deleted: their tombstones recorded, rows deleted (or marked, keep_deleted_rows)
    unless they changed again after the delete. A delete Postgres refuses (a foreign key of the user's own with
    ON DELETE RESTRICT, a trigger) fails only that record, as upserts do. Returns (rows deleted, key -> reason)."""
    keep = poll_settings(gone.mapping).keep_deleted
    deleted = []

    def write(rows):
        sfids = gone.sfids if rows is None else [gone.sfids[i] for i in rows]
        stamps = gone.stamps if rows is None else [gone.stamps[i] for i in rows]
        deleted.append(staging.delete_rows(conn, gone.mapping, sfids, stamps, keep))

    failures = _isolating_failures(conn, gone.keys, write, "Postgres refused the delete")
    return sum(deleted), failures


def upsert_isolating_failures(conn: psycopg.Connection, batch: UpsertBatch) -> dict[str, str]:
    """Upsert the batch in one statement; if Postgres refuses it, find the offending rows one by one
    so that the others still land. Returns change key -> reason."""
    return _isolating_failures(
        conn, batch.keys, lambda rows: mapped_tables.upsert_batch(conn, batch if rows is None else batch.subset(rows)),
        "Postgres refused the row")


def _isolating_failures(conn: psycopg.Connection, keys: list[str], write, refused: str) -> dict[str, str]:
    """`write(None)` (every row) in a savepoint; if Postgres refuses it, `write([i])` for each row alone, so that
    only the offending ones fail (what a refused write leaves is rolled back to its savepoint)."""
    try:
        with conn.transaction():
            write(None)
        return {}
    except REFUSED:
        pass
    failures = {}
    for i, key in enumerate(keys):
        try:
            with conn.transaction():
                write([i])
        except REFUSED as exc:
            failures[key] = f"{refused}: {exc.diag.message_primary}"
    return failures


def apply_staged(conn: psycopg.Connection, name: str, m: Mapping, source_name: str,
                 deletes: bool = False) -> tuple[int, int]:
    """What a source staged (a Bulk or REST read into staging table `name`) into the mapped table, in the
    caller's transaction (origin = salesforce): deleted records first (`deletes`: the read was a queryAll),
    then one merge statement under the never-backwards rule, the tombstones and the local changes' guard.
    Returns (rows deleted, rows written)."""
    lock_rows(conn, [m])
    gone = staging.apply_staged_deletes(conn, name, m, poll_settings(m).keep_deleted) if deletes else 0
    if source_name != "load":   # a load brings records as they are, not changes a child's formula follows
        staged = template("formula_changed_staged", staging=staging.ident(name))
        conn.execute(template("queue_formula_children", parent_ids=staged), {"object": m.object_name})
    return gone, staging.merge(conn, name, m, fresh=source(source_name).fresh)


def lock_rows(conn: psycopg.Connection, mappings) -> None:
    """Before writing rows of mappings that also write to Salesforce: a copy of a record just created there must
    not land between the write-back's merge and its sfid (jobs/drain.py `finish`, lock_created_rows)."""
    ids = [m.id for m in mappings if m.writes and m.id is not None]
    if ids:
        conn.execute(QUERIES["lock_inbound_rows"], {"mapping_ids": ids})


def formula_parents(conn: psycopg.Connection) -> set[str]:
    """The objects (lower case) whose changes some mapping's formulas follow (forcebridge.formula_refresh)."""
    return {r["object_key"] for r in conn.execute(QUERIES["formula_parent_objects"])}


def queue_formula_children(conn: psycopg.Connection, object_name: str, sfids) -> None:
    """These records of `object_name` changed in Salesforce: the mapped children whose formulas read them get
    them queued for a refresh (jobs/formula_refresh.refresh_children), in the caller's transaction. Echoes of
    our own writes count too: a parent we changed changes its children's formulas as well."""
    if sfids:
        conn.execute(template("queue_formula_children", parent_ids=template("formula_changed_ids")),
                     {"object": object_name, "ids": list(sfids)})
