"""The /_emulator/ admin API (outside Salesforce's paths): faults, stats, seed, reset, clock, users, change log."""
from flask import Blueprint, current_app, jsonify, request

from emulator.auth import org
from emulator.errors import SalesforceError
from emulator.soql import format_datetime

bp = Blueprint("admin", __name__, url_prefix="/_emulator")


def _body() -> dict:
    return request.get_json(silent=True) or {}


@bp.errorhandler(SalesforceError)
def _on_error(error: SalesforceError):
    return jsonify(error.envelope()), error.status_code


@bp.errorhandler(ValueError)
def _on_value_error(error: ValueError):
    return jsonify({"error": str(error)}), 400


@bp.get("/info")
def info():
    the_org = org()
    return jsonify({"orgId": the_org.org_id, "defaultUserId": the_org.default_user_id,
                    "now": format_datetime(the_org.clock.now()), "timeScale": the_org.clock.scale,
                    "sessionSeconds": the_org.session_seconds, "sobjects": the_org.sobject_names(),
                    "dataDir": str(the_org.data_dir)})


@bp.get("/stats")
def stats():
    """API calls per route and per client name, API usage, injected faults."""
    body = org().stats()
    body["faults"] = current_app.config["FAULTS"].snapshot()
    return jsonify(body)


@bp.delete("/stats")
def reset_stats():
    org().usage.reset_stats()
    return jsonify({"ok": True})


@bp.get("/faults")
def get_faults():
    return jsonify(current_app.config["FAULTS"].snapshot())


@bp.put("/faults")
@bp.post("/faults")
def set_faults():
    """{"seed": 1, "rules": {"rest.query": {"latency_ms": 50, "errors": {"503": 0.1}}, "*": {...}}}"""
    body = _body()
    current_app.config["FAULTS"].configure(body.get("rules", {}), body.get("seed"))
    return jsonify(current_app.config["FAULTS"].snapshot())


@bp.delete("/faults")
def clear_faults():
    current_app.config["FAULTS"].configure({})
    return jsonify(current_app.config["FAULTS"].snapshot())


@bp.get("/rules")
def get_rules():
    return jsonify(org().rules.snapshot())


@bp.put("/rules")
@bp.post("/rules")
def set_rules():
    """Validation rules, duplicate rules and trigger-like failures per object (see emulator/org_rules.py):
    {"Account": {"validationRules": [{"name", "condition", "message", "field"}], "duplicateRules":
    [{"name", "fields": [...]}], "triggers": [{"name", "condition", "message"}], "lockRate": 0.1}}"""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ValueError("rules: a JSON object keyed by sObject name")
    return jsonify(org().configure_rules(body))


@bp.delete("/rules")
def clear_rules():
    return jsonify(org().configure_rules({}))


@bp.post("/sessions/expire")
def expire_sessions():
    return jsonify({"expired": org().expire_sessions()})


@bp.post("/limits")
def set_limits():
    """{"dailyLimit": 1000, "used": 990, "deliveredEventsLimit": 10000, "deliveredEvents": 0}: API usage and
    the delivery allocation of change events (DailyDeliveredPlatformEvents)"""
    body = _body()
    org().usage.set_limit(body.get("dailyLimit"), body.get("used"), body.get("deliveredEventsLimit"),
                          body.get("deliveredEvents"))
    return jsonify(org().stats())


@bp.post("/clock")
def advance_clock():
    """{"advance": seconds} moves emulated time forward."""
    now = org().clock.advance(float(_body().get("advance", 0)))
    return jsonify({"now": format_datetime(now)})


@bp.get("/clock")
def get_clock():
    clock = org().clock
    return jsonify({"now": format_datetime(clock.now()), "timeScale": clock.scale})


@bp.post("/seed")
def seed():
    """{"sobject": "Account", "count": 1000000, "fields": {"Name": "Account {n}"}}: fast bulk insert, no events.
    "stampedSecondsAgo": 30 commits them late (SystemModstamp 30 s before now), as a slow transaction does."""
    body = _body()
    result = org().seed(body["sobject"], int(body["count"]), body.get("fields", {}),
                        stamped_seconds_ago=float(body.get("stampedSecondsAgo", 0)))
    return jsonify(result), 201


@bp.post("/reset")
def reset():
    org().reset()
    current_app.config["LOCATORS"].close_all()
    for hook in current_app.config.get("RESET_HOOKS", ()):
        hook()
    return jsonify({"ok": True})


@bp.post("/users")
def add_user():
    """{"username", "password", "security_token", "first_name", "last_name"} -> {"id"}"""
    body = _body()
    user_id = org().add_user(body["username"], body.get("password", "password"), body.get("security_token", ""),
                             first_name=body.get("first_name", ""), last_name=body.get("last_name", "User"))
    return jsonify({"id": user_id}), 201


@bp.post("/oauth-clients")
def add_oauth_client():
    """{"consumer_key", "consumer_secret", "run_as_user_id"}"""
    body = _body()
    the_org = org()
    the_org.add_oauth_client(body["consumer_key"], body["consumer_secret"],
                             body.get("run_as_user_id") or the_org.default_user_id)
    return jsonify({"ok": True}), 201


@bp.get("/changes")
def changes():
    """The change log: ?since=<seq>&limit=<n>; each change carries the client name and user."""
    since = int(request.args.get("since", 0))
    limit = min(int(request.args.get("limit", 1000)), 10000)
    return jsonify({"changes": org().changes(since, limit)})


@bp.post("/undelete")
def undelete():
    """{"sobject": "Account", "id": "001..."}: restore from the recycle bin."""
    body = _body()
    the_org = org()
    record = the_org.undelete(body["sobject"], body["id"], client=None, user_id=the_org.default_user_id)
    return jsonify(record)
