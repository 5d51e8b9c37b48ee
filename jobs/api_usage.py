"""API usage into Postgres: the gateway's per-hour counts (by kind of work and object), Salesforce's own
accounting (Sforce-Limit-Info on every response, /limits now and then) and how the last call went."""
from __future__ import annotations

import logging
import threading
import time
import weakref

from psycopg.types.json import Jsonb

from gateway.db import Database
from gateway.salesforce import Salesforce, SalesforceError

log = logging.getLogger("forcebridge.api_usage")
# /limits costs a call; Sforce-Limit-Info brings the daily count for free, so /limits (Bulk jobs, platform
# events) is read at most this often, and only when other calls were made since the last read: an idle
# system makes no Salesforce calls.
LIMITS_SECONDS = 900
# What /limits reports that the budget and the console show.
TRACKED_LIMITS = ("DailyApiRequests", "DailyBulkV2QueryJobs", "DailyBulkV2QueryFileStorageMB",
                  "DailyBulkApiBatches", "DailyDeliveredPlatformEvents")
_last_limits = {"at": 0.0, "calls": -1}
_limits_lock = threading.Lock()
_written: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()   # gateway -> (database, usage, health) stored


def flush(db: Database, sf: Salesforce | None) -> int:
    """Store what the gateway counted since the last flush; returns the calls stored. Cheap when idle."""
    if sf is None:
        return 0
    used, saved = sf.take_usage()
    splits = sf.take_splits()
    if used or saved or splits:
        keys = sorted(set(used) | set(saved) | set(splits))
        try:
            db.execute("add_api_usage", {"hours": [k[0] for k in keys], "kinds": [k[1] for k in keys],
                                         "objects": [k[2] for k in keys],
                                         "calls": [used.get(k, 0) for k in keys],
                                         "saved": [saved.get(k, 0) for k in keys],
                                         "splits": [splits.get(k, 0) for k in keys]})
        except Exception:
            sf.give_back_usage(used, saved, splits)
            raise
    seen = (db.url, sf.api_usage, sf.health)
    if seen != _written.get(sf):        # a web request flushes too: write only what changed
        if sf.api_usage is not None:
            db.execute("put_api_limit", {"name": "DailyApiRequests", "max": sf.api_usage.limit,
                                         "remaining": max(sf.api_usage.limit - sf.api_usage.used, 0)})
        if sf.health is not None:
            db.execute("put_document", {"key": "salesforce_health", "value": Jsonb({
                "state": sf.health.state, "since": sf.health.since.isoformat(), "message": sf.health.message})})
        _written[sf] = seen
    return sum(used.values())


def store_limits(db: Database, limits: dict) -> None:
    """A /limits answer: the limits the budget and the console use."""
    for name in TRACKED_LIMITS:
        value = limits.get(name)
        if isinstance(value, dict) and "Max" in value:
            db.execute("put_api_limit", {"name": name, "max": value.get("Max"), "remaining": value.get("Remaining")})


def refresh_limits(db: Database, sf: Salesforce | None, every: float = LIMITS_SECONDS, force: bool = False) -> bool:
    """Read /limits when the last read is older than `every` seconds and this process has called Salesforce
    since (per process). True when it read."""
    if sf is None:
        return False
    with _limits_lock:
        if not force and ((time.monotonic() - _last_limits["at"] < every and _last_limits["at"])
                          or sf.calls == _last_limits["calls"]):
            return False
        _last_limits["at"] = time.monotonic()
    try:
        with sf.work("other"):
            store_limits(db, sf.call("GET", "/limits").json())
    except SalesforceError as exc:
        log.warning("GET /limits failed: %s", exc)
    finally:
        flush(db, sf)
        _last_limits["calls"] = sf.calls
    return True


def health(db: Database) -> dict | None:
    """How Salesforce answered the last call a process made: {state: ok|unreachable|refused, since, message}."""
    row = db.fetchone("get_document", {"key": "salesforce_health"})
    return row["value"] if row else None


def limits(db: Database) -> dict:
    return {r["name"]: r for r in db.fetchall("api_limits")}
