"""Huey tasks. Each is a doorbell: the work it does is found in Postgres, so a lost task loses nothing."""
from __future__ import annotations

import logging

from huey import crontab

from jobs import huey, inbound, runtime

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
