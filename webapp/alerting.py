"""Setup > Alerts: channels (webhook, Slack, email), thresholds, a test alert; and the web process's own
check each minute, so "no worker is running" is noticed by something other than a worker."""
from __future__ import annotations

import logging
import threading
import time

from flask import Blueprint, current_app, render_template, request

from core.alerts import AlertConfigError
from jobs import alerts
from webapp.context import ctx

bp = Blueprint("alerting", __name__, url_prefix="/setup/alerts")

log = logging.getLogger("forcebridge.alerts")
WEB_CHECK_SECONDS = 60
_last_web_check = {"at": 0.0}
_web_lock = threading.Lock()


@bp.record_once
def _first_check_after_a_minute(state) -> None:
    """A web process that starts beside its worker (a deploy, a restart) gives the worker a minute to beat
    before it looks: "no worker" at every start would be noise, followed by a recovery."""
    _last_web_check["at"] = time.monotonic()


def _panel(message: str = "", ok: bool = True, field: str | None = None, results: dict | None = None, status=200):
    db = ctx().db
    return render_template("setup/_alerts_panel.html", alerting=alerts.config(db), message=message, ok=ok,
                           field=field, results=results, shown_target=alerts.shown_target,
                           states=alerts.as_json(db)["alerts"]), status


@bp.app_context_processor
def _alerts_for_templates():
    def alerting():
        db = ctx().db
        return {"config": alerts.config(db), "states": alerts.as_json(db)["alerts"]}
    return {"alerting_setup": alerting, "shown_target": alerts.shown_target}


@bp.post("/channels")
def add_channel():
    try:
        channel = alerts.add_channel(ctx().db, request.form)
    except AlertConfigError as exc:
        return _panel(str(exc), ok=False, field=exc.field, status=400)
    return _panel(f"Added {channel['kind']} channel.")


@bp.post("/channels/<channel_id>/delete")
def remove_channel(channel_id):
    if not alerts.remove_channel(ctx().db, channel_id):
        return _panel("No such channel.", ok=False, status=404)
    return _panel("Channel removed.")


@bp.post("/thresholds")
def thresholds():
    try:
        alerts.set_thresholds(ctx().db, request.form)
    except AlertConfigError as exc:
        return _panel(str(exc), ok=False, field=exc.field, status=400)
    return _panel("Thresholds saved.")


@bp.post("/test")
def test():
    results = alerts.send_test(ctx().db, ctx().settings)
    if not results:
        return _panel("Add a channel first.", ok=False, status=400)
    failed = [e for e in results.values() if e]
    return _panel("Test alert sent." if not failed else f"{len(failed)} of {len(results)} channels failed.",
                  ok=not failed, results=results)


@bp.after_app_request
def _check_now_and_then(response):
    """At most once a minute per web process, in a thread of its own (a request never waits for it)."""
    if current_app.testing or not ctx().settings.web_alert_checks:
        return response
    with _web_lock:
        if time.monotonic() - _last_web_check["at"] < WEB_CHECK_SECONDS:
            return response
        _last_web_check["at"] = time.monotonic()
    context = ctx()
    threading.Thread(target=_check, args=(context.db, context.settings), daemon=True, name="alerts").start()
    return response


def _check(db, settings) -> None:
    try:
        alerts.check(db, settings)
    except Exception:  # noqa: BLE001 - logged; the next minute tries again
        log.exception("alert check failed")
