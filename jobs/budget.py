"""The API budget at work: the plan (core/budget.py) from what Postgres holds, and the hooks that hold
work back: polls put off, drift checks retried later, writes delayed at the floor."""
from __future__ import annotations

import datetime as dt
import logging
import threading
import time

from psycopg.types.json import Jsonb

from core import budget, send_window
from core.loading import poll_settings
from gateway import mapping_store
from gateway.db import Database

log = logging.getLogger("forcebridge.budget")
PLAN_SECONDS = 30          # a plan is reused this long per process (a poll or a drain does not re-read it)
_cache: dict = {}
_cache_lock = threading.Lock()


def settings_of(db: Database) -> budget.BudgetSettings:
    row = db.fetchone("get_document", {"key": "budget"})
    return budget.BudgetSettings.from_document(row["value"] if row else None)


def save_settings(db: Database, value: budget.BudgetSettings) -> None:
    db.execute("put_document", {"key": "budget", "value": Jsonb(value.as_document())})
    forget()


def usage_of(db: Database, now: dt.datetime | None = None) -> budget.Usage:
    now = now or dt.datetime.now(dt.timezone.utc)
    hourly = tuple(int(r["calls"]) for r in db.fetchall("api_usage_last_24h"))
    daily = {r["name"]: r for r in db.fetchall("api_limits")}.get("DailyApiRequests")
    allocation = int(daily["max"]) if daily and daily["max"] else None
    used = allocation - int(daily["remaining"]) if allocation and daily["remaining"] is not None else None
    return budget.Usage(allocation, used, hourly, now)


def current_plan(db: Database, fresh: bool = False) -> budget.Plan:
    """The plan for now, reused for PLAN_SECONDS within a process."""
    key = db.url
    with _cache_lock:
        hit = _cache.get(key)
        if hit and not fresh and time.monotonic() - hit[0] < PLAN_SECONDS:
            return hit[1]
    result = budget.plan(settings_of(db), usage_of(db))
    with _cache_lock:
        _cache[key] = (time.monotonic(), result)
    return result


def forget() -> None:
    with _cache_lock:
        _cache.clear()


def put_off_polls(db: Database, now: dt.datetime | None = None) -> list[tuple[int, dt.datetime]]:
    """Before the poll backstop looks for due polls: move the due ones the budget spaces out or pauses
    to when they may run. Returns (mapping id, next poll) of those put off."""
    p = current_plan(db)
    if p.hold("polls") is None:
        return []
    now = now or dt.datetime.now(dt.timezone.utc)
    moved = []
    for row in db.fetchall("budget_polls_due"):
        m = mapping_store.get(db, row["mapping_id"])
        seconds = poll_settings(m).seconds if m is not None else 0
        if not seconds:
            continue
        at = budget.next_run(p, "polls", row["last_polled_at"], seconds, now)
        if at > now:
            db.execute("put_off_poll", {"mapping_id": row["mapping_id"], "at": at})
            moved.append((row["mapping_id"], at))
    if moved:
        log.info("budget: %s polls put off (%s)", len(moved), p.hold("polls").describe())
    return moved


def drift_put_off_for(db: Database) -> float | None:
    """Seconds a drift check waits when the budget pauses drift checks; None when it may run now."""
    hold = current_plan(db).hold("drift")
    if hold is None or hold.action == "spaced" or hold.until is None:
        return None
    return max(60.0, (hold.until - dt.datetime.now(dt.timezone.utc)).total_seconds())


def writes_delayed(db: Database) -> bool:
    """Writes wait only when the org is at its floor (the drain backstop tries again each minute)."""
    try:
        return current_plan(db).hold("writes") is not None
    except Exception:  # noqa: BLE001 - a budget that cannot be read never stops writes
        log.exception("could not read the API budget")
        return False


def send_window_seconds(db: Database, settings) -> float:
    """How long a part-filled write call may wait for more records now (core/send_window.py): the relaxed
    window, growing to the pressed one as the projection nears the budget."""
    try:
        pressure = current_plan(db).pressure
    except Exception:  # noqa: BLE001 - a budget that cannot be read keeps the relaxed window
        log.exception("could not read the API budget")
        pressure = 0.0
    return send_window.window_seconds(settings.send_window_seconds, settings.send_window_pressed_seconds, pressure)


def allows(db: Database, kind: str) -> bool:
    """For work that runs on its own schedule (CDC gap fetches): False while the budget pauses it."""
    return current_plan(db).factor(kind) is not None
