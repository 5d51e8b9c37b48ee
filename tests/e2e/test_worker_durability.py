"""Nothing acknowledged is lost when the worker dies: the real web app under gunicorn, real consumer
processes, each Huey storage. A consumer is SIGKILLed in the middle of applying, the Huey queue is lost
as well, and a new consumer still applies every notification, exactly once."""
from __future__ import annotations

import contextlib
import signal

import psycopg
import pytest

from tests.support.deployment import (Deployment, TableLock, account_records, assert_all_applied_once,
                                      create_mapping, send_messages)
from tests.support.processes import start_web, start_worker, wait_for
from tests.support.processes import no_leftover_processes  # noqa: F401  (autouse: stops leftover processes)

STORAGES = ["sqlite", "postgres", "redis"]


@pytest.fixture(params=STORAGES)
def deployment(request, clean_db, tmp_path):
    dep = Deployment.create(clean_db, request.param, tmp_path)
    yield dep
    dep.forget_queue()


@pytest.fixture
def web(deployment, tmp_path):
    server = start_web(deployment.env(WEB_CONCURRENCY="1"), tmp_path / "web.log")
    yield server
    server.stop()


@contextlib.contextmanager
def consumer_stuck_applying(deployment: Deployment, web, tmp_path, n: int, *worker_args):
    """n notifications ACKed, and a consumer stuck in the middle of applying them (the mapped table is
    locked). The lock goes when the block ends."""
    create_mapping(web.url)
    records = account_records(n)
    lock = TableLock(deployment.database_url)
    try:
        assert send_messages(web.url, records, per_message=20) == n  # every one ACKed
        worker = start_worker(deployment.env(), tmp_path / "worker-1.log", *worker_args)
        wait_for(lock.waiting_backends, what="the consumer to block on the mapped table", logs=(worker, web))
        yield worker, records
    finally:
        lock.release()


def unclaimed(deployment: Deployment, n: int) -> bool:
    """All n notifications are pending and no transaction holds them: a dead consumer's claim is gone."""
    with psycopg.connect(deployment.database_url) as conn:
        return conn.execute("SELECT count(*) FROM (SELECT 1 FROM forcebridge.inbox WHERE state = 'pending' "
                            "FOR UPDATE SKIP LOCKED) AS free").fetchone()[0] == n


def test_sigkilled_consumer_loses_nothing(deployment, web, tmp_path):
    with consumer_stuck_applying(deployment, web, tmp_path, 60, "-w", "2") as (worker, records):
        worker.kill()
    # The killed consumer's connection dies with it; its claimed rows go back to pending.
    wait_for(lambda: unclaimed(deployment, 60), what="the dead consumer's claim to end", logs=(worker,))
    deployment.forget_queue()

    second = start_worker(deployment.env(), tmp_path / "worker-2.log")
    try:
        wait_for(lambda: deployment.inbox_states() == {"applied": 60}, what="every notification to apply",
                 logs=(second,))
    finally:
        assert second.stop() == 0, second.text()
    assert_all_applied_once(deployment, records)


def test_sigterm_lets_the_running_apply_finish(deployment, web, tmp_path):
    with consumer_stuck_applying(deployment, web, tmp_path, 40, "-t", "60") as (worker, records):
        worker.signal(signal.SIGTERM)
        wait_for(lambda: "Shutting down gracefully" in worker.text(), what="the graceful shutdown to begin")
    assert worker.popen.wait(60) == 0, worker.text()
    assert "interrupted" not in worker.text()
    assert_all_applied_once(deployment, records)


def test_sigterm_past_the_shutdown_timeout_requeues_the_task(deployment, web, tmp_path):
    with consumer_stuck_applying(deployment, web, tmp_path, 20, "-t", "0.5") as (worker, records):
        worker.signal(signal.SIGTERM)
        assert worker.popen.wait(60) == 0, worker.text()
        huey = deployment.huey()
        # The interrupted doorbell went back into the queue before the process exited.
        assert huey.storage.queue_size() >= 1, worker.text()
        huey.storage.close()
    wait_for(lambda: unclaimed(deployment, 20), what="the stopped consumer's claim to end", logs=(worker,))
    second = start_worker(deployment.env(), tmp_path / "worker-2.log")
    try:
        wait_for(lambda: deployment.inbox_states() == {"applied": 20}, what="every notification to apply",
                 logs=(second,))
    finally:
        second.stop()
    assert_all_applied_once(deployment, records)
