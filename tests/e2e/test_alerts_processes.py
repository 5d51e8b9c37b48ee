"""Alerts with real processes (issue 16): gunicorn as the Procfile starts it notices that no worker runs and
tells a local webhook receiver; once `python -m jobs.worker` runs, its own minute check sends the recovery."""
from __future__ import annotations

import pytest
import requests

from gateway.db import Database
from jobs import alerts
from tests.support.deployment import Deployment
from tests.support.processes import start_web, start_worker, wait_for
from tests.support.processes import no_leftover_processes  # noqa: F401  (autouse: stops leftover processes)
from tests.support.receivers import HttpReceiver


@pytest.fixture
def deployment(clean_db, tmp_path):
    dep = Deployment.create(clean_db, "postgres", tmp_path)
    yield dep
    dep.forget_queue()


def test_no_worker_is_raised_by_the_web_process_and_cleared_by_the_worker(deployment, tmp_path):
    with HttpReceiver() as receiver:
        db = Database(deployment.database_url)
        try:
            alerts.add_channel(db, {"kind": "webhook", "target": f"{receiver.url}/hook"})
        finally:
            db.close()
        env = deployment.env(WEB_CONCURRENCY="1", PUBLIC_URL="https://fb.example.com")
        web = start_web(env, tmp_path / "web.log")
        try:
            requests.get(f"{web.url}/healthz", timeout=5)
            # a web process looks a minute after it started (its worker may be starting beside it)
            wait_for(lambda: requests.get(f"{web.url}/healthz", timeout=5) and receiver.posted("/hook"), timeout=150, interval=1,
                     what="the web process's alert", logs=[web])
            first = receiver.posted("/hook")[0]
            assert (first["condition"], first["status"], first["link"]) == ("no_worker", "open", "https://fb.example.com/")
            worker = start_worker(env, tmp_path / "worker.log")
            try:
                # the worker checks each minute (Huey's periodic tasks run on the minute)
                wait_for(lambda: any(b["status"] == "recovered" for b in receiver.posted("/hook")), timeout=150,
                         what="the recovery", logs=[worker, web])
            finally:
                worker.stop()
        finally:
            web.stop()
    statuses = [(b["condition"], b["status"]) for b in receiver.posted("/hook")]
    assert statuses == [("no_worker", "open"), ("no_worker", "recovered")]
