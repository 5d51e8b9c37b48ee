"""Change Data Capture ingest, end to end (issue 13): the emulator's Pub/Sub API (gRPC, TLS) -> the CDC source
(jobs/cdc_source.py: decode, apply, replay id in one transaction) -> rows in Postgres.

(a) throughput: --changes records created in Salesforce (sObject Collections, 200 a call) while nobody listens,
    then the subscriber starts from EARLIEST: events decoded, committed and applied per second. `--before REV`
    first runs the same throughput with that git revision's code (its own bench, same options) for a ratio;
(c) idle: an emulated hour with only the CDC mapping: 60 scheduler minutes, each advancing the emulator's clock
    and the product's schedules (poll_state, formula refresh) by a minute and running the periodic tasks due
    then, as the worker would, while the subscriber stays connected; REST calls counted by the emulator;
(b) latency, both sources at once: --rate updates/s of a CDC-mapped Contact and --rate updates/s of an
    OM-mapped Account (the emulator's sender, the web app served in this process, the inbox applied as the worker
    does), for --seconds; from each update's answer (Salesforce committed it) to the value visible in Postgres
    (a watcher per table reads every 5 ms): p50, p99 of each.

Run: .venv/bin/python -m bench.cdc_ingest [--changes 100000] [--rate 50] [--seconds 20] [--before REV]
Prints one JSON line last: events_per_s, latency_p50_ms, latency_p99_ms, om_latency_p50_ms, idle_rest_calls,
lost, duplicated (stderr gets a longer line).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

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


def measure(url: str, table: str, prefix: str, send, total: int, rate: float) -> list[float]:
    """Latencies (ms) from each send's answer to its phone value (`prefix`-n) visible in `table`; a later update
    of the same record may overwrite an earlier phone before the watcher saw it (those are left out)."""
    seen: dict[str, float] = {}
    stop = threading.Event()

    def watch():
        with psycopg.connect(url, autocommit=True) as conn:
            while not stop.is_set():
                now = time.monotonic()
                query = sql.SQL("SELECT phone FROM {} WHERE phone LIKE %s").format(sql.Identifier("salesforce", table))
                for phone, in conn.execute(query, (prefix + "-%",)):
                    seen.setdefault(phone, now)
                time.sleep(0.005)
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    sent: dict[str, float] = {}
    begin = time.monotonic()
    for n in range(total):
        time.sleep(max(0.0, begin + n / rate - time.monotonic()))
        phone = f"{prefix}-{n}"
        send(n, phone)
        sent[phone] = time.monotonic()
    wait_until(lambda: all(p in seen for p in sent), timeout=60)
    stop.set()
    watcher.join(5)
    return [(seen[p] - t) * 1000 for p, t in sent.items() if p in seen]


def summary(latencies: list[float]) -> tuple[float | None, float | None]:
    if not latencies:
        return None, None
    return round(statistics.median(latencies), 1), round(percentile(latencies, 99), 1)


def outbound_messages(app, db, emu, user, url: str, count: int, doorbell: threading.Event, stack: list) -> list[str]:
    """An Account mapping on Outbound Messages: the emulator's sender posts to the web app served here, the inbox
    is applied as the worker would. Returns `count` (at most 200) Account ids, already in Postgres."""
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
    threading.Thread(target=apply_inbox, daemon=True).start()
    stack.append(lambda: (stop.set(), server.shutdown()))
    emu.admin("POST", "/_emulator/outbound/rules", {
        "object": "Account", "fields": ["Name", "Phone", "SystemModstamp"],
        "endpoint_url": f"http://127.0.0.1:{server.server_port}/outbound/{OUTBOUND_TOKEN}"})
    ids = [r["id"] for r in user.restful("composite/sobjects", method="POST", json={"allOrNone": True, "records": [
        {"attributes": {"type": "Account"}, "Name": f"OM {i}"} for i in range(min(count, 200))]})]
    wait_until(lambda: scalar(url, "SELECT count(*) FROM salesforce.account") >= len(ids), timeout=60)
    return ids


def side_by_side(url: str, emu, contact_ids: list[str], account_ids: list[str], args) -> dict:
    """CDC (Contact) and Outbound Messages (Account) at --rate changes/s each, at the same time."""
    total = int(args.rate * args.seconds)
    cdc_user, om_user = emu.salesforce(client="bench-user"), emu.salesforce(client="bench-user")
    with ThreadPoolExecutor(2) as pool:
        cdc = pool.submit(measure, url, "contact", "C", lambda n, phone: cdc_user.Contact.update(
            contact_ids[n % len(contact_ids)], {"Phone": phone}), total, args.rate)
        om = pool.submit(measure, url, "account", "O", lambda n, phone: om_user.Account.update(
            account_ids[n % len(account_ids)], {"Phone": phone}), total, args.rate)
        cdc_latencies, om_latencies = cdc.result(), om.result()
    (p50, p99), (om_p50, om_p99) = summary(cdc_latencies), summary(om_latencies)
    return {"latency_p50_ms": p50, "latency_p99_ms": p99, "om_latency_p50_ms": om_p50, "om_latency_p99_ms": om_p99,
            "latency_changes": len(cdc_latencies), "latency_unseen": total - len(cdc_latencies),
            "om_latency_changes": len(om_latencies)}


# What an emulated minute moves on the product's side: the times its schedules are due (Postgres now() is real)
SCHEDULES = [("poll_state", ("next_poll_at", "last_polled_at")), ("formula_refresh", ("next_run_at",))]


def age_schedules(url: str, seconds: float) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for table, columns in SCHEDULES:
            moves = sql.SQL(", ").join(sql.SQL("{0} = {0} - make_interval(secs => %(s)s)").format(sql.Identifier(c))
                                       for c in columns)
            conn.execute(sql.SQL("UPDATE {} SET {}").format(sql.Identifier("forcebridge", table), moves), {"s": seconds})


def scheduler_minute(queue, url: str, emu, moment: datetime, calls: dict | None = None) -> None:
    """One minute of the worker's scheduler, emulated: Salesforce's clock and the product's schedules a minute
    on, then every periodic task due at `moment` run here as the consumer runs it. `calls`: REST calls by task
    name, added to."""
    from jobs import api_usage

    emu.admin("POST", "/_emulator/clock", {"advance": 60})
    age_schedules(url, 60)
    api_usage._last_limits["at"] -= 60          # noqa: SLF001 - its /limits schedule is per process (monotonic)
    for task in queue.huey.read_periodic(moment):
        before = rest_calls(emu)
        queue.huey.execute(task, moment)
        if calls is not None and rest_calls(emu) != before:
            calls[task.name] = calls.get(task.name, 0) + rest_calls(emu) - before


def rest_calls(emu) -> int:
    """REST calls the product made so far (its client name in Sforce-Call-Options), as the emulator counts."""
    return emu.admin("GET", "/_emulator/stats").get("perClient", {}).get("forcebridge", 0)


def idle_hour(queue, url: str, emu) -> tuple[int, dict]:
    """REST calls of an emulated hour with no change and only CDC mappings (the subscriber stays connected), and
    which periodic task made them. One scheduler minute first: what was due before (the poll after the
    throughput, the /limits read after the load)."""
    moment = datetime(2026, 1, 1, 0, 0)
    scheduler_minute(queue, url, emu, moment)
    before, calls = rest_calls(emu), {}
    for _ in range(60):
        moment += timedelta(minutes=1)
        scheduler_minute(queue, url, emu, moment, calls)
    return rest_calls(emu) - before, calls


def run_before(revision: str, args) -> float | None:
    """The throughput of `revision`'s code (git archive into a temporary directory, its own bench, the same
    --changes, shortest latency and idle phases)."""
    target = pathlib.Path(tempfile.mkdtemp(prefix="bench-cdc-before-"))
    try:
        archive = subprocess.run(["git", "archive", revision], cwd=ROOT, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
        (target / ".venv").symlink_to(ROOT / ".venv")
        done = subprocess.run([sys.executable, "-m", "bench.cdc_ingest", "--changes", str(args.changes),
                               "--seconds", "1", "--idle-seconds", "0"], cwd=target, capture_output=True, text=True)
    finally:
        shutil.rmtree(target, ignore_errors=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        print(done.stderr[-2000:], file=sys.stderr)
        return None
    return json.loads(lines[-1]).get("events_per_s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--before", metavar="REV", help="also measure this git revision's throughput first")
    # what revisions before the emulated hour took (run_before passes it to any revision): ignored now
    parser.add_argument("--idle-seconds", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    result: dict = {}
    if args.before:
        result["before_events_per_s"] = run_before(args.before, args)
    url, drop = create_database("fb_bench_cdc")
    migrate(url)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="bench-cdc-"))
    stack: list = []
    try:
        with start_emulator(tmp / "org", "--pubsub-keepalive", "5", "--daily-api-limit", "100000000") as emu:
            settings = Settings.from_env(
                database_url=url, secret_key="x", huey_url=f"sqlite:///{tmp / 'h.db'}", instance_path=tmp,
                api_token=API_TOKEN, salesforce_org_id=emu.org_id, sf_instance_url=emu.url,
                sf_username=emu.username, sf_password=emu.password, sf_security_token=emu.security_token,
                sf_ca_bundle=str(emu.ca_path), sf_pubsub_url=emu.pubsub, web_alert_checks=False,
                outbound_token=OUTBOUND_TOKEN)
            from jobs import runtime, sync_tasks
            from jobs.queue import create_queue
            from webapp import create_app

            doorbell = threading.Event()
            app = create_app(settings, enqueue=lambda name, *a, **k: doorbell.set() if name == "apply_inbound" else None)
            db = app.extensions["forcebridge"].db
            runtime.configure(settings, db)
            logging.getLogger("huey").setLevel(logging.WARNING)
            queue = create_queue(settings)
            response = app.test_client().post("/api/v1/mappings", headers={"Authorization": f"Bearer {API_TOKEN}"},
                                              json={"object_name": "Contact", "config": {
                                                  "access": "read_only", "fields": FIELDS, "sf_source": "cdc"}})
            assert response.status_code == 201, response.get_json()
            sync_tasks.mapping_ready(response.get_json()["id"])        # its first load (an empty org), as the worker
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

                # (c) an emulated idle hour, only the CDC mapping
                started = time.monotonic()
                result["idle_rest_calls"], result["idle_calls_by_task"] = idle_hour(queue, url, emu)
                result["idle_hour_real_seconds"] = round(time.monotonic() - started, 1)

                # (b) latency: CDC and Outbound Messages side by side
                account_ids = outbound_messages(app, db, emu, user, url, int(args.rate * args.seconds), doorbell,
                                                stack)
                base = events_applied(url)
                result.update(side_by_side(url, emu, ids, account_ids, args))
                time.sleep(1.0)
                result["latency_events"] = events_applied(url) - base
                produced = emu.admin("GET", "/_emulator/pubsub")["events"]
            final = events_applied(url)
            result["lost"] = lost + max(0, produced - final)
            result["duplicated"] = max(0, final - produced)
            if result.get("before_events_per_s"):
                result["ratio_vs_before"] = round(result["events_per_s"] / result["before_events_per_s"], 2)
            for undo in reversed(stack):
                undo()
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
