"""Row filters on the paths that do not query through them (issue 17; docs/architecture.md "Row filters"):
records an Outbound Message, a CDC event or our own write touched, for a mapping with a row filter, are read
whole through the filter (one call per 200 ids, counted as `filter_checks`): a record that matches arrives
with every mapped field, one that does not leaves the table as a delete does (a marked tombstone)."""
from __future__ import annotations

import logging

from gateway import mapping_store
from gateway.db import Database
from gateway.salesforce import Salesforce
from jobs import drift, poll, stats

log = logging.getLogger("forcebridge.row_filters")
CHECK_BATCH = 1000


def check_pending(db: Database, sf: Salesforce, limit: int = CHECK_BATCH) -> dict:
    """The records waiting in forcebridge.filter_checks, oldest first, up to `limit`; each mapping's rows are
    deleted once its records were applied, unless queued again meanwhile (a crash in between reads a record
    twice: harmless). One check at a time: while another runs, this one does nothing (what it would have read
    waits for the next: the minute task, the next inbound apply or CDC batch)."""
    done = {"checked": 0, "written": 0, "removed": 0}
    with db.transaction() as lock:
        if not db.run(lock, "lock_filter_checks").fetchone()["locked"]:
            log.debug("row filter check: another one runs")
            return done
        for mapping_id, queued in _listed(db, limit).items():
            _check_mapping(db, sf, mapping_id, queued, done)
    return done


def _listed(db: Database, limit: int) -> dict[int, dict]:
    """mapping id -> {sfid: queued_at}, the oldest `limit` records queued."""
    by_mapping: dict[int, dict] = {}
    for r in db.fetchall("filter_checks_list", {"limit": limit}):
        by_mapping.setdefault(r["mapping_id"], {})[r["sfid"]] = r["queued_at"]
    return by_mapping


def _check_mapping(db: Database, sf: Salesforce, mapping_id: int, queued: dict, done: dict) -> None:
    sfids = list(queued)
    m = mapping_store.get(db, mapping_id)
    if m is not None and m.reads:
        result = poll.PollResult(m.id)
        with sf.work("filter_checks"):
            drift.fetch_by_ids(db, sf, m, sorted(sfids), result, source_name="row_filter")
        done["written"] += result.changed
        done["removed"] += result.deleted
        if result.failed:
            log.warning("row filter check of %s: %s records failed: %s", m.object_name, len(result.failed),
                        next(iter(result.failed.values())))
    done["checked"] += len(sfids)
    with db.transaction() as conn:
        db.run(conn, "filter_checks_done", {"mapping_id": mapping_id, "sfids": sfids,
                                            "queued": list(queued.values())})
        if m is not None and m.reads:   # on Trends beside what the other sources bring
            stats.add(db, conn, "sf_to_pg", [(m.id, "synced", result.changed), (m.id, "deleted", result.deleted),
                                             (m.id, "failed", len(result.failed))])


def pending(db: Database) -> int:
    return db.fetchone("filter_checks_count")["n"]
