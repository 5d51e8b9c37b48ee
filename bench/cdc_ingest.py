"""Change Data Capture ingest, end to end (issue 13): the emulator's Pub/Sub API (gRPC, TLS) -> the CDC source
(jobs/cdc_source.py: decode, apply, replay id in one transaction) -> rows in Postgres.

(a) throughput: --changes records created in Salesforce (sObject Collections, 200 a call) while nobody listens,
    then the subscriber starts from EARLIEST: events decoded, committed and applied per second;
(b) latency: updates at --rate changes/s for --seconds; from the update's answer (Salesforce committed it) to the
    value visible in Postgres (a watcher reads the table every 5 ms): p50, p99;
(c) idle: the subscriber runs --idle-seconds with no change; REST calls it makes (Pub/Sub keepalives are not
    REST), plus the backstop poll a CDC mapping makes once an hour (1 call when idle).

Run: .venv/bin/python -m bench.cdc_ingest [--changes 100000] [--rate 50] [--seconds 20] [--idle-seconds 30]
Prints one JSON line last: events_per_s, latency_p50_ms, latency_p99_ms, om_latency_p50_ms (the same rate of
updates of an Account mapping on Outbound Messages in the same run: the emulator's sender, the web app served in
this process, the inbox applied as the worker does), idle_rest_calls, lost, duplicated.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
from psycopg import sql

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from emulator.process import start_emulator  # noqa: E402
from gateway.db import migrate  # noqa: E402
from settings import Settings  # noqa: E402
from tests.support.postgres import create_database  # noqa: E402

FIELDS = {"FirstName": {}, "LastName": {}, "Email": {}, "Phone": {}, "MailingCity": {}, "LastModifiedDate": {}}
API_TOKEN = "bench-cdc-token-0123456789abcdef0123"
OUTBOUND_TOKEN = "bench-cdc-outbound-token"
ACCOUNT_FIELDS = {"Name": {}, "Phone": {}}


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def scalar(url: str, query: str, params=None):
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchone()[0]


def events_applied(url: str) -> int:
    return int(scalar(url, "SELECT coalesce(sum(events), 0) FROM forcebridge.cdc_subscriptions") or 0)


def wait_until(check, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return False


class Subscriber:
    def __init__(self, settings, db, preset: str):
        from jobs import cdc_source

        self.stop = threading.Event()
        self.thread = threading.Thread(target=cdc_source.run, args=(settings, self.stop), daemon=True, kwargs={
            "db": db, "check_seconds": 0.5, "standby_seconds": 0.5, "preset": preset,
            "prefetch": os.environ.get("CDC_PREFETCH", "1") == "1"})

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(20)


def create_contacts(sf, count: int, prefix: str, threads: int = 4) -> list[str]:
    def chunk(start: int) -> list[str]:
        records = [{"attributes": {"type": "Contact"}, "LastName": f"{prefix} {i}", "Email": f"b{i}@example.com",
                    "MailingCity": "Oslo"} for i in range(start, min(count, start + 200))]
        return [r["id"] for r in sf.restful("composite/sobjects", method="POST",
                                            json={"allOrNone": True, "records": records})]
    with ThreadPoolExecutor(threads) as pool:
        return [rid for ids in pool.map(chunk, range(0, count, 200)) for rid in ids]


def measure(url: str, table: str, send, total: int, rate: float) -> list[float]:
    """Latencies (ms) from each send's answer to its phone value visible in `table`."""
    seen: dict[str, float] = {}
    stop = threading.Event()

    def watch():
        with psycopg.connect(url, autocommit=True) as conn:
            while not stop.is_set():
                now = time.monotonic()
                query = sql.SQL("SELECT phone FROM {} WHERE phone LIKE 'O-%%'").format(sql.Identifier("salesforce", table))
                for phone, in conn.execute(query):
                    seen.setdefault(phone, now)
                time.sleep(0.005)
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    sent: dict[str, float] = {}
    begin = time.monotonic()
    for n in range(total):
        time.sleep(max(0.0, begin + n / rate - time.monotonic()))
        phone = f"O-{n}"
        send(n, phone)
        sent[phone] = time.monotonic()
    wait_until(lambda: all(p in seen for p in sent), timeout=60)
    stop.set()
    watcher.join(5)
    return [(seen[p] - t) * 1000 for p, t in sent.items() if p in seen]


def om_latency(app, db, emu, user, url: str, args, doorbell: threading.Event) -> float | None:
    """The same rate of updates through Outbound Messages (an Account mapping, the emulator's sender posting
    to the web app served here, the inbox applied as the worker would): p50 in ms."""
    from werkzeug.serving import make_server

    from jobs import inbound

    response = app.test_client().post("/api/v1/mappings", headers={"Authorization": f"Bearer {API_TOKEN}"},
                                      json={"object_name": "Account", "config": {"access": "read_only",
                                                                                 "fields": ACCOUNT_FIELDS}})
    assert response.status_code == 201, response.get_json()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    stop = threading.Event()

    def apply_inbox():
        while not stop.is_set():
            if doorbell.wait(0.5):
                doorbell.clear()
                inbound.apply_pending(db)
    applier = threading.Thread(target=apply_inbox, daemon=True)
    applier.start()
    try:
        emu.admin("POST", "/_emulator/outbound/rules", {
            "object": "Account", "fields": ["Name", "Phone", "SystemModstamp"],
            "endpoint_url": f"http://127.0.0.1:{server.server_port}/outbound/{OUTBOUND_TOKEN}"})
        total = int(args.rate * args.seconds)
        ids = [r["id"] for r in user.restful("composite/sobjects", method="POST", json={"allOrNone": True, "records": [
            {"attributes": {"type": "Account"}, "Name": f"OM {i}"} for i in range(min(total, 200))]})]
        wait_until(lambda: scalar(url, "SELECT count(*) FROM salesforce.account") >= len(ids), timeout=60)
        latencies = measure(url, "account", lambda n, phone: user.Account.update(ids[n % len(ids)], {"Phone": phone}),
                            total, args.rate)
        return round(statistics.median(latencies), 1) if latencies else None
    finally:
        stop.set()
        server.shutdown()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    args = parser.parse_args()
    url, drop = create_database("fb_bench_cdc")
    migrate(url)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="bench-cdc-"))
    result: dict = {}
    try:
        with start_emulator(tmp / "org", "--pubsub-keepalive", "5", "--daily-api-limit", "100000000") as emu:
            settings = Settings.from_env(
                database_url=url, secret_key="x", huey_url=f"sqlite:///{tmp / 'h.db'}", instance_path=tmp,
                api_token=API_TOKEN, salesforce_org_id=emu.org_id, sf_instance_url=emu.url,
                sf_username=emu.username, sf_password=emu.password, sf_security_token=emu.security_token,
                sf_ca_bundle=str(emu.ca_path), sf_pubsub_url=emu.pubsub, web_alert_checks=False,
                outbound_token=OUTBOUND_TOKEN)
            from webapp import create_app

            doorbell = threading.Event()
            app = create_app(settings, enqueue=lambda name, *a, **k: doorbell.set() if name == "apply_inbound" else None)
            db = app.extensions["forcebridge"].db
            response = app.test_client().post("/api/v1/mappings", headers={"Authorization": f"Bearer {API_TOKEN}"},
                                              json={"object_name": "Contact", "config": {
                                                  "access": "read_only", "fields": FIELDS, "sf_source": "cdc"}})
            assert response.status_code == 201, response.get_json()
            user = emu.salesforce(client="bench-user")

            # (a) throughput
            started = time.monotonic()
            ids = create_contacts(user, args.changes, "Bench")
            print(f"created {len(ids)} contacts in {time.monotonic() - started:.1f} s", file=sys.stderr)
            produced = emu.admin("GET", "/_emulator/pubsub")["events"]
            with Subscriber(settings, db, "EARLIEST"):
                started = time.monotonic()
                wait_until(lambda: events_applied(url) >= produced, timeout=max(120.0, args.changes / 200))
                elapsed = time.monotonic() - started
                applied = events_applied(url)
                rows = scalar(url, "SELECT count(*) FROM salesforce.contact WHERE lastname LIKE 'Bench %%'")
                result["events_per_s"] = round(applied / elapsed, 1) if elapsed else None
                result["throughput_events"] = applied
                lost = len(ids) - rows

                # (b) latency while subscribed
                seen: dict[str, float] = {}
                stop_watch = threading.Event()

                def watch():
                    with psycopg.connect(url, autocommit=True) as conn:
                        while not stop_watch.is_set():
                            now = time.monotonic()
                            for phone, in conn.execute("SELECT phone FROM salesforce.contact WHERE phone LIKE 'L-%%'"):
                                seen.setdefault(phone, now)
                            time.sleep(0.005)
                watcher = threading.Thread(target=watch, daemon=True)
                watcher.start()
                sent: dict[str, float] = {}
                total = int(args.rate * args.seconds)
                base = events_applied(url)
                begin = time.monotonic()
                for n in range(total):
                    due = begin + n / args.rate
                    time.sleep(max(0.0, due - time.monotonic()))
                    phone = f"L-{n}"
                    user.Contact.update(ids[n % len(ids)], {"Phone": phone})
                    sent[phone] = time.monotonic()
                wait_until(lambda: all(p in seen for p in sent) or False, timeout=30)
                stop_watch.set()
                watcher.join(5)
                latencies = [(seen[p] - t) * 1000 for p, t in sent.items() if p in seen]
                # a later update of the same record may overwrite an earlier phone before the watcher saw it
                overwritten = sum(1 for p in sent if p not in seen)
                result["latency_p50_ms"] = round(statistics.median(latencies), 1) if latencies else None
                result["latency_p99_ms"] = round(percentile(latencies, 99), 1) if latencies else None
                result["om_latency_p50_ms"] = om_latency(app, db, emu, user, url, args, doorbell)
                result["latency_changes"] = len(latencies)
                result["latency_unseen"] = overwritten
                time.sleep(1.0)
                latency_events = events_applied(url) - base
                produced = emu.admin("GET", "/_emulator/pubsub")["events"]

                # (c) idle
                before = emu.admin("GET", "/_emulator/stats").get("perClient", {}).get("forcebridge", 0)
                time.sleep(args.idle_seconds)
                after = emu.admin("GET", "/_emulator/stats").get("perClient", {}).get("forcebridge", 0)
                result["idle_rest_calls"] = (after - before) + 1      # + the hourly backstop poll (one idle call)
                result["idle_seconds_measured"] = args.idle_seconds
            final = events_applied(url)
            result["lost"] = lost + max(0, produced - final)
            result["duplicated"] = max(0, final - produced)
            result["latency_events"] = latency_events
            db.close()
    finally:
        drop()
    keys = ["events_per_s", "latency_p50_ms", "latency_p99_ms", "om_latency_p50_ms", "idle_rest_calls", "lost",
            "duplicated"]
    print(json.dumps({k: result.get(k) for k in keys} | {k: v for k, v in result.items() if k not in keys}),
          file=sys.stderr)
    print(json.dumps({k: result.get(k) for k in keys}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
