"""The console sees a worker started the way the Procfile starts it (`python -m jobs.worker`), and the
one gunicorn's master runs on Render's free plan: alive on the Overview and in /metrics while it runs,
gone once SIGTERM has stopped it."""
from __future__ import annotations

import re
import signal

import pytest
import requests

from tests.conftest import API_TOKEN
from tests.support.deployment import Deployment
from tests.support.processes import start_web, start_worker, wait_for
from tests.support.processes import no_leftover_processes  # noqa: F401  (autouse: stops leftover processes)

PASSWORD = "liveness-test-password"
_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')
_WORKER = re.compile(r"<th>Worker</th><td><span[^>]*>(\w+)</span> <small>([^<]*)</small>")


@pytest.fixture
def deployment(clean_db, tmp_path):
    dep = Deployment.create(clean_db, "postgres", tmp_path)
    yield dep
    dep.forget_queue()


@pytest.fixture
def web(deployment, tmp_path):
    """The Procfile's `web:` process, without a worker of its own: it only watches."""
    server = start_web(deployment.env(WEB_CONCURRENCY="1", ADMIN_PASSWORD=PASSWORD), tmp_path / "web.log")
    yield server
    server.stop()


class Console:
    """The console as a signed-in user sees it. Its cookies are Secure, which a browser honours on
    127.0.0.1 over plain HTTP; requests does not, so they are carried by hand."""

    def __init__(self, url: str):
        self.url, self.cookies = url, {}
        token = _TOKEN.search(self.get("/login").text).group(1)
        r = self.request("post", "/login", data={"csrf_token": token, "password": PASSWORD}, allow_redirects=False)
        assert r.status_code == 302 and "fb_session" in self.cookies, r.text

    def request(self, method: str, path: str, **kw) -> requests.Response:
        cookie = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        r = requests.request(method, f"{self.url}{path}", headers={"Cookie": cookie}, timeout=30, **kw)
        self.cookies.update(r.cookies.get_dict())
        return r

    def get(self, path: str) -> requests.Response:
        return self.request("get", path)

    def overview_worker(self) -> tuple[str, str]:
        r = self.get("/")
        assert r.status_code == 200, r.text
        state, text = _WORKER.search(r.text).groups()
        return state, text

    def workers_alive(self) -> float:
        text = requests.get(f"{self.url}/metrics", headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=30).text
        return float(next(line.split()[-1] for line in text.splitlines()
                          if line.startswith("forcebridge_workers_alive ")))


def assert_seen_then_gone(console: Console, start_worker_process):
    assert console.overview_worker() == (
        "down", "no worker process is running (never seen); start `python -m jobs.worker`")
    assert console.workers_alive() == 0
    worker = start_worker_process()
    wait_for(lambda: console.workers_alive() == 1, timeout=60, interval=0.5, what="/metrics to count the worker",
             logs=(worker,))
    state, text = console.overview_worker()
    assert (state, text) == ("alive", "1 process, nothing waiting")

    worker.signal(signal.SIGTERM)
    assert worker.popen.wait(60) == 0, worker.text()
    # A graceful stop removes the heartbeat at once; the Overview keeps when it was last seen.
    assert console.workers_alive() == 0
    state, text = console.overview_worker()
    assert state == "down" and "last seen" in text, text
    return worker


def test_the_procfile_worker_is_seen_alive_then_gone(deployment, web, tmp_path):
    # exactly the Procfile's `worker:` line, with the environment the README gives
    worker = assert_seen_then_gone(Console(web.url), lambda: start_worker(deployment.env(), tmp_path / "worker.log"))
    assert "found in sys.modules" not in worker.text()   # -m runs the one copy of the module


def test_the_embedded_worker_of_gunicorn_is_seen_alive_then_gone(deployment, web, tmp_path):
    """Render's free plan: the web service's master runs the worker; Render's SIGTERM stops both."""
    def start_instance():
        return start_web(deployment.env(FORCEBRIDGE_EMBEDDED_WORKER="1", WEB_CONCURRENCY="1"),
                         tmp_path / "web-embedded.log")
    assert_seen_then_gone(Console(web.url), start_instance)
