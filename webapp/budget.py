"""The API budget in the console and /metrics: today's use against the budget and the allocation, what is
held back and until when, a forecast per mapping; the Setup form that sets share and floor."""
from __future__ import annotations

import datetime as dt

from flask import Blueprint, render_template, request
from prometheus_client.core import GaugeMetricFamily

from core import budget as core_budget
from gateway import mapping_store, salesforce
from jobs import api_usage, budget
from webapp.context import ctx

bp = Blueprint("budget", __name__, url_prefix="/setup/budget")


def overview(db, now: dt.datetime | None = None, app_settings=None) -> dict:
    """Everything the Overview's budget card and /metrics show (with `app_settings`: the send window too)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    plan = budget.current_plan(db)
    settings = budget.settings_of(db)
    by_object = {r["object_name"].lower(): r for r in db.fetchall("api_usage_by_object")}
    minutes = 60 + now.minute + now.second / 60     # the previous hour and this one so far
    mappings = []
    for m in mapping_store.list_all(db):
        row = by_object.get(m.object_name.lower())
        mappings.append({"id": m.id, "object_name": m.object_name, "calls_24h": row["calls_24h"] if row else 0,
                         "per_day": core_budget.forecast_per_day(row["calls_recent"], minutes) if row else 0,
                         "saved_24h": row["saved_24h"] if row else 0})
    by_kind = {r["kind"]: r for r in db.fetchall("api_usage_by_kind")}
    return {"plan": plan, "settings": settings, "mappings": mappings, "by_kind": by_kind,
            "kind_labels": core_budget.LABELS,
            "saved_24h": sum(max(r["saved"], 0) for r in by_kind.values()),
            "split_calls_24h": sum(r["split_calls"] for r in by_kind.values()),
            "holds": [h.describe() for h in plan.holds.values()] + _send_window(db, app_settings),
            "limits": api_usage.limits(db)}


def _send_window(db, settings) -> list[str]:
    seconds = budget.send_window_seconds(db, settings) if settings is not None else 0.0
    if seconds <= 0:
        return []
    return [f"writes: a part-filled call waits up to {seconds / 60:.0f} min for more records (the send window)"
            if seconds >= 60 else f"writes: a part-filled call waits up to {seconds:.0f} s for more records"]


def metric_families(db):
    """The same numbers for Prometheus."""
    view = overview(db)
    plan = view["plan"]
    calls = GaugeMetricFamily("forcebridge_api_budget_calls",
                              "Salesforce API calls: the org's allocation and use, our budget and our last 24 h",
                              labels=["what"])
    for what, value in (("allocation", plan.allocation), ("org_used", plan.org_used), ("budget", plan.budget),
                        ("allowed", plan.allowed), ("ours_24h", plan.ours_24h), ("projected", plan.projected)):
        if value is not None:
            calls.add_metric([what], value)
    yield calls
    share = GaugeMetricFamily("forcebridge_api_budget_share", "Our last 24 h of API calls over the budget")
    share.add_metric([], plan.share_of_budget)
    yield share
    kinds = GaugeMetricFamily("forcebridge_api_calls_24h", "Our API calls in the last 24 h by kind of work",
                              labels=["kind"])
    saved = GaugeMetricFamily("forcebridge_api_calls_saved_24h",
                              "API calls Bulk API 2.0 saved against REST in the last 24 h", labels=["kind"])
    splits = GaugeMetricFamily("forcebridge_api_split_calls_24h",
                               "Extra API calls spent splitting Collections calls Salesforce refused as a whole, "
                               "last 24 h", labels=["kind"])
    for kind, row in view["by_kind"].items():
        kinds.add_metric([kind], row["calls"])
        saved.add_metric([kind], row["saved"])
        splits.add_metric([kind], row["split_calls"])
    yield kinds
    yield saved
    yield splits
    forecast = GaugeMetricFamily("forcebridge_api_forecast_calls_per_day",
                                 "API calls a day at the current rate, per mapping", labels=["mapping"])
    for m in view["mappings"]:
        forecast.add_metric([m["object_name"]], m["per_day"])
    yield forecast
    held = GaugeMetricFamily("forcebridge_api_work_held", "1 while the budget holds a kind of work back",
                             labels=["kind", "action"])
    for h in plan.holds.values():
        held.add_metric([h.kind, h.action], 1)
    yield held


@bp.app_context_processor
def _budget_for_templates():
    return {"api_budget": lambda: overview(ctx().db, app_settings=ctx().settings)}


@bp.after_app_request
def _flush_web_calls(response):
    """Calls the web process made (describe, /limits, counts) are stored like the worker's."""
    try:
        sf = salesforce.for_settings(ctx().settings)
        if sf is not None:
            api_usage.flush(ctx().db, sf)
    except Exception:  # noqa: BLE001 - never fails a request; the counts wait for the next one
        pass
    return response


@bp.post("")
def save():
    try:
        value = core_budget.parse_settings(request.form)
    except core_budget.BudgetError as exc:
        return render_template("setup/_saved.html", ok=False, message=str(exc), field=exc.field), 400
    budget.save_settings(ctx().db, value)
    return render_template("setup/_saved.html", ok=True,
                           message=f"Saved: up to {value.share:.0%} of the allocation, floor {value.floor:.0%}.")
