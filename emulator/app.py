"""The emulator's Flask app: one blueprint per API family, Salesforce-shaped 404/405/500 bodies."""
import importlib
import logging

from flask import Flask, request

from emulator import admin, auth, composite, org_rules, rest
from emulator.faults import Faults
from emulator.store import Org

log = logging.getLogger(__name__)

# E2's blueprints register when their modules exist, so the core runs on its own too.
OPTIONAL_BLUEPRINTS = (("emulator.bulk2", "bp"), ("emulator.outbound", "admin_bp"), ("emulator.pubsub", "admin_bp"))


def create_app(org: Org, *, faults_seed: int = 0, pubsub: dict | None = None) -> Flask:
    """`pubsub`: options of emulator.pubsub.PubSubServer (host, port, certfile, on_ready, ...) to run the
    Pub/Sub API beside the app; None runs none."""
    app = Flask(__name__)
    app.config["ORG"] = org
    if pubsub is not None:
        app.config["PUBSUB_OPTIONS"] = dict(pubsub)
    app.config["FAULTS"] = Faults(faults_seed)
    app.config["LOCATORS"] = rest.Locators()
    app.json.sort_keys = False
    app.json.compact = True
    for blueprint in (auth.bp, rest.bp, composite.bp, admin.bp):
        app.register_blueprint(blueprint)
    for module_name, attribute in OPTIONAL_BLUEPRINTS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        app.register_blueprint(getattr(module, attribute))
        init = getattr(module, "init_app", None)
        if init is not None:
            init(app)
    app.before_request(rest.note_arrival)
    app.after_request(auth.add_limit_info)
    app.after_request(rest.add_date)

    @app.before_request
    def duplicate_rule_header():
        org_rules.ALLOW_SAVE.set(org_rules.allow_save_from(request.headers.get("Sforce-Duplicate-Rule-Header")))

    @app.before_request
    def admin_not_from_web_pages():
        # The admin API has no browser client. A page the developer visits could POST a reset or a seed to
        # it cross-site without a preflight; browsers always say where such a request comes from (Origin).
        if (request.path.startswith("/_emulator/") and request.method not in ("GET", "HEAD", "OPTIONS")
                and request.headers.get("Origin")):
            return rest.json_response([{"errorCode": "FORBIDDEN", "message": "admin API: not from a web page"}],
                                      403)

    @app.errorhandler(404)
    def not_found(_error):
        return rest.json_response([{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}],
                                  404)

    @app.errorhandler(405)
    def method_not_allowed(error):
        allowed = ",".join(sorted(m for m in (error.valid_methods or []) if m not in ("HEAD", "OPTIONS")))
        return rest.json_response([{"errorCode": "METHOD_NOT_ALLOWED", "message": f"HTTP Method "
                                    f"'{request.method}' not allowed. Allowed are {allowed}"}], 405)

    @app.errorhandler(500)
    def server_error(error):
        original = getattr(error, "original_exception", error)
        log.error("unhandled error on %s %s", request.method, request.path, exc_info=original)
        return rest.json_response([{"errorCode": "UNKNOWN_EXCEPTION", "message": "An unexpected error occurred. "
                                    f"Please include this ErrorId if you contact support: {id(original)}"}], 500)

    return app
