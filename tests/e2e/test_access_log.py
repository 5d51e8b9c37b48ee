"""gunicorn's access log under the project's gunicorn.conf.py: requests are logged, the outbound token is not."""
from __future__ import annotations

import pytest
import requests

from tests.conftest import ORG_ID, OUTBOUND_TOKEN
from tests.support.deployment import Deployment
from tests.support.messages import envelope
from tests.support.processes import start_web, wait_for
from tests.support.processes import no_leftover_processes  # noqa: F401  (autouse: stops leftover processes)


@pytest.fixture
def deployment(clean_db, tmp_path):
    dep = Deployment.create(clean_db, "sqlite", tmp_path)
    yield dep
    dep.forget_queue()


def test_an_outbound_message_is_logged_without_its_token(deployment, tmp_path):
    web = start_web(deployment.env(WEB_CONCURRENCY="1"), tmp_path / "web.log")
    try:
        body = envelope(ORG_ID, "Account", [{"Id": "001000000000001AAA"}])
        url = f"{web.url}/outbound/{OUTBOUND_TOKEN}"
        r = requests.post(url, data=body, headers={"Content-Type": "text/xml", "Referer": url}, timeout=10)
        assert r.status_code == 200
        wait_for(lambda: "POST /outbound/" in web.text(), what="the access log line", logs=(web,))
    finally:
        web.stop()
    log = web.text()
    assert "POST /outbound/[redacted]" in log
    assert OUTBOUND_TOKEN not in log
