"""Huey tasks for loads, the polling backstop, initial pushes and drift checks (put on the queue by
jobs.tasks.register)."""
from __future__ import annotations

import logging

from huey import crontab
from huey.exceptions import RetryTask

from gateway import mapping_store
from gateway.salesforce import for_settings
from jobs import budget, drift, formula_refresh, load, poll, push, row_filters, runtime

log = logging.getLogger("forcebridge.tasks")


def load_options(settings, on_page=None) -> load.LoadOptions:
    return load.LoadOptions(page_size=settings.load_page_size or None, rest_max=settings.load_rest_max,
                            on_page=on_page)


def push_options(settings) -> push.PushOptions:
    return push.PushOptions(bulk_threshold=settings.push_bulk_threshold, bundle=settings.drain_bundle)


def run_loads():
    """Every queued load, and loads whose runner died (they continue from their last page)."""
    s = runtime.settings()
    sf = for_settings(s)
    if sf is None:
        return []
    with sf.work("loads"):
        return [r["id"] for r in load.run_pending(runtime.db(), sf, load_options(s))]


def mapping_ready(mapping_id: int):
    """After a mapping is created: its first load (reading) and the push of rows without sfid (writing)."""
    s = runtime.settings()
    m = mapping_store.get(runtime.db(), mapping_id)
    sf = for_settings(s)
    if m is None or sf is None:
        return None
    if m.writes and m.active:
        with sf.work("writes"):
            push.initial_push(runtime.db(), sf, m, push_options(s))
    if m.reads:
        with sf.work("loads"):
            load.run_pending(runtime.db(), sf, load_options(s))
    return mapping_id


def reconcile_mapping(mapping_id: int, repair: bool = False):
    s = runtime.settings()
    m = mapping_store.get(runtime.db(), mapping_id)
    sf = for_settings(s)
    if m is None or sf is None:
        return None
    wait = budget.drift_put_off_for(runtime.db())
    if wait is not None:   # the API budget pauses drift checks: this one runs when it allows them again
        log.info("drift check of %s put off %.0f s by the API budget", m.object_name, wait)
        raise RetryTask("drift checks are paused by the API budget", delay=wait)
    with sf.work("drift"):
        return drift.check(runtime.db(), sf, m, repair=repair, options=load_options(s))["id"]


def loads_waiting() -> bool:
    """Loads left by a killed worker (their lease lapsed) or queued while no worker listened."""
    return bool(runtime.db().fetchall("loads_to_run"))


def poll_backstop():
    """Each minute, poll the mappings whose interval (sf_polling_seconds, default 10 min) has passed."""
    sf = for_settings(runtime.settings())
    if sf is None:
        return
    budget.put_off_polls(runtime.db())
    with sf.work("polls"):
        results = poll.poll_due(runtime.db(), sf, bulk_above=runtime.settings().load_rest_max)
    for result in results:
        if result.changed or result.deleted:
            log.info("poll of mapping %s: %s changed, %s deleted, %s API calls", result.mapping_id,
                     result.changed, result.deleted, result.api_calls)


def refresh_formulas():
    """Each minute, refresh the calculated fields of mappings whose `formula_refresh_minutes` has passed
    (first: such a refresh also serves the changed parents queued for its mapping), then the children of
    parents that changed. Counted as their own kind: the budget's ladder spaces both out (the next refresh
    moves further away) and pauses them just before the polls."""
    sf = for_settings(runtime.settings())
    if sf is None:
        return
    factor = budget.current_plan(runtime.db()).factor("formula_refresh")
    if factor is None:
        return
    bulk_above = runtime.settings().load_rest_max
    with sf.work("formula_refresh"):
        formula_refresh.refresh_due(runtime.db(), sf, bulk_above=bulk_above, factor=factor)
        formula_refresh.refresh_children(runtime.db(), sf, bulk_above=bulk_above, factor=factor)


def check_row_filters():
    """Records of mappings with a row filter that an Outbound Message, a CDC event or our own write touched: read
    through the filter (they arrive, or their rows leave). After each inbound apply that queued some, and each
    minute."""
    sf = for_settings(runtime.settings())
    if sf is None or not row_filters.pending(runtime.db()):
        return None
    return row_filters.check_pending(runtime.db(), sf)


def register(huey) -> dict:
    """Put these tasks on `huey` (jobs.tasks.register calls this); returns them by name."""
    tasks = {"run_loads": huey.task()(run_loads), "mapping_ready": huey.task()(mapping_ready),
             "reconcile_mapping": huey.task()(reconcile_mapping)}

    def loads_backstop():
        """Loads left by a killed worker or queued while no worker listened get a task."""
        if loads_waiting():
            tasks["run_loads"]()

    tasks["loads_backstop"] = huey.periodic_task(crontab(minute="*"))(loads_backstop)
    tasks["poll_backstop"] = huey.periodic_task(crontab(minute="*"))(poll_backstop)
    tasks["refresh_formulas"] = huey.periodic_task(crontab(minute="*"))(refresh_formulas)
    tasks["check_row_filters"] = huey.periodic_task(crontab(minute="*"))(check_row_filters)
    return tasks
