"""Hourly sync statistics: one upsert per batch, whatever the batch size."""
from __future__ import annotations

from gateway.db import Database


def add(db: Database, conn, direction: str, counts: list[tuple[int, str, int]]) -> None:
    """counts: (mapping_id, outcome, n) triples, written in the caller's transaction."""
    counts = [c for c in counts if c[2]]
    if not counts:
        return
    db.run(conn, "add_hourly_stats", {
        "direction": direction,
        "mapping_ids": [c[0] or 0 for c in counts],
        "outcomes": [c[1] for c in counts],
        "counts": [c[2] for c in counts],
    })
