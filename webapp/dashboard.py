"""The overview: is everything connected, how much is waiting, when did each direction last sync."""
from __future__ import annotations

import datetime as dt

from flask import Blueprint, render_template, request

from webapp import write_path
from webapp.context import ctx

bp = Blueprint("dashboard", __name__)
# A pending notification older than this means no worker is applying (the sweeper runs every minute).
STALLED_AFTER = dt.timedelta(minutes=3)


def status() -> dict:
    db = ctx().db
    postgres = db.ping()
    backlog = db.fetchone("notification_backlog") if postgres else None
    last_sync = {r["direction"]: r for r in db.fetchall("last_sync_per_direction")} if postgres else {}
    now = dt.datetime.now(dt.timezone.utc)
    oldest = backlog["oldest_pending"] if backlog else None
    if not postgres:
        worker = ("unknown", "Postgres is unreachable")
    elif oldest and now - oldest > STALLED_AFTER:
        worker = ("stalled", f"the oldest pending notification waits since {oldest:%H:%M:%S} UTC; is the worker running?")
    elif oldest:
        worker = ("busy", "applying notifications")
    else:
        worker = ("idle", "nothing waiting")
    try:
        salesforce = ctx().salesforce_status()
    except Exception as exc:  # noqa: BLE001 - the overview reports a broken connection, it does not crash
        salesforce = {"reachable": False, "message": str(exc)}
    return {"postgres": postgres, "backlog": backlog, "last_sync": last_sync, "worker": worker,
            "salesforce": salesforce, "writes": write_path.backlog() if postgres else None, "now": now}


@bp.get("/")
def overview():
    template = "dashboard/_status.html" if request.headers.get("HX-Request") else "dashboard/overview.html"
    return render_template(template, s=status())


@bp.get("/overview/status")
def overview_status():
    return render_template("dashboard/_status.html", s=status())


@bp.app_template_filter("utc")
def utc(value: dt.datetime | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    """Times from Postgres come in the session's time zone; the console always shows UTC."""
    return value.astimezone(dt.timezone.utc).strftime(fmt) if value else ""
