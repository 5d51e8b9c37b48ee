"""Signing in to the console with Flask's test client (the browser tests use tests/support/browser.py)."""
from __future__ import annotations

import re
from dataclasses import replace

import pytest

from tests.conftest import testing_app

PASSWORD = "s3cret-for-tests"
BASE = "https://localhost"   # the session cookie is Secure, as in production
_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def login_token(client) -> str:
    return _TOKEN.search(client.get("/login", base_url=BASE).text).group(1)


def sign_in(client, password: str = PASSWORD):
    return client.post("/login", base_url=BASE, data={"csrf_token": login_token(client), "password": password})


def csrf_of(client) -> str:
    return _TOKEN.search(client.get("/mappings", base_url=BASE).text).group(1)


@pytest.fixture
def console_app(settings, enqueued):
    """The app with ADMIN_PASSWORD set; import this fixture (and browser_client) into a test module."""
    with testing_app(replace(settings, admin_password=PASSWORD), enqueued) as application:
        yield application


@pytest.fixture
def browser_client(console_app):
    return console_app.test_client()
