"""Errors: failed and unmapped inbound notifications (retry, retry all, ignore), failed writes and conflicts.
History is kept 30 days (Heroku Connect keeps 24 h)."""
from __future__ import annotations

from flask import Blueprint, Response, abort, redirect, render_template, request, url_for

from gateway import mapping_store
from webapp import api_jobs, sync, write_path
from webapp.context import ctx

bp = Blueprint("errors", __name__, url_prefix="/errors")
HISTORY_DAYS = 30
PAGE_SIZE = 50           # failed notifications (and conflicts) per page
EXCERPT_CHARS = 2048     # of each payload, reason and conflict value; the whole payload is one click away


@bp.get("")
def index():
    db = ctx().db
    page = max(request.args.get("page", 1, type=int) or 1, 1)
    query = {"state": "failed", "days": HISTORY_DAYS}
    total = db.fetchone("count_problem_notifications", query)["n"]
    pages = max((total + PAGE_SIZE - 1) // PAGE_SIZE, 1)
    page = min(page, pages)
    return render_template(
        "errors/page.html",
        failed=db.fetchall("problem_notifications", {**query, "limit": PAGE_SIZE, "offset": (page - 1) * PAGE_SIZE,
                                                     "excerpt": EXCERPT_CHARS}),
        failed_total=total, page=page, pages=pages, page_size=PAGE_SIZE, excerpt_chars=EXCERPT_CHARS,
        unmapped=db.fetchall("unmapped_objects"),
        failed_writes=write_path.failed_writes(HISTORY_DAYS, 200),
        conflicts=write_path.conflicts(HISTORY_DAYS, PAGE_SIZE, EXCERPT_CHARS),
        drift=_latest_drift(), mappings=[m for m in mapping_store.list_all(db) if m.reads],
        days=HISTORY_DAYS, message=request.args.get("message"))


def _json_payload(row, name: str) -> Response:
    if row is None:
        abort(404, description=f"There is no {name} any more.")
    # JSON text straight from Postgres: one payload in memory, never parsed into Python objects
    return Response(row["payload"], mimetype="application/json",
                    headers={"Content-Disposition": "inline", "Cache-Control": "no-store"})


@bp.get("/notifications/<notification_id>/payload")
def notification_payload(notification_id: str):
    """The whole payload of one notification (the page shows excerpts)."""
    return _json_payload(ctx().db.fetchone("notification_payload", {"id": notification_id}), "such notification")


@bp.get("/conflicts/<int:conflict_id>/values")
def conflict_values(conflict_id: int):
    return _json_payload(ctx().db.fetchone("conflict_values", {"id": conflict_id}), "such conflict")


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
    api_jobs.start("reconcile", mapping_id, {"repair": repair}, "console")   # followed at /api/v1/jobs
    return redirect(url_for(".index", message=f"{'Repair' if repair else 'Check'} of {m.object_name} queued; "
                                               "reload this page in a moment."), 303)
