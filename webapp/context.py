"""What every view needs: settings, the database and a way to ring the worker's doorbell."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from flask import current_app

from gateway.db import Database
from settings import Settings


@dataclass
class Context:
    settings: Settings
    db: Database
    enqueue: Callable[..., None]   # enqueue("apply_inbound"): a lost doorbell is found by the sweeper
    describe: Callable[[str], dict | None] = lambda object_name: None  # Salesforce describe, when connected
    # The console asks these when Salesforce is connected: {"reachable", "api_used", "api_limit", "message"}
    # (API usage from Sforce-Limit-Info) and SELECT COUNT() FROM <object>. None means "not connected".
    salesforce_status: Callable[[], dict | None] = lambda: None
    count_records: Callable[..., int | None] = lambda object_name, where="": None
    # Salesforce's reason for refusing a mapping's row filter (a LIMIT 0 query), None when accepted or unknown
    check_row_filter: Callable[[str, str], str | None] = lambda object_name, condition: None


def ctx() -> Context:
    return current_app.extensions["forcebridge"]
