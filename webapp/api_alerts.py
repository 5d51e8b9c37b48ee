"""GET /api/v1/alerts: each alert condition's state, thresholds and channels (in the /api/v1 tree, behind its gate)."""
from __future__ import annotations

from flask import Blueprint, jsonify

from jobs import alerts
from webapp.context import ctx

bp = Blueprint("alerts", __name__, url_prefix="/alerts")


@bp.get("")
def alert_state():
    return jsonify(alerts.as_json(ctx().db))
