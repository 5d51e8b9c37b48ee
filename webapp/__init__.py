"""The ForceBridge web app: Outbound Messages in, the JSON API, health, the console; built by create_app()."""
from __future__ import annotations

import logging

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from gateway import salesforce
from gateway.db import Database, migrate
from jobs import runtime
from jobs.queue import create_queue
from settings import Settings
from webapp import access_log, connection, slow_clients
from webapp.context import Context


def create_app(settings: Settings | None = None, *, enqueue=None, migrate_on_start: bool = True) -> Flask:
    settings = settings or Settings.from_env()
    if not settings.database_url:
        raise RuntimeError("DATABASE_URL is not set")
    app = Flask(__name__, instance_path=str(settings.instance_path), template_folder="../templates")
    app.config.update(SECRET_KEY=settings.secret_key or None, MAX_CONTENT_LENGTH=settings.max_message_bytes)
    if settings.proxy_fix_hops:
        # the client's own address (and scheme) from the proxy's headers, trusting only that many hops
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.proxy_fix_hops, x_proto=settings.proxy_fix_hops)
    # under gunicorn a body that arrives too slowly ends in 408 instead of holding a thread (slow_clients.py)
    app.wsgi_app = slow_clients.BodyDeadline(app.wsgi_app, settings.web_body_seconds, settings.web_body_min_rate)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    for logger in (None, app.logger):   # no log line ever carries the Outbound Message token
        access_log.install_redaction(settings.outbound_token, logger)

    if migrate_on_start:
        migrate(settings.database_url)
    db = Database(settings.database_url, max_size=8, name="forcebridge-web")
    runtime.configure(settings, db)
    if enqueue is None:
        enqueue = create_queue(settings).enqueue   # the worker's queue, as this app's settings name it
    app.extensions["forcebridge"] = Context(settings=settings, db=db, enqueue=enqueue,
                                            describe=salesforce.describer(settings),
                                            salesforce_status=connection.status_reader(settings),
                                            count_records=connection.record_counter(settings),
                                            check_row_filter=connection.row_filter_checker(settings))

    from webapp import api, cli, health, outbound
    from webapp import assets, auth, dashboard, errors, mappings, metrics, security, setup, trends
    from webapp import alerting, budget

    for blueprint in (outbound.bp, api.bp, health.bp):     # api.bp: the whole /api/v1 tree
        app.register_blueprint(blueprint)
    for blueprint in (auth.bp, assets.bp, dashboard.bp, mappings.bp, trends.bp, errors.bp, setup.bp, metrics.bp):
        app.register_blueprint(blueprint)
    for blueprint in (budget.bp, alerting.bp):
        app.register_blueprint(blueprint)
    security.init_app(app)
    auth.init_app(app, settings.admin_password, settings.secret_key)
    cli.init_app(app)
    return app
