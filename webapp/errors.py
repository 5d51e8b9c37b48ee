"""Errors: failed and unmapped inbound notifications (retry, retry all, ignore), failed writes and conflicts.
History is kept 30 days (Heroku Connect keeps 24 h)."""
from __future__ import annotations

from flask import Blueprint, abort, redirect, render_template, request, url_for

from gateway import mapping_store
from webapp import sync, write_path
from webapp.context import ctx

bp = Blueprint("errors", __name__, url_prefix="/errors")
HISTORY_DAYS = 30
PAGE_SIZE = 200


@bp.get("")
def index():
    db = ctx().db
    return render_template(
        "errors/page.html",
        failed=db.fetchall("problem_notifications", {"state": "failed", "days": HISTORY_DAYS, "limit": PAGE_SIZE}),
        unmapped=db.fetchall("unmapped_objects"),
        failed_writes=write_path.failed_writes(HISTORY_DAYS, PAGE_SIZE),
        conflicts=write_path.conflicts(HISTORY_DAYS, PAGE_SIZE),
        drift=_latest_drift(), mappings=[m for m in mapping_store.list_all(db) if m.reads],
        days=HISTORY_DAYS, message=request.args.get("message"))


def _latest_drift() -> dict[int, dict]:
    """The newest drift report of each mapping."""
    latest: dict[int, dict] = {}
    for report in sync.drift_reports(limit=500):
        latest.setdefault(report["mapping_id"], report)
    return latest


@bp.app_template_filter("salesforce_errors")
def salesforce_errors(error) -> str:
    """The change log keeps Salesforce's error JSON ([{"statusCode", "message", "fields"}]); say it in words."""
    if not error:
        return ""
    items = error if isinstance(error, list) else [error]
    parts = []
    for e in items:
        if isinstance(e, dict):
            fields = f" ({', '.join(e['fields'])})" if e.get("fields") else ""
            parts.append(f"{e.get('statusCode') or e.get('errorCode') or ''}: {e.get('message', '')}{fields}".strip(": "))
        else:
            parts.append(str(e))
    return "; ".join(parts)


def _answer(message: str):
    if request.headers.get("HX-Request"):
        return render_template("errors/_done.html", message=message)
    return redirect(url_for(".index", message=message), 303)


@bp.post("/notifications/<notification_id>/retry")
def retry_notification(notification_id: str):
    if not ctx().db.fetchone("retry_notification", {"id": notification_id}):
        abort(404, description="That notification is no longer failed.")
    ctx().enqueue("apply_inbound")
    return _answer(f"Notification {notification_id} queued again.")


@bp.post("/notifications/<notification_id>/ignore")
def ignore_notification(notification_id: str):
    if not ctx().db.fetchone("ignore_notification", {"id": notification_id}):
        abort(404, description="That notification is no longer failed.")
    return _answer(f"Notification {notification_id} ignored.")


@bp.post("/notifications/retry-all")
def retry_all_notifications():
    n = len(ctx().db.fetchall("retry_failed_notifications"))
    ctx().enqueue("apply_inbound")
    return redirect(url_for(".index", message=f"{n} failed notifications queued again."), 303)


@bp.post("/writes/<int:change_id>/retry")
def retry_write(change_id: int):
    if not write_path.retry_write(change_id):
        abort(404, description="That write is no longer failed.")
    ctx().enqueue("drain_outbound")
    return _answer(f"Write {change_id} queued again.")


@bp.post("/writes/<int:change_id>/ignore")
def ignore_write(change_id: int):
    if not write_path.ignore_write(change_id):
        abort(404, description="That write is no longer failed.")
    return _answer(f"Write {change_id} ignored.")


@bp.post("/writes/retry-all")
def retry_all_writes():
    n = write_path.retry_all_writes()
    ctx().enqueue("drain_outbound")
    return redirect(url_for(".index", message=f"{n} failed writes queued again."), 303)


@bp.post("/drift/<int:mapping_id>")
def check_drift(mapping_id: int):
    """Compare the table with Salesforce record by record (in the worker); "repair" also fixes what differs."""
    m = mapping_store.get(ctx().db, mapping_id)
    if m is None:
        abort(404, description=f"There is no mapping {mapping_id}.")
    repair = request.form.get("repair") == "yes"
    ctx().enqueue("reconcile_mapping", mapping_id, repair)
    return redirect(url_for(".index", message=f"{'Repair' if repair else 'Check'} of {m.object_name} queued; "
                                               "reload this page in a moment."), 303)
