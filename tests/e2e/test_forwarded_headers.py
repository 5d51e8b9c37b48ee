"""gunicorn under gunicorn.conf.py trusts no forwarded header from any address; the app alone reads
X-Forwarded-For/-Proto, from exactly PROXY_FIX_HOPS proxies (Render: 1; nothing in front: 0, trust none)."""
from __future__ import annotations

import pytest
import requests

from tests.support.deployment import Deployment
from tests.support.processes import start_web
from tests.support.processes import no_leftover_processes  # noqa: F401  (autouse: stops leftover processes)

FORGED = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.5", "SCRIPT_NAME": "/evil"}


@pytest.fixture
def deployment(clean_db, tmp_path):
    dep = Deployment.create(clean_db, "sqlite", tmp_path)
    yield dep
    dep.forget_queue()


@pytest.mark.parametrize("hops,https", [("0", False), ("1", True)], ids=["no proxy", "one proxy"])
def test_forwarded_headers_count_only_through_proxy_fix_hops(deployment, tmp_path, hops, https):
    web = start_web(deployment.env(WEB_CONCURRENCY="1", PROXY_FIX_HOPS=hops, ADMIN_PASSWORD="pw"),
                    tmp_path / "web.log")
    try:
        page = requests.get(f"{web.url}/login", headers=FORGED, timeout=10)
    finally:
        web.stop()
    assert page.status_code == 200
    # https only when a trusted proxy says so (HSTS is sent on https requests alone)
    assert ("Strict-Transport-Security" in page.headers) is https
    # a client never moves the app's root: the form still posts to /login
    assert 'action="/login"' in page.text and "/evil" not in page.text
