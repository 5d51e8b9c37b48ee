"""Fixtures every suite shares: a database of this run's own, settings, the app and its client."""
from __future__ import annotations

import contextlib
import pathlib

import psycopg
import pytest

from gateway.db import migrate
from settings import Settings
from tests.support.postgres import create_database

ORG_ID = "00D5w000004qGTOEA2"
OUTBOUND_TOKEN = "test-outbound-token"
API_TOKEN = "test-api-token"
SAMPLES = pathlib.Path(__file__).resolve().parents[2] / "shared" / "reference" / "salesforce" / "outbound"


@pytest.fixture(scope="session")
def pg_url():
    url, drop = create_database()
    migrate(url)
    yield url
    drop()


@pytest.fixture
def clean_db(pg_url):
    """Empty connector tables and mapped tables before the test."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS salesforce CASCADE")
        tables = [r[0] for r in conn.execute(
            "SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) FROM pg_tables "
            "WHERE schemaname = 'forcebridge' AND tablename <> 'schema_migrations'").fetchall()]
        if tables:
            conn.execute("TRUNCATE " + ", ".join(tables) + " RESTART IDENTITY CASCADE")
    return pg_url


@pytest.fixture
def settings(clean_db, tmp_path):
    return Settings.from_env(
        database_url=clean_db, secret_key="test-secret", huey_url=f"sqlite:///{tmp_path / 'huey.db'}",
        instance_path=tmp_path, salesforce_org_id=ORG_ID, outbound_token=OUTBOUND_TOKEN, api_token=API_TOKEN,
        web_alert_checks=False,   # tests run alert checks themselves (tests/integration/test_alerts.py)
    )


class EnqueueRecorder:
    """Stands in for Huey in web tests: records doorbells; tests run the job by hand."""

    def __init__(self):
        self.calls = []

    def __call__(self, name, *args):
        self.calls.append((name, args))


@pytest.fixture
def enqueued():
    return EnqueueRecorder()


@contextlib.contextmanager
def testing_app(settings, enqueued):
    """The app for `settings` in testing mode; its pool is closed afterwards."""
    from webapp import create_app

    application = create_app(settings, enqueue=enqueued)
    application.config["TESTING"] = True
    try:
        yield application
    finally:
        application.extensions["forcebridge"].db.close()


@pytest.fixture
def app(settings, enqueued):
    with testing_app(settings, enqueued) as application:
        yield application


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def api(client):
    """The test client with the API token set."""
    class Api:
        def __getattr__(self, method):
            def call(path, **kw):
                headers = {"Authorization": f"Bearer {API_TOKEN}", **kw.pop("headers", {})}
                return getattr(client, method)(path, headers=headers, **kw)
            return call
    return Api()


from tests.emulator_fixture import emulator  # noqa: E402,F401  (the shared emulator process; see its docstring)
