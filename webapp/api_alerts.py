"""GET /api/v1/alerts: each alert condition's state, thresholds and channels (bearer token, as the API)."""
from __future__ import annotations

from flask import Blueprint, jsonify

from jobs import alerts
from webapp import api
from webapp.context import ctx

bp = Blueprint("api_alerts", __name__, url_prefix="/api/v1/alerts")
bp.before_request(api.require_token)


@bp.get("")
def alert_state():
    return jsonify(alerts.as_json(ctx().db))
