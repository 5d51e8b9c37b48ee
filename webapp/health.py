"""GET /healthz: 200 when Postgres answers, 503 when it does not."""
from flask import Blueprint, jsonify

from webapp.context import ctx

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    ok = ctx().db.ping()
    return jsonify(status="ok" if ok else "unavailable", postgres=ok), 200 if ok else 503
