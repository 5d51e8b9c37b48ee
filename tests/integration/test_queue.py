"""The job queue is built by create_queue(settings) when a process asks for it, never by an import: the web
app rings the queue its own settings name, and the tasks on it do the work when run (by hand here)."""
from __future__ import annotations

import os
import subprocess
import sys

import psycopg

from jobs.queue import create_queue
from tests.conftest import API_TOKEN, ORG_ID, OUTBOUND_TOKEN
from tests.support.deployment import account_records
from tests.support.messages import envelope
from tests.support.processes import ROOT


def run_queued(queue) -> list[str]:
    """Execute what the queue holds until it is empty, as one consumer thread would; the names run."""
    ran = []
    while (task := queue.huey.dequeue()) is not None:
        queue.huey.execute(task)
        ran.append(task.name)
    return ran


def map_accounts(client):
    r = client.post("/api/v1/mappings", headers={"Authorization": f"Bearer {API_TOKEN}"}, json={
        "object_name": "Account", "config": {"access": "read_only", "fields": {"Name": {"type": "string"}}}})
    assert r.status_code == 201, r.get_json()


def test_a_message_the_app_acknowledges_is_applied_by_the_queue_its_settings_name(settings):
    from webapp import create_app

    app = create_app(settings)          # no enqueue given: the app rings the deployment's queue
    try:
        client = app.test_client()
        map_accounts(client)
        body = envelope(ORG_ID, "Account", account_records(3))
        r = client.post(f"/outbound/{OUTBOUND_TOKEN}", data=body, content_type="text/xml; charset=utf-8")
        assert b"<Ack>true</Ack>" in r.data

        queue = create_queue(settings)   # what the worker consumes: the same storage, the same names
        assert "apply_inbound" in run_queued(queue)
        with psycopg.connect(settings.database_url) as conn:
            assert conn.execute("SELECT count(*) FROM salesforce.account").fetchone() == (3,)
        queue.huey.storage.close()
    finally:
        app.extensions["forcebridge"].db.close()


def test_the_sweep_rings_apply_for_notifications_a_lost_task_left(settings, app, client):
    map_accounts(client)
    body = envelope(ORG_ID, "Account", account_records(2))
    client.post(f"/outbound/{OUTBOUND_TOKEN}", data=body, content_type="text/xml; charset=utf-8")
    queue = create_queue(settings)      # `app` rang a recorder: the queue itself holds nothing yet
    queue.enqueue("sweep")
    assert run_queued(queue) == ["sweep", "apply_inbound"]
    with psycopg.connect(settings.database_url) as conn:
        assert conn.execute("SELECT count(*) FROM salesforce.account").fetchone() == (2,)
    queue.huey.storage.close()


def test_importing_the_jobs_and_the_web_app_builds_no_queue(tmp_path):
    """The queue's SQLite file is what a Huey instance creates first; an import must not create it."""
    huey_file = tmp_path / "huey.sqlite3"
    env = {**os.environ, "HUEY_URL": f"sqlite:///{huey_file}", "FORCEBRIDGE_INSTANCE": str(tmp_path)}
    subprocess.run([sys.executable, "-W", "error", "-c",
                    "import jobs, jobs.tasks, jobs.sync_tasks, jobs.heartbeat, jobs.consumer, jobs.worker, webapp"],
                   cwd=ROOT, env=env, check=True)
    assert not huey_file.exists()
