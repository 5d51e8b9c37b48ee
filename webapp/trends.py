"""Trends: hourly synced records per direction and failures, per mapping, over 24 h / 7 d / 30 d."""
from __future__ import annotations

from flask import Blueprint, abort, render_template, request

from core import trends
from gateway import mapping_store
from webapp.context import ctx

bp = Blueprint("trends", __name__, url_prefix="/trends")


@bp.get("")
def index():
    range_name = request.args.get("range", "24h")
    mapping_id = request.args.get("mapping", type=int)
    if mapping_id is not None and not 0 <= mapping_id <= 2_147_483_647:
        abort(400, description="mapping is not a mapping's id")
    try:
        hours = trends.hours_for(range_name)
    except ValueError as exc:
        abort(400, description=str(exc))
    mappings = mapping_store.list_all(ctx().db)
    chosen = next((m for m in mappings if m.id == mapping_id), None)
    shaped = trends.hourly_series(ctx().db.fetchall("hourly_stats", {"hours": hours, "mapping_id": mapping_id}))
    title = f"Records per hour, {chosen.object_name if chosen else 'all mappings'}, last {range_name}"
    context = {"figure": trends.figure(shaped, title), "totals": trends.totals(shaped),
               "series": shaped["series"], "range_name": range_name, "ranges": list(trends.RANGES),
               "mappings": mappings, "mapping_id": mapping_id}
    template = "trends/_chart.html" if request.headers.get("HX-Request") else "trends/page.html"
    return render_template(template, **context)
