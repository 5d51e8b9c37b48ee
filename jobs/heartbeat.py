"""The worker's "I am alive": a row in forcebridge.worker_heartbeats, refreshed every few seconds by a
background thread of the worker process (jobs/consumer.py lists it)."""
from __future__ import annotations

import logging
import os
import socket
import threading

from jobs import runtime

log = logging.getLogger("forcebridge.heartbeat")
BEAT_SECONDS = 15
ALIVE_SECONDS = 3 * BEAT_SECONDS   # the overview calls a worker gone after missing this long


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def beat(stop: threading.Event) -> None:
    if not runtime.settings().database_url:
        return
    name, db = worker_name(), runtime.db()
    try:
        while not stop.is_set():
            db.execute("beat_worker", {"worker": name})
            stop.wait(BEAT_SECONDS)
    finally:
        try:
            db.execute("stop_worker", {"worker": name})
        except Exception:  # noqa: BLE001 - on the way out; the row ages out anyway
            log.warning("could not remove the heartbeat of %s", name)
