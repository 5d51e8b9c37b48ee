"""Render's free plan: the web service runs the worker itself (FORCEBRIDGE_EMBEDDED_WORKER=1), once per
instance whatever the number of gunicorn workers, restarts it if it dies and stops it cleanly."""
from __future__ import annotations

import itertools
import os
import pathlib
import signal
import threading

import pytest
import requests

from tests.conftest import ORG_ID, OUTBOUND_TOKEN
from tests.support.deployment import (Deployment, TableLock, account_records, assert_all_applied_once,
                                      create_mapping, send_messages)
from tests.support.messages import envelope, notification_id
from tests.support.processes import start_web, wait_for
from tests.support.processes import no_leftover_processes  # noqa: F401  (autouse: stops leftover processes)


def workers_of(master_pid: int) -> list[int]:
    """Processes running jobs.worker whose parent is the gunicorn master."""
    found = []
    for proc in pathlib.Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if b"jobs.worker" in cmdline and ppid == master_pid:
            found.append(int(proc.name))
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return pathlib.Path(f"/proc/{pid}").exists() and "zombie" not in \
        pathlib.Path(f"/proc/{pid}/status").read_text().lower()


@pytest.fixture
def deployment(clean_db, tmp_path):
    dep = Deployment.create(clean_db, "postgres", tmp_path)
    yield dep
    dep.forget_queue()


@pytest.fixture
def web(deployment, tmp_path):
    server = start_web(deployment.env(FORCEBRIDGE_EMBEDDED_WORKER="1", WEB_CONCURRENCY="2",
                                      WORKER_SHUTDOWN_SECONDS="30"), tmp_path / "web.log")
    yield server
    server.stop(timeout=60)


def test_one_worker_per_instance_applies_messages_and_comes_back_after_a_crash(deployment, web):
    (worker,) = wait_for(lambda: workers_of(web.popen.pid), what="the embedded worker")
    create_mapping(web.url)
    send_messages(web.url, account_records(30), per_message=10)
    wait_for(lambda: deployment.inbox_states() == {"applied": 30}, what="the embedded worker to apply")

    os.kill(worker, signal.SIGKILL)
    replacement = wait_for(lambda: [p for p in workers_of(web.popen.pid) if p != worker],
                           what="a replacement worker")
    assert len(replacement) == 1 and len(workers_of(web.popen.pid)) == 1
    send_messages(web.url, account_records(30, offset=30), per_message=10)
    wait_for(lambda: deployment.inbox_states() == {"applied": 60}, what="the replacement to apply")
    assert_all_applied_once(deployment, account_records(60))


def test_sigterm_to_the_web_service_lets_the_running_apply_finish(deployment, web):
    (worker,) = wait_for(lambda: workers_of(web.popen.pid), what="the embedded worker")
    create_mapping(web.url)
    records = account_records(20)
    lock = TableLock(deployment.database_url)
    try:
        send_messages(web.url, records, per_message=20)
        wait_for(lock.waiting_backends, what="the embedded worker to block on the mapped table")
        web.signal(signal.SIGTERM)  # what Render sends on a deploy or when the instance sleeps
        wait_for(lambda: "Shutting down gracefully" in web.text(), what="the worker's graceful shutdown")
    finally:
        lock.release()
    assert web.popen.wait(60) == 0, web.text()
    assert not alive(worker)
    assert "interrupted" not in web.text()
    assert_all_applied_once(deployment, records)


def test_a_deploy_loses_no_acknowledged_notification(deployment, web, tmp_path):
    """Salesforce keeps sending while Render replaces the instance: SIGTERM to the old one (it stops
    accepting, finishes what it accepted), then a new one starts. Every ACKed notification is applied;
    the ones not ACKed are Salesforce's to deliver again."""
    create_mapping(web.url)
    acked, stop = [], threading.Event()

    def salesforce(sender: int) -> None:
        for batch in itertools.count():
            if stop.is_set():
                return
            records = account_records(10, offset=sender * 1_000_000 + batch * 10)
            ids = [notification_id() for _ in records]
            try:
                r = requests.post(f"{web.url}/outbound/{OUTBOUND_TOKEN}", data=envelope(ORG_ID, "Account", records, ids),
                                  headers={"Content-Type": "text/xml; charset=utf-8"}, timeout=30)
            except requests.RequestException:
                continue  # refused or cut off: not acknowledged, Salesforce retries
            if r.status_code == 200 and b"<Ack>true</Ack>" in r.content:
                acked.extend(ids)

    senders = [threading.Thread(target=salesforce, args=(i,)) for i in range(3)]
    for t in senders:
        t.start()
    try:
        wait_for(lambda: len(acked) >= 100, what="some messages to be acknowledged", logs=(web,))
        web.signal(signal.SIGTERM)
        assert web.popen.wait(60) == 0, web.text()
    finally:
        stop.set()
        for t in senders:
            t.join(60)

    replacement = start_web(deployment.env(FORCEBRIDGE_EMBEDDED_WORKER="1"), tmp_path / "web-2.log")
    try:
        def unapplied():
            rows = deployment.query("SELECT notification_id FROM forcebridge.inbox WHERE state = 'applied'")
            return set(acked) - {r[0] for r in rows}
        wait_for(lambda: not unapplied(), what="every acknowledged notification to apply", logs=(replacement,))
    finally:
        assert replacement.stop(timeout=60) == 0


def test_the_worker_of_a_sigkilled_web_service_stops_itself(deployment, web):
    """A master killed outright cannot forward SIGTERM; its worker notices it is orphaned and stops."""
    (worker,) = wait_for(lambda: workers_of(web.popen.pid), what="the embedded worker")
    web.popen.kill()
    web.popen.wait(30)
    wait_for(lambda: not alive(worker), what="the orphaned worker to stop", logs=(web,))
    assert "web service (pid %s) is gone" % web.popen.pid in web.text()
