"""The inbound path's hook for records that also changed in Postgres: echoes dropped, conflicts settled."""
from __future__ import annotations

import json
from dataclasses import dataclass, replace

import psycopg

from core.change_states import OVERRIDDEN_BY_SALESFORCE, State
from core.conflicts import (RESOLVED_BY_SALESFORCE, FieldSettlement, LocalChanges, is_echo, local_changes,
                            sent_values, settle_fields)
from core.inbound import UpsertBatch
from gateway import change_log
from gateway.db import Database


def settle(db: Database, conn: psycopg.Connection, batch: UpsertBatch) -> UpsertBatch:
    """Return the part of `batch` that may be written. Records without open local changes pass as they
    are. For the others: our own echo is dropped; a real Salesforce change is settled field by field
    (core.conflicts.settle_fields): fields only Salesforce changed land, fields only Postgres changed keep
    its values (and are still sent), the mapping's rule decides fields both changed; logged in
    forcebridge.conflicts."""
    m = batch.mapping
    if not m.writes:
        return batch
    batch = _without_deleted(conn, batch)
    if not batch.sfids:
        return batch
    _link_by_external_id(conn, batch)
    batch = _without_stale_fields(db, conn, batch)
    local = {r["sfid"]: r for r in change_log.pending_local_rows(conn, m, batch.sfids)}
    if not local:
        return batch
    sent: dict[str, list[dict]] = {}
    for r in db.run(conn, "last_sent_values", {"mapping_id": m.id, "sfids": list(local),
                                                "record_ids": [row["id"] for row in local.values()]}).fetchall():
        sent.setdefault(r["sfid"], []).append(sent_values(m.fields, r["sent"]))
    keep, found, salesforce_won, partly = [], [], [], []
    values = [list(col) for col in batch.values]
    locals_ = _local_changes(conn, m, [row["id"] for row in local.values()])
    for i, sfid in enumerate(batch.sfids):
        row = local.get(sfid)
        if row is None:
            keep.append(i)
            continue
        incoming = {c.column: batch.values[j][i] for j, c in enumerate(batch.columns)}
        if any(is_echo(incoming, ours, row) for ours in sent.get(sfid) or [{}]):
            continue   # our write coming back; the newer local change is on its way to Salesforce
        changes, base = locals_.get(row["id"], (LocalChanges(None, {}), {}))
        settled = settle_fields(m.conflict_rule, incoming, row, changes, base, row["fb_changed_at"],
                                batch.modstamps[i])
        if not settled.sf_fields:
            continue   # Salesforce still carries what both sides started from: Postgres's change stands
        found.append(Conflict(row, sfid, settled.winner, incoming, batch.modstamps[i], settled))
        if not settled.take:
            continue
        keep.append(i)
        for j, c in enumerate(batch.columns):       # the merged record: Postgres's values where it keeps them
            if c.column not in settled.take:
                values[j][i] = row.get(c.column)
        if settled.salesforce_took_all:
            salesforce_won.append(row["id"])
        elif settled.winner == "salesforce":
            partly.append((row["id"], list(settled.both)))
    if found:
        _record(db, conn, m, found)
    if salesforce_won:
        db.run(conn, "drop_open_changes", {"mapping_id": m.id, "record_ids": salesforce_won,
                                           "from_states": sorted(OVERRIDDEN_BY_SALESFORCE),
                                           "to_state": str(State.IGNORED)})
        # A local change already in flight cannot be stopped: it lands after Salesforce's change, so the
        # winning values are sent again once it finishes (its echo is recognised and dropped meanwhile).
        db.run(conn, "resend_over_in_flight", {"mapping_id": m.id, "record_ids": salesforce_won,
                                               "fields": [c.column for c in batch.columns]})
    for record_id, fields in partly:
        # Postgres's other changes are still sent (with the row's values, Salesforce's where it won); a write
        # in flight carries Postgres's losing values, so those fields go again after it
        db.run(conn, "resend_over_in_flight", {"mapping_id": m.id, "record_ids": [record_id], "fields": fields})
    return _subset(replace(batch, values=values), keep)


def _without_stale_fields(db: Database, conn: psycopg.Connection, batch: UpsertBatch) -> UpsertBatch:
    """A state Salesforce stamped before the app made a change we since wrote to Salesforce (a late or retried
    Outbound Message, a poll that read the record before our write) carries the values our write replaced. The
    write-back does not advance the row's SystemModstamp and the echo of our write rarely comes (Outbound
    Messages and CDC leave out the integration user's writes), so never backwards alone would let it put them
    back: for the fields that write sent it brings the values we sent (what Salesforce holds since); its other
    fields land as usual. A Salesforce change made after our write is stamped no earlier than the app's change
    (whole seconds) and is not touched."""
    m = batch.mapping
    written: dict[str, dict] = {}
    for r in db.run(conn, "written_after", {"mapping_id": m.id, "sfids": batch.sfids,
                                             "stamps": batch.modstamps}).fetchall():
        written.setdefault(r["sfid"], {}).update(sent_values(m.fields, r["sent"]))   # later writes last
    if not written:
        return batch
    values = [list(col) for col in batch.values]
    for i, sfid in enumerate(batch.sfids):
        ours = written.get(sfid) or {}
        for j, c in enumerate(batch.columns):
            # a lookup we named by external id: Salesforce resolved it, the Id is not in what we sent
            if c.column in ours and ours[c.column] is not RESOLVED_BY_SALESFORCE:
                values[j][i] = ours[c.column]
    return replace(batch, values=values)


def _local_changes(conn: psycopg.Connection, m, record_ids: list[int]) -> dict[int, tuple[LocalChanges, dict]]:
    """Record id -> (what its open local changes touched, their base values typed as the row)."""
    entries = change_log.open_change_bases(conn, m, record_ids)
    changes = {rid: local_changes(record_entries) for rid, record_entries in entries.items()}
    typed = change_log.typed_bases(conn, m, {rid: c.base for rid, c in changes.items() if c.base})
    return {rid: (c, typed.get(rid, {})) for rid, c in changes.items()}


def _without_deleted(conn: psycopg.Connection, batch: UpsertBatch) -> UpsertBatch:
    """Drop notifications for records the app deleted here: the delete is, or will be, in Salesforce too,
    and a notification queued before it (delayed, duplicated, reordered) would otherwise re-insert the row."""
    gone = change_log.deleted_from_postgres(conn, batch.mapping, batch.sfids)
    if not gone:
        return batch
    return _subset(batch, [i for i, sfid in enumerate(batch.sfids) if sfid not in gone])


def _link_by_external_id(conn: psycopg.Connection, batch: UpsertBatch) -> None:
    """A row we inserted whose sfid is not written back yet (the call is in flight) is found by its
    external id, so the notification updates it instead of adding a twin row."""
    m = batch.mapping
    ext = m.field(m.upsert_field) if m.upsert_field else None
    if ext is None or ext not in batch.columns:
        return
    values = batch.values[batch.columns.index(ext)]
    change_log.link_rows_by_external_id(conn, m, ext.column, batch.sfids,
                                        [None if v is None else str(v) for v in values])


@dataclass(frozen=True)
class Conflict:
    """One record changed on both sides: the local row, Salesforce's values, who won."""
    row: dict                     # the mapped row with fb_changed_at, its newest open local change
    sfid: str
    winner: str                   # salesforce | postgres (core.conflicts.winner) | merged (no field in common)
    incoming: dict                # column -> Salesforce's value
    sf_changed_at: object         # the notification's SystemModstamp
    fields: FieldSettlement       # which fields each side changed, which both did


def _record(db, conn, m, found: list[Conflict]) -> None:
    columns = [f.column for f in m.fields]
    db.run(conn, "insert_conflicts", {
        "mapping_id": m.id, "rule": m.conflict_rule,
        "record_ids": [c.row["id"] for c in found], "sfids": [c.sfid for c in found],
        "winners": [c.winner for c in found],
        "pg_values": [json.dumps({col: c.row.get(col) for col in columns}, default=str) for c in found],
        "sf_values": [json.dumps(c.incoming, default=str) for c in found],
        "pg_at": [c.row["fb_changed_at"] for c in found], "sf_at": [c.sf_changed_at for c in found],
        "both": [",".join(c.fields.both) for c in found], "sf_fields": [",".join(c.fields.sf_fields) for c in found],
        "pg_fields": [None if c.fields.pg_fields is None else ",".join(c.fields.pg_fields) for c in found],
    })


def _subset(batch: UpsertBatch, keep: list[int]) -> UpsertBatch:
    return batch.subset(keep)
