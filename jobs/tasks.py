"""Huey tasks. Each is a doorbell: the work it does is found in Postgres, so a lost task loses nothing."""
from __future__ import annotations

import logging
import threading

from huey import crontab

from gateway import salesforce
from jobs import drain, huey, inbound, runtime
from jobs.listener import Listener

log = logging.getLogger("forcebridge.tasks")


@huey.task()
def apply_inbound():
    s = runtime.settings()
    result = inbound.apply_pending(runtime.db(), batch_size=s.apply_batch_size)
    return result.__dict__


@huey.periodic_task(crontab(minute="*"))
def sweep():
    """The backstop: whatever a lost or killed task left pending gets a new task."""
    pending = runtime.db().fetchone("count_pending_notifications")
    if pending and pending["pending"]:
        log.info("sweeper: %s notifications pending, enqueueing apply", pending["pending"])
        apply_inbound()


# -- Postgres -> Salesforce ----------------------------------------------------------------------------
_listener_lock = threading.Lock()
_listener = None


@huey.on_startup()
def start_listener():
    """One LISTEN connection per worker process drains within milliseconds of a commit."""
    global _listener
    with _listener_lock:
        if _listener is None and salesforce.configured(runtime.settings()):
            # a drain woken here stops between claims when the worker shuts down
            _listener = Listener(runtime.settings().database_url, lambda: drain.drain_now(stop=_listener.stopping),
                                 next_wake=lambda: drain.next_retry_in(runtime.db()))
            _listener.start()


@huey.task()
def drain_outbound():
    return drain.drain_now().outcomes


@huey.periodic_task(crontab(minute="*"))
def drain_backstop():
    """Changes whose retry time came, leases of killed workers, notifications nobody heard."""
    result = drain.drain_now()
    if result.claimed:
        log.info("backstop drain: %s entries, %s calls, %s", result.claimed, result.calls, dict(result.outcomes))


@huey.periodic_task(crontab(minute="17"))
def archive_changes():
    s = runtime.settings()
    drain.archive(runtime.db(), s.archive_after_hours, s.archive_purge_days)


# -- loads, polls, pushes, drift checks (jobs/sync_tasks.py) ----------------------------------------------
from jobs.sync_tasks import (loads_backstop, mapping_ready, poll_backstop, reconcile_mapping,  # noqa: E402,F401
                             run_loads)
