"""The JSON API under /api/v1, for scripts and CI: ONE blueprint tree (this one and the blueprints nested in it
at the bottom) behind ONE gate, the bearer token (API_TOKEN). The mapping and configuration routes live here."""
from __future__ import annotations

import hmac

from flask import Blueprint, abort, jsonify, request

from core.mapping import MappingError, check_object_name, patched, to_entry
from gateway import mapping_store
from gateway.salesforce import SalesforceError
from webapp import api_alerts, api_jobs, mappings, openapi, sync, sync_errors
from webapp.context import ctx
from webapp.mappings import export_document, import_document, parent_describes

PREFIX = "/api/v1"
bp = Blueprint("api", __name__, url_prefix=PREFIX)
# The tree: every other /api/v1 blueprint hangs here, under this one's gate and error answers.
for _child in (sync.bp, sync_errors.bp, api_jobs.bp, api_alerts.bp, openapi.bp):
    bp.register_blueprint(_child)
# The one route of the tree anybody may read: the API's own description holds no data.
PUBLIC_ENDPOINTS = {"api.openapi.openapi"}


def is_api_request() -> bool:
    """Did the request match a route of this tree? (The console's gate leaves those to this one.)"""
    return bool(request.blueprints) and request.blueprints[-1] == bp.name


@bp.before_request
def require_token():
    """The gate of every route in the tree, nested blueprints included (Flask runs a parent's
    before_request for its children); also asked for requests under PREFIX that match no route."""
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    token = ctx().settings.api_token
    given = request.headers.get("Authorization", "")
    if not token or not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        return jsonify(error="unauthorized", message="send Authorization: Bearer <API_TOKEN>"), 401


MAX_JSON_DEPTH = 32   # a mapping is four levels deep; nothing the API takes needs more


def _json_body() -> dict:
    try:
        body = request.get_json(silent=True)
    except RecursionError:   # the json module gives up on very deep nesting with this, not a ValueError
        abort(400, description=f"the body is nested more than {MAX_JSON_DEPTH} levels deep")
    if not isinstance(body, dict):
        abort(400, description="the body must be a JSON object")
    too_deep = _deeper_than(body, MAX_JSON_DEPTH)
    if too_deep is not None:
        abort(400, description=f"{too_deep}: nested more than {MAX_JSON_DEPTH} levels deep")
    return body


def _deeper_than(value, limit: int) -> str | None:
    """The path of the first value nested deeper than `limit`, or None (iterative: no recursion to exhaust)."""
    stack = [(value, 0, "")]
    while stack:
        node, depth, path = stack.pop()
        if depth > limit:
            return path.lstrip(".")[:200] or "the body"
        if isinstance(node, dict):
            stack.extend((v, depth + 1, f"{path}.{str(k)[:40]}") for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((v, depth + 1, f"{path}[{i}]") for i, v in enumerate(node))
    return None


def _invalid(exc: MappingError):
    return jsonify(error="invalid_mapping", message=str(exc), field=exc.field), 400


@bp.errorhandler(400)
def bad_request(exc):
    return jsonify(error="bad_request", message=exc.description), 400


@bp.errorhandler(404)
def not_found(exc):
    return jsonify(error="not_found", message=exc.description), 404


@bp.errorhandler(409)
def conflict(exc):
    return jsonify(error="conflict", message=exc.description), 409


@bp.errorhandler(SalesforceError)
def salesforce_refused(exc):
    return jsonify(error="salesforce_error", message=str(exc)), 502


@bp.app_errorhandler(405)
def method_not_allowed(exc):
    """A method no route takes: under /api/ the answer is JSON like every other API answer (404s: see
    webapp/security.py, whose handler owns that code)."""
    if not request.path.startswith("/api/"):
        return exc
    response = jsonify(error="method_not_allowed", message=exc.description)
    if exc.valid_methods:
        response.headers["Allow"] = ", ".join(exc.valid_methods)
    return response, exc.code


@bp.get("/mappings")
def list_mappings():
    return jsonify(mappings=[to_entry(m) for m in mapping_store.list_all(ctx().db)])


@bp.post("/mappings")
def create_mapping():
    entry = _json_body()
    try:
        # The name goes into Salesforce's URL: checked before the describe, never after.
        created = mappings.create_mapping(entry, ctx().describe(check_object_name(entry.get("object_name"))))
    except MappingError as exc:
        return _invalid(exc)
    except mapping_store.MappingExists as exc:
        return jsonify(error="invalid_mapping", message=str(exc)), 409
    return jsonify(to_entry(created)), 201


def _mapping_or_404(mapping_id: int):
    m = mapping_store.get(ctx().db, mapping_id)
    if m is None:
        abort(404, description=f"no mapping {mapping_id}")
    return m


@bp.get("/mappings/<int:mapping_id>")
def get_mapping(mapping_id: int):
    return jsonify(to_entry(_mapping_or_404(mapping_id)))


@bp.patch("/mappings/<int:mapping_id>")
def patch_mapping(mapping_id: int):
    m = _mapping_or_404(mapping_id)
    body = _json_body()
    try:
        config = body.get("config")
        describe = ctx().describe(m.object_name) if isinstance(config, dict) and "fields" in config else None
        parents = parent_describes(config.get("fields"), describe) if describe else None
        # Validated exactly as POST validates (core.mapping.patched): nothing is saved unless all of it is valid.
        candidate = patched(m, body, describe, parents)
        mappings.check_row_filter(candidate, m)
        saved = mapping_store.update(ctx().db, candidate)
    except MappingError as exc:
        return _invalid(exc)
    mappings.ring_loads_if_filter_changed(m, saved)
    ctx().enqueue("apply_inbound")
    return jsonify(to_entry(saved))


@bp.delete("/mappings/<int:mapping_id>")
def delete_mapping(mapping_id: int):
    drop = request.args.get("drop_table", "false").lower() == "true"
    gone = mapping_store.delete(ctx().db, mapping_id, drop_table=drop)
    if gone is None:
        abort(404, description=f"no mapping {mapping_id}")
    return jsonify(deleted=to_entry(gone), table_dropped=drop)


@bp.get("/config/export")
def export_config():
    """The whole configuration as `heroku connect:export` writes it (what /config/import takes)."""
    return jsonify(export_document("heroku"))


@bp.post("/config/import")
def import_config():
    """A whole export document, all or nothing: 400 naming the mapping and field, and nothing created."""
    try:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            abort(400, description="the body must be a JSON object: a whole configuration export")
        done = import_document(body)
    except RecursionError:
        abort(400, description="the document is nested too deeply")
    except (MappingError, mapping_store.ImportFailed) as exc:
        return jsonify(error="invalid_configuration", message=f"nothing imported: {exc}"), 400
    return jsonify(done)


@bp.get("/stats/hourly")
def hourly_stats():
    try:
        hours = int(request.args.get("hours", 24))
        mapping_id = request.args.get("mapping_id", type=int)
    except ValueError:
        abort(400, description="hours must be a whole number")
    if not 1 <= hours <= 24 * 90:
        abort(400, description="hours must be between 1 and 2160")
    if mapping_id is not None and not 0 <= mapping_id <= 2_147_483_647:
        abort(400, description="mapping_id is not a mapping's id")
    rows = ctx().db.fetchall("hourly_stats", {"hours": hours, "mapping_id": mapping_id})
    return jsonify(hours=hours, buckets=[
        {"hour": r["hour"].isoformat(), "mapping_id": r["mapping_id"], "direction": r["direction"],
         "outcome": r["outcome"], "count": r["count"]} for r in rows])

