"""Postgres -> Salesforce failures in the JSON API: list them, retry or ignore one; conflicts on record."""
from __future__ import annotations

from flask import Blueprint, abort, jsonify, request

from core.change_states import Action
from gateway import change_log
from webapp.context import ctx

bp = Blueprint("sync_errors", __name__)   # nested in webapp/api.py's /api/v1 tree (its gate, its errors)
STATES = ("FAILED", "REQUEUED", "IGNORED")


def _entry(r: dict) -> dict:
    return {"id": r["id"], "mapping_id": r["mapping_id"], "object_name": r["object_name"],
            "table": f'{r["table_schema"]}.{r["table_name"]}' if r["table_name"] else None,
            "op": r["op"], "record_id": r["record_id"], "sfid": r["sfid"], "external_id": r["external_id"],
            "fields": r["fields"], "state": r["state"], "attempts": r["attempts"], "error": r["error"],
            "created_at": r["created_at"].isoformat(),
            "finished_at": r["finished_at"].isoformat() if r["finished_at"] else None}


@bp.get("/errors")
def list_errors():
    """FAILED changes by default; ?state=REQUEUED shows the ones waiting for a retry."""
    state = request.args.get("state", "FAILED").upper()
    if state not in STATES:
        abort(400, description=f"state must be one of {', '.join(STATES)}")
    limit = request.args.get("limit", 100, type=int)
    rows = ctx().db.fetchall("list_change_errors", {"states": [state], "limit": max(1, min(limit, 1000))})
    return jsonify(errors=[_entry(r) for r in rows])


def _act(action: Action, change_id: int, wanted: str):
    """The entry moved as core.change_states decides; 404 when there is none, 409 when its state refuses."""
    row = change_log.act(ctx().db, change_id, action)
    if row is None:
        if ctx().db.fetchone("get_change", {"id": change_id}) is None:
            abort(404, description=f"no change {change_id}")
        return None, (jsonify(error="conflict", message=f"change {change_id} cannot be {wanted} in its state"), 409)
    return row, None


@bp.post("/errors/<int:change_id>/retry")
def retry(change_id: int):
    row, refused = _act(Action.RETRY, change_id, "retried")
    if refused:
        return refused
    ctx().enqueue("drain_outbound")
    return jsonify(id=change_id, state=row["state"])


@bp.post("/errors/<int:change_id>/ignore")
def ignore(change_id: int):
    row, refused = _act(Action.IGNORE, change_id, "ignored")
    return refused or jsonify(id=change_id, state=row["state"])


@bp.get("/conflicts")
def list_conflicts():
    limit = request.args.get("limit", 100, type=int)
    rows = ctx().db.fetchall("list_conflicts", {"limit": max(1, min(limit, 1000))})
    return jsonify(conflicts=[{**r, "pg_changed_at": _iso(r["pg_changed_at"]), "sf_changed_at": _iso(r["sf_changed_at"]),
                               "detected_at": _iso(r["detected_at"])} for r in rows])


def _iso(value):
    return value.isoformat() if value else None
