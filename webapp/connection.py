"""What the console asks Salesforce, through the one gateway: is it reachable, how much of the daily API
allowance is used, how many records an object has. Answers are cached so a page refreshing every few
seconds costs a handful of API calls a day, not thousands."""
from __future__ import annotations

import threading
import time

from core import soql
from core.mapping import MappingError, check_object_name
from gateway import salesforce
from settings import Settings

STATUS_SECONDS = 300   # GET /limits at most every 5 minutes
COUNT_SECONDS = 300    # SELECT COUNT() per object at most every 5 minutes


class _Cache:
    def __init__(self, seconds: float):
        self.seconds = seconds
        self._lock = threading.Lock()
        self._values: dict = {}

    def get(self, key, compute):
        with self._lock:
            hit = self._values.get(key)
            if hit and time.monotonic() - hit[0] < self.seconds:
                return hit[1]
        value = compute()
        with self._lock:
            self._values[key] = (time.monotonic(), value)
        return value


def status_reader(settings: Settings):
    """Context.salesforce_status: None when Salesforce is not configured."""
    cache = _Cache(STATUS_SECONDS)

    def status() -> dict | None:
        sf = salesforce.for_settings(settings)
        if sf is None:
            return None
        return cache.get("limits", lambda: _limits(sf))
    return status


def _limits(sf) -> dict:
    try:
        daily = sf.call("GET", "/limits").json().get("DailyApiRequests", {})
    except salesforce.SalesforceError as exc:
        return {"reachable": False, "message": str(exc), "api_used": None, "api_limit": None}
    except Exception as exc:  # noqa: BLE001 - network errors of every kind: shown, not raised
        return {"reachable": False, "message": f"{type(exc).__name__}: {exc}", "api_used": None, "api_limit": None}
    limit, remaining = daily.get("Max"), daily.get("Remaining")
    used = limit - remaining if limit is not None and remaining is not None else None
    if used is None and sf.api_usage:
        used, limit = sf.api_usage.used, sf.api_usage.limit
    return {"reachable": True, "message": "", "api_used": used, "api_limit": limit}


def record_counter(settings: Settings):
    """Context.count_records: core.soql.count(<object>), or None when not configured or not answering."""
    cache = _Cache(COUNT_SECONDS)

    def count(object_name: str, where: str = "") -> int | None:
        """`where`: a mapping's row filter condition (core.soql.filter_condition), checked when it was saved."""
        sf = salesforce.for_settings(settings)
        if sf is None:
            return None
        try:
            check_object_name(object_name)   # it is written into the SOQL below
        except MappingError:
            return None

        def ask():
            try:
                return sf.call("GET", "/query", params={"q": soql.count(object_name, where)}).json()["totalSize"]
            except Exception:  # noqa: BLE001 - unknown counts show as "—"
                return None
        return cache.get(f"{object_name.lower()} {where}" if where else object_name.lower(), ask)
    return count


def row_filter_checker(settings: Settings):
    """Context.check_row_filter: Salesforce's reason for refusing a row filter (a LIMIT 0 query parses it), or
    None when it is accepted or Salesforce is not connected (then it is first checked by the load)."""
    def check(object_name: str, condition: str) -> str | None:
        sf = salesforce.for_settings(settings)
        if sf is None:
            return None
        try:
            sf.call("GET", "/query", params={"q": soql.filter_probe(object_name, condition)})
        except salesforce.PermanentError as exc:
            return f"Salesforce refused it: {exc}"
        except salesforce.TransientError:
            return None
        return None
    return check
