"""Outbound Message ingest, end to end: HTTP messages of 100 notifications from concurrent senders until
every row is committed in the mapped table; ACK latency at 20 messages/s; and the same load through a
naive handler (one connection and one INSERT .. ON CONFLICT per notification) for comparison.

Run: .venv/bin/python -m bench.outbound_ingest [--messages 300] [--senders 8]
Prints one JSON line last: notifications_per_s, ack_p50_ms, ack_p99_ms, naive_notifications_per_s.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import psycopg
import requests

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.messages import envelope  # noqa: E402
from tests.support.postgres import create_database  # noqa: E402

ORG_ID = "00D5w000004qGTOEA2"
TOKEN = "bench-token"
FIELDS = {"Name": {"type": "string", "length": 255}, "AccountNumber": {"type": "string", "length": 40},
          "AnnualRevenue": {"type": "currency"}, "NumberOfEmployees": {"type": "int"},
          "Industry": {"type": "picklist", "length": 40}, "Phone": {"type": "phone", "length": 40},
          "Website": {"type": "url", "length": 255}, "Rating": {"type": "picklist", "length": 40},
          "IsPartner__c": {"type": "boolean"}, "Founded__c": {"type": "date"}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def record(i: int, stamp_second: int) -> dict:
    return {"Id": f"001{i:015d}", "Name": f"Account {i}", "AccountNumber": f"AN-{i}",
            "AnnualRevenue": f"{i * 10}.0", "NumberOfEmployees": str(i % 5000), "Industry": "Energy",
            "Phone": "(555) 010-0000", "Website": "https://example.com", "Rating": "Hot",
            "IsPartner__c": "true" if i % 2 else "false", "Founded__c": "2001-02-03",
            "SystemModstamp": f"2024-01-01T00:{stamp_second // 60 % 60:02d}:{stamp_second % 60:02d}.000Z"}


def make_messages(count: int, offset: int = 0) -> list[bytes]:
    return [envelope(ORG_ID, "Account", [record(offset + m * 100 + i, m) for i in range(100)])
            for m in range(count)]


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=1).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def send_all(url: str, messages: list[bytes], senders: int) -> list[float]:
    """Post every message from `senders` threads as fast as they go; returns ACK latencies (s)."""
    latencies: list[float] = []
    lock = threading.Lock()
    queue = list(messages)

    def sender():
        session = requests.Session()
        while True:
            with lock:
                if not queue:
                    return
                body = queue.pop()
            t0 = time.perf_counter()
            r = session.post(url, data=body, headers={"Content-Type": "text/xml; charset=utf-8"})
            elapsed = time.perf_counter() - t0
            if r.status_code != 200:
                raise RuntimeError(f"{r.status_code}: {r.text[:200]}")
            with lock:
                latencies.append(elapsed)

    threads = [threading.Thread(target=sender) for _ in range(senders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies


def paced(url: str, messages: list[bytes], rate: float) -> list[float]:
    """One message every 1/rate seconds, each on its own thread so a slow ACK does not slow the pace."""
    latencies: list[float] = []
    lock = threading.Lock()

    def one(body):
        t0 = time.perf_counter()
        r = requests.post(url, data=body, headers={"Content-Type": "text/xml; charset=utf-8"})
        with lock:
            latencies.append(time.perf_counter() - t0)
        assert r.status_code == 200, r.text[:200]

    threads = []
    start = time.perf_counter()
    for i, body in enumerate(messages):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        t = threading.Thread(target=one, args=(body,))
        t.start()
        threads.append(t)
    for t in threads:
        t.join()
    return latencies


def count(url: str, sql: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchone()[0]


def wait_rows(db_url: str, expected: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while count(db_url, "SELECT count(*) FROM salesforce.account") < expected:
        if time.monotonic() > deadline:
            raise RuntimeError("rows did not all land in time")
        time.sleep(0.05)


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=300, help="messages of 100 for the throughput run")
    parser.add_argument("--senders", type=int, default=8)
    parser.add_argument("--web-workers", type=int, default=3)
    parser.add_argument("--naive-messages", type=int, default=20)
    args = parser.parse_args()

    db_url, drop = create_database("fb_bench")
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="fb-bench-"))
    env = {**os.environ, "DATABASE_URL": db_url, "SALESFORCE_ORG_ID": ORG_ID, "OUTBOUND_TOKEN": TOKEN,
           "API_TOKEN": "bench", "SECRET_KEY": "bench", "HUEY_URL": f"sqlite:///{tmp / 'huey.db'}",
           "FORCEBRIDGE_INSTANCE": str(tmp), "PYTHONPATH": str(ROOT)}
    procs = []
    try:
        from gateway.db import migrate

        migrate(db_url)
        port = free_port()
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-w", str(args.web_workers), "-b", f"127.0.0.1:{port}",
             "--log-level", "warning", "webapp:create_app()"], env=env, cwd=ROOT))
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/healthz")
        r = requests.post(base + "/api/v1/mappings", headers={"Authorization": "Bearer bench"},
                          json={"object_name": "Account", "config": {"access": "read_only", "fields": FIELDS}})
        r.raise_for_status()
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "jobs.worker", "-w", "2", "-d", "0.01", "-m", "0.05", "-b", "1.0"], env=env,
            cwd=ROOT, stdout=open(tmp / "consumer.log", "w"), stderr=subprocess.STDOUT))
        url = f"{base}/outbound/{TOKEN}"

        # Warm up every gunicorn worker's pool.
        send_all(url, make_messages(6, offset=10**9), 3)
        wait_rows(db_url, 600)

        messages = make_messages(args.messages)
        t0 = time.perf_counter()
        send_all(url, messages, args.senders)
        acked = time.perf_counter() - t0
        wait_rows(db_url, 600 + 100 * args.messages)
        e2e = time.perf_counter() - t0
        notifications_per_s = 100 * args.messages / e2e

        paced_latencies = paced(url, make_messages(100, offset=10**8), rate=20)
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)
        procs.clear()

        # The naive handler of the original sketch, same server, same message shape.
        naive_port = free_port()
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-w", str(args.web_workers), "-b", f"127.0.0.1:{naive_port}",
             "--log-level", "warning", "bench.naive_outbound:app"], env=env, cwd=ROOT))
        wait_http(f"http://127.0.0.1:{naive_port}/healthz")
        naive_messages = make_messages(args.naive_messages, offset=10**7)
        t0 = time.perf_counter()
        send_all(f"http://127.0.0.1:{naive_port}/outbound", naive_messages, args.senders)
        naive_per_s = 100 * args.naive_messages / (time.perf_counter() - t0)
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        drop()
        print(f"logs in {tmp}", file=sys.stderr)

    result = {
        "notifications_per_s": round(notifications_per_s),
        "ack_p50_ms": round(statistics.median(paced_latencies) * 1000, 1),
        "ack_p99_ms": round(pct(paced_latencies, 99) * 1000, 1),
        "naive_notifications_per_s": round(naive_per_s),
        "ratio_vs_naive": round(notifications_per_s / naive_per_s, 1),
        "ack_all_s": round(acked, 2), "e2e_s": round(e2e, 2), "messages": args.messages, "senders": args.senders, "web_workers": args.web_workers,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
