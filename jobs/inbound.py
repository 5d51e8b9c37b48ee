"""Salesforce -> Postgres: turn stored notifications into rows of mapped tables, in batches."""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

import psycopg

from core.inbound import InboxItem, UpsertBatch, plan_apply, within_budget
from gateway import change_log, mapped_tables, mapping_store
from gateway.db import QUERIES, Database
from jobs import conflicts, stats

log = logging.getLogger("forcebridge.inbound")


@dataclass
class ApplyResult:
    applied: int = 0
    failed: int = 0
    unmapped: int = 0

    def __iadd__(self, other: "ApplyResult"):
        self.applied += other.applied
        self.failed += other.failed
        self.unmapped += other.unmapped
        return self


# What one batch may read into memory (bytes of stored jsonb; Python's dicts take a few times more). A batch
# holds at least one notification, so one of MAX_MESSAGE_BYTES still applies; 500 of them never load at once.
APPLY_BATCH_BYTES = 16 * 1024 * 1024


def apply_pending(db: Database, batch_size: int = 500, max_batches: int = 1000,
                  max_bytes: int = APPLY_BATCH_BYTES) -> ApplyResult:
    """Apply pending notifications until none are left (or max_batches ran)."""
    total = ApplyResult()
    for _ in range(max_batches):
        result, more = apply_one_batch(db, batch_size, max_bytes)
        total += result
        if not more:
            break
    return total


def apply_one_batch(db: Database, batch_size: int, max_bytes: int = APPLY_BATCH_BYTES) -> tuple[ApplyResult, bool]:
    """One transaction: claim rows (SKIP LOCKED), upsert them, mark them. A worker killed halfway
    leaves nothing behind but pending rows, which the sweeper hands to the next task. Returns the
    result and whether more rows may be pending."""
    mappings = mapping_store.reading_mappings(db)
    if any(m.writes for m in mappings.values()):
        change_log.absorb(db)   # local changes the conflict rules may have to drop are in the change log
    with db.transaction(origin="salesforce") as conn:
        claimed = db.run(conn, "claim_pending_notifications", {"limit": batch_size}).fetchall()
        if not claimed:
            return ApplyResult(), False
        take = within_budget([r["fields_bytes"] for r in claimed], max_bytes)
        # the rest stay locked (other workers skip them) until this transaction ends, then the next batch
        rows = db.run(conn, "notification_fields",
                      {"ids": [r["notification_id"] for r in claimed[:take]]}).fetchall()
        items = [InboxItem(r["notification_id"], r["object_name"], r["sfid"], r["fields"]) for r in rows]
        plan = plan_apply(items, mappings)
        failed = dict(plan.failed)
        for batch in plan.batches:
            batch = _without_deleted_in_salesforce(conn, batch)
            # write path hook: echoes of our own writes dropped, conflicts with local changes settled
            batch = conflicts.settle(db, conn, batch)
            if batch.sfids:
                failed.update(upsert_isolating_failures(conn, batch))
        applied_ids = [i for b in plan.batches for i in b.notification_ids if i not in failed] + plan.superseded
        db.run(conn, "mark_notifications", {"state": "applied", "ids": applied_ids})
        if plan.unmapped:
            db.run(conn, "mark_notifications", {"state": "unmapped", "ids": plan.unmapped})
        if failed:
            db.run(conn, "mark_notifications_failed", {"ids": list(failed), "errors": list(failed.values())})
            for nid, reason in failed.items():
                log.warning("notification %s failed: %s", nid, reason)
        stats.add(db, conn, "sf_to_pg", _outcomes(plan, items, failed, mappings))
    more = take < len(claimed) or len(claimed) == batch_size
    return ApplyResult(applied=len(applied_ids), failed=len(failed), unmapped=len(plan.unmapped)), more


def _without_deleted_in_salesforce(conn: psycopg.Connection, batch: UpsertBatch) -> UpsertBatch:
    """Drop notifications the polling backstop has already seen superseded by a delete: built before the
    delete and delivered after it, they would bring the row back (found by the chaos suite)."""
    if not batch.sfids:
        return batch
    stale = {r["notification_id"] for r in conn.execute(QUERIES["deleted_in_salesforce"], {
        "mapping_id": batch.mapping.id, "sfids": batch.sfids, "stamps": batch.modstamps,
        "ids": batch.notification_ids}).fetchall()}
    if not stale:
        return batch
    keep = [i for i, n in enumerate(batch.notification_ids) if n not in stale]
    return UpsertBatch(mapping=batch.mapping, columns=batch.columns, sfids=[batch.sfids[i] for i in keep],
                       modstamps=[batch.modstamps[i] for i in keep], isdeleted=[batch.isdeleted[i] for i in keep],
                       values=[[col[i] for i in keep] for col in batch.values],
                       notification_ids=[batch.notification_ids[i] for i in keep])


# A value Postgres refuses (too long, say) or a constraint of the user's own on the mapped table (NOT NULL,
# UNIQUE, FK, CHECK, or an index of theirs a value is too large for): either fails only the offending
# notification, never the whole batch, which would otherwise be claimed again forever and stop all
# Salesforce -> Postgres sync.
REFUSED = (psycopg.errors.DataError, psycopg.errors.IntegrityError, psycopg.errors.ProgramLimitExceeded)


def upsert_isolating_failures(conn: psycopg.Connection, batch) -> dict[str, str]:
    """Upsert the batch in one statement; if Postgres refuses it, find the offending rows one by one
    so that the others still land. Returns notification id -> reason."""
    try:
        with conn.transaction():
            mapped_tables.upsert_batch(conn, batch)
        return {}
    except REFUSED:
        pass
    failures = {}
    for i in range(len(batch.sfids)):
        single = _slice(batch, i)
        try:
            with conn.transaction():
                mapped_tables.upsert_batch(conn, single)
        except REFUSED as exc:
            failures[batch.notification_ids[i]] = f"Postgres refused the row: {exc.diag.message_primary}"
    return failures


def _slice(batch, i):
    return UpsertBatch(mapping=batch.mapping, columns=batch.columns, sfids=[batch.sfids[i]],
                       modstamps=[batch.modstamps[i]], isdeleted=[batch.isdeleted[i]],
                       values=[[col[i]] for col in batch.values], notification_ids=[batch.notification_ids[i]])


def _outcomes(plan, items, failed, mappings) -> list[tuple[int, str, int]]:
    synced = Counter(b.mapping.id for b in plan.batches for i in b.notification_ids if i not in failed)
    failed_by = Counter(getattr(mappings.get(it.object_name.lower()), "id", 0)
                        for it in items if it.notification_id in failed)
    return ([(mid, "synced", n) for mid, n in synced.items()]
            + [(mid, "failed", n) for mid, n in failed_by.items()]
            + [(0, "unmapped", len(plan.unmapped))])
