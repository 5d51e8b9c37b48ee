"""What the console reads about Postgres -> Salesforce writes. The write path (issue 4) owns those tables;
until they exist every function here answers "nothing known" and the pages leave the sections out."""
from __future__ import annotations

from webapp.context import ctx

CHANGE_LOG = "forcebridge.change_log"
CONFLICTS = "forcebridge.conflicts"


def _exists(name: str) -> bool:
    return bool(ctx().db.fetchone("relation_exists", {"name": name})["present"])


def backlog() -> dict | None:
    """{"pending": n, "failed": n} over all mappings, or None before the write path is installed."""
    if not _exists(CHANGE_LOG):
        return None
    return ctx().db.fetchone("write_backlog")


def per_mapping() -> dict[int, dict]:
    """mapping id -> {"pending", "failed"} writes."""
    if not _exists(CHANGE_LOG):
        return {}
    return {r["mapping_id"]: r for r in ctx().db.fetchall("write_backlog_per_mapping")}


def failed_writes(days: int, limit: int) -> list[dict] | None:
    if not _exists(CHANGE_LOG):
        return None
    return ctx().db.fetchall("failed_writes", {"days": days, "limit": limit})


def conflicts(days: int, limit: int) -> list[dict] | None:
    if not _exists(CONFLICTS):
        return None
    return ctx().db.fetchall("recent_conflicts", {"days": days, "limit": limit})


def retry_write(change_id: int) -> bool:
    return bool(ctx().db.fetchone("retry_write", {"id": change_id}))


def ignore_write(change_id: int) -> bool:
    return bool(ctx().db.fetchone("ignore_write", {"id": change_id}))


def retry_all_writes() -> int:
    return len(ctx().db.fetchall("retry_failed_writes"))
