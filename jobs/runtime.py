"""What a worker process needs at hand: settings and the database, created once, lazily."""
from __future__ import annotations

import threading

from gateway.db import Database
from settings import Settings

_lock = threading.Lock()
_state: dict = {}


def configure(settings: Settings, db: Database | None = None) -> None:
    """Set the worker's settings (tests and the web process call this; the consumer reads the env)."""
    with _lock:
        _state["settings"] = settings
        _state["db"] = db


def settings() -> Settings:
    with _lock:
        if "settings" not in _state:
            _state["settings"] = Settings.from_env()
        return _state["settings"]


def db() -> Database:
    s = settings()
    with _lock:
        if _state.get("db") is None:
            _state["db"] = Database(s.database_url, max_size=4, name="forcebridge-worker")
        return _state["db"]
