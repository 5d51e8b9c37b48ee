"""The overview: is everything connected, how much is waiting, when did each direction last sync."""
from __future__ import annotations

import datetime as dt

from flask import Blueprint, render_template, request

from jobs import cdc_source
from jobs.heartbeat import ALIVE_SECONDS
from webapp import budget, sync, write_path
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
    workers = db.fetchone("live_workers", {"seconds": ALIVE_SECONDS}) if postgres else None
    if not postgres:
        worker = ("unknown", "Postgres is unreachable")
    elif not workers["alive"]:
        seen = f"last seen {utc(workers['last_seen'])} UTC" if workers["last_seen"] else "never seen"
        worker = ("down", f"no worker process is running ({seen}); start `python -m jobs.worker`")
    elif oldest and now - oldest > STALLED_AFTER:
        worker = ("stalled", f"{workers['alive']} running, but a notification waits since {utc(oldest, '%H:%M:%S')} UTC")
    else:
        worker = ("alive", f"{workers['alive']} process{'es' if workers['alive'] > 1 else ''}, "
                           + ("applying notifications" if oldest else "nothing waiting"))
    try:
        salesforce = ctx().salesforce_status()
    except Exception as exc:  # noqa: BLE001 - the overview reports a broken connection, it does not crash
        salesforce = {"reachable": False, "message": str(exc)}
    cdc = cdc_source.status(db) if postgres else None
    last_applied = backlog["last_applied"] if backlog else None
    if cdc and cdc["last_event_at"] and (last_applied is None or cdc["last_event_at"] > last_applied):
        last_applied = cdc["last_event_at"]          # Change Data Capture applies without the inbox
    return {"postgres": postgres, "backlog": backlog, "last_sync": last_sync, "worker": worker,
            "salesforce": salesforce, "writes": write_path.backlog() if postgres else None,
            "last_at": {"sf_to_pg": last_applied,
                        "pg_to_sf": write_path.last_success() if postgres else None},
            "polls": sync.poll_status() if postgres else [], "now": now,
            "budget": budget.overview(db, now, ctx().settings) if postgres else None,
            "cdc": cdc}


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
