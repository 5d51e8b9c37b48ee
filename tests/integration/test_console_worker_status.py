"""The overview and /metrics know whether a worker process is running (its heartbeat thread)."""
from __future__ import annotations

import threading
import time

from jobs import heartbeat
from tests.conftest import API_TOKEN


def workers_alive(client) -> float:
    text = client.get("/metrics", headers={"Authorization": f"Bearer {API_TOKEN}"}).text
    return float(next(line.split()[-1] for line in text.splitlines() if line.startswith("forcebridge_workers_alive ")))


def overview_worker(app) -> tuple[str, str]:
    from webapp import dashboard

    with app.test_request_context():
        return dashboard.status()["worker"]


def test_a_running_worker_is_seen_and_a_stopped_one_is_missed(app, client):
    assert workers_alive(client) == 0
    assert overview_worker(app)[0] == "down"

    stop = threading.Event()
    thread = threading.Thread(target=heartbeat.beat, args=(stop,))
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while workers_alive(client) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert workers_alive(client) == 1
        state, text = overview_worker(app)
        assert state == "alive" and "1 process" in text
    finally:
        stop.set()
        thread.join(10)
    assert workers_alive(client) == 0              # a clean exit says goodbye
    assert "last seen" in overview_worker(app)[1]  # ... but stays on record, for "last seen"
