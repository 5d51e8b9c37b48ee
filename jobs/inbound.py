"""The Outbound Messages source: notifications stored in the inbox (webapp/outbound.py) are read in batches,
turned into SalesforceChanges and handed to the one apply path (jobs/apply.py); the inbox rows are marked in
the same transaction."""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

from core.inbound import within_budget
from core.sources import SalesforceChange, collect, from_fields
from gateway import change_log, mapping_store
from gateway.db import Database
from jobs import apply, cdc_source, stats

log = logging.getLogger("forcebridge.inbound")


@dataclass
class ApplyResult:
    applied: int = 0
    failed: int = 0
    unmapped: int = 0
    checking: int = 0       # records queued for a row filter check (jobs/row_filters.py)

    def __iadd__(self, other: "ApplyResult"):
        self.applied += other.applied
        self.failed += other.failed
        self.unmapped += other.unmapped
        self.checking += other.checking
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
        rows = cdc_source.refetch_retried(db, conn, rows, mappings)   # retried CDC changes: read whole instead
        collected = collect(((r["notification_id"], r) for r in rows), lambda r: _change(r, mappings))
        applied = apply.apply_changes(db, conn, collected.changes, mappings)
        failed = {**collected.failed, **applied.failed}
        db.run(conn, "mark_notifications", {"state": "applied", "ids": applied.done})
        if applied.unmapped:
            db.run(conn, "mark_notifications", {"state": "unmapped", "ids": applied.unmapped})
        if failed:
            db.run(conn, "mark_notifications_failed", {"ids": list(failed), "errors": list(failed.values())})
            for nid, reason in failed.items():
                log.warning("notification %s failed: %s", nid, reason)
        stats.add(db, conn, "sf_to_pg", _outcomes(applied, rows, failed, mappings))
    more = take < len(claimed) or len(claimed) == batch_size
    return ApplyResult(applied=len(applied.done), failed=len(failed), unmapped=len(applied.unmapped),
                       checking=len(applied.checking)), more


def _change(row: dict, mappings: dict) -> SalesforceChange:
    """An inbox row (one notification) as a SalesforceChange: the record's state, every field it carries. For
    an object no mapping reads nothing is read (the apply path marks it unmapped)."""
    if row["object_name"].lower() not in mappings:
        return SalesforceChange(row["object_name"], row["sfid"], "update", {}, None, "outbound",
                                row["notification_id"])
    return from_fields(row["object_name"], row["sfid"], row["fields"], "outbound", key=row["notification_id"])


def _outcomes(applied, rows, failed, mappings) -> list[tuple[int, str, int]]:
    failed_by = Counter(getattr(mappings.get(r["object_name"].lower()), "id", 0)
                        for r in rows if r["notification_id"] in failed)
    return ([(mid, "synced", n) for mid, n in applied.synced.items()]
            + [(mid, "failed", n) for mid, n in failed_by.items()]
            + [(0, "unmapped", len(applied.unmapped))])
