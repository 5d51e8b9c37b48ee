"""Huey tasks. Each is a doorbell: the work it does is found in Postgres, so a lost task loses nothing.
The functions here are plain; register() puts them on a Huey instance (jobs/queue.py create_queue)."""
from __future__ import annotations

import logging

from huey import crontab

from gateway import salesforce
from jobs import alerts, api_jobs, api_usage, drain, inbound, runtime, sync_tasks
from jobs.listener import Listener

log = logging.getLogger("forcebridge.tasks")


def apply_inbound():
    s = runtime.settings()
    result = inbound.apply_pending(runtime.db(), batch_size=s.apply_batch_size)
    if result.checking:     # records of mappings with a row filter: Salesforce says which match, right away
        sync_tasks.check_row_filters()
    return result.__dict__


def pending_notifications() -> int:
    pending = runtime.db().fetchone("count_pending_notifications")
    return pending["pending"] if pending else 0


# -- Postgres -> Salesforce ----------------------------------------------------------------------------
def write_listener() -> Listener | None:
    """The worker's LISTEN connection that drains within milliseconds of a commit (one per process; the
    worker starts and stops it). None without Salesforce credentials: there is nothing to send to."""
    s = runtime.settings()
    if not salesforce.configured(s):
        return None
    # a drain woken here stops between claims when the worker shuts down
    listener = Listener(s.database_url, lambda: drain.drain_now(stop=listener.stopping),
                        next_wake=lambda: drain.next_retry_in(runtime.db(), s))
    return listener


def drain_outbound():
    return drain.drain_now().outcomes


def drain_backstop():
    """Changes whose retry time came, leases of killed workers, notifications nobody heard."""
    result = drain.drain_now()
    if result.claimed:
        log.info("backstop drain: %s entries, %s calls, %s", result.claimed, result.calls, dict(result.outcomes))


def archive_changes():
    s = runtime.settings()
    drain.archive(runtime.db(), s.archive_after_hours, s.archive_purge_days)


def flush_api_usage(task=None, value=None, exception=None):
    """After every task (Huey's post-execute hook) and each minute: the calls counted go to Postgres."""
    try:
        api_usage.flush(runtime.db(), salesforce.for_settings(runtime.settings()))
    except Exception:  # noqa: BLE001 - the counts stay in the gateway for the next flush
        log.exception("could not store API usage")


def api_usage_tick():
    """Each minute: store the counts; read /limits when the last read is old (api_usage.LIMITS_SECONDS)."""
    flush_api_usage()
    api_usage.refresh_limits(runtime.db(), salesforce.for_settings(runtime.settings()))


def check_alerts():
    """Each minute: every alert condition, what is due goes out (jobs/alerts.py)."""
    return [a.condition for a in alerts.check(runtime.db(), runtime.settings())]


def register(huey) -> dict:
    """Put every task on `huey`; returns them by name (what the web app's enqueue(name) rings). Their
    names in the queue stay jobs.tasks.<name> and jobs.sync_tasks.<name>, so tasks queued by the previous
    release still run after a deploy."""
    every_minute = crontab(minute="*")
    tasks = {"apply_inbound": huey.task()(apply_inbound)}

    def sweep():
        """The backstop: whatever a lost or killed task left pending gets a new task."""
        pending = pending_notifications()
        if pending:
            log.info("sweeper: %s notifications pending, enqueueing apply", pending)
            tasks["apply_inbound"]()

    tasks["sweep"] = huey.periodic_task(every_minute)(sweep)
    tasks["drain_outbound"] = huey.task()(drain_outbound)
    tasks["drain_backstop"] = huey.periodic_task(every_minute)(drain_backstop)
    tasks["archive_changes"] = huey.periodic_task(crontab(minute="17"))(archive_changes)
    tasks["api_usage_tick"] = huey.periodic_task(every_minute)(api_usage_tick)
    tasks["check_alerts"] = huey.periodic_task(every_minute)(check_alerts)
    huey.post_execute("flush_api_usage")(flush_api_usage)
    tasks.update(sync_tasks.register(huey))

    def run_api_job(job_id: int):
        """A long operation the API queued (jobs/api_jobs.py); a push's logged rows are then drained."""
        done = api_jobs.run(runtime.db(), runtime.settings(), job_id)
        if done and done["kind"] == "push" and done["state"] == api_jobs.DONE:
            tasks["drain_outbound"]()
        return done and done["state"]

    def api_jobs_backstop():
        """Jobs whose doorbell was lost or whose worker died are run again."""
        for job_id in api_jobs.waiting(runtime.db()):
            tasks["run_api_job"](job_id)

    tasks["run_api_job"] = huey.task()(run_api_job)
    tasks["api_jobs_backstop"] = huey.periodic_task(every_minute)(api_jobs_backstop)
    return tasks
