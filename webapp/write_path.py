"""What the console shows of Postgres -> Salesforce writes, from the write path's change log and conflicts."""
from __future__ import annotations

from core.change_states import Action
from gateway import change_log
from webapp.context import ctx


def backlog() -> dict:
    """{"pending": n, "failed": n} over all mappings."""
    return ctx().db.fetchone("write_backlog")


def last_success():
    """When a change last reached Salesforce, or None."""
    return ctx().db.fetchone("last_write_to_salesforce")["at"]


def per_mapping() -> dict[int, dict]:
    """mapping id -> {"pending", "failed"} writes."""
    return {r["mapping_id"]: r for r in ctx().db.fetchall("write_backlog_per_mapping")}


def failed_writes(days: int, limit: int) -> list[dict]:
    return ctx().db.fetchall("console_failed_writes", {"days": days, "limit": limit})


def conflicts(days: int, limit: int, excerpt: int = 2048) -> list[dict]:
    return ctx().db.fetchall("console_conflicts", {"days": days, "limit": limit, "excerpt": excerpt})


def retry_write(change_id: int) -> bool:
    return bool(change_log.act(ctx().db, change_id, Action.RETRY))


def ignore_write(change_id: int) -> bool:
    return bool(change_log.act(ctx().db, change_id, Action.IGNORE))


def retry_all_writes() -> int:
    return change_log.retry_all_failed(ctx().db)
