"""Row filters on the paths that do not query through them (issue 17; docs/architecture.md "Row filters"):
records an Outbound Message, a CDC event or our own write touched, for a mapping with a row filter, are read
whole through the filter (one call per 200 ids, counted as `filter_checks`): a record that matches arrives
with every mapped field, one that does not leaves the table as a delete does (a marked tombstone)."""
from __future__ import annotations

import logging

from gateway import mapping_store
from gateway.db import Database
from gateway.salesforce import Salesforce
from jobs import drift, poll

log = logging.getLogger("forcebridge.row_filters")
CHECK_BATCH = 1000


def check_pending(db: Database, sf: Salesforce, limit: int = CHECK_BATCH) -> dict:
    """The records waiting in forcebridge.filter_checks, oldest first, up to `limit`; each mapping's rows are
    deleted once its records were applied (a crash in between checks them again: harmless)."""
    done = {"checked": 0, "written": 0, "removed": 0}
    by_mapping: dict[int, list[str]] = {}
    for r in db.fetchall("filter_checks_list", {"limit": limit}):
        by_mapping.setdefault(r["mapping_id"], []).append(r["sfid"])
    for mapping_id, sfids in by_mapping.items():
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
        db.execute("filter_checks_done", {"mapping_id": mapping_id, "sfids": sfids})
    return done


def pending(db: Database) -> int:
    return db.fetchone("filter_checks_count")["n"]
