"""Benchmark Postgres -> Salesforce against the emulator (100 ms per call): latency, throughput, idle, capture cost.

    python -m bench.pg_to_salesforce [--latency-seconds 30] [--queued 50000] [--idle-seconds 60]

Prints progress to stderr and one JSON line of results last on stdout.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time

import psycopg
from psycopg import sql

from core.mapping import from_entry
from gateway import change_log, mapping_store
from gateway.db import Database, migrate
from gateway.salesforce import Salesforce
from jobs.drain import DrainOptions, drain
from jobs.listener import Listener
from settings import Settings
from tests.emulator_fixture import start_emulator
from tests.support.postgres import create_database

FIELDS = {"Name": {}, "Amount__c": {}, "External_Id__c": {}}
LATENCY_RULES = {p: {"latency_ms": 100} for p in ("rest.*", "composite.*", "auth.*")}


def say(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def api_calls(emulator) -> int:
    return emulator.admin("GET", "/_emulator/stats")["total"]


def setup_mapping(db: Database, sf: Salesforce, object_name: str, direction: str = "pg_to_sf"):
    entry = {"object_name": object_name, "direction": direction,
             "config": {"fields": FIELDS, "upsert_field": "External_Id__c"}}
    return mapping_store.create(db, from_entry(entry, describe=sf.describe("Invoice__c") if object_name == "Invoice__c"
                                               else None), start_sync=False)


def latency(url: str, db: Database, sf: Salesforce, seconds: float, rate: float) -> tuple[float, float]:
    """(a) An app commits `rate` changes a second (inserts and updates of distinct rows); the listener drains.
    Latency = the drain's finish time minus the change's commit-side time, both from Postgres' clock."""
    options = DrainOptions()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO salesforce.invoice__c (name, amount__c) SELECT 'seed ' || g, g "
                     "FROM generate_series(1, %s) g", (int(seconds * rate),))
    drain(db, sf, options)
    listener = Listener(url, lambda: drain(db, sf, options))
    listener.start()
    listener.listening.wait(10)
    with psycopg.connect(url, autocommit=True) as conn:
        first = conn.execute("SELECT coalesce(max(id), 0) AS n FROM forcebridge.change_log").fetchone()[0]
        start, n = time.monotonic(), 0
        while time.monotonic() - start < seconds:
            n += 1
            if n % 2:
                conn.execute("INSERT INTO salesforce.invoice__c (name, amount__c) VALUES (%s, %s)", (f"live {n}", n))
            else:
                conn.execute("UPDATE salesforce.invoice__c SET amount__c = -amount__c WHERE id = %s", (n // 2,))
            time.sleep(max(0.0, start + n / rate - time.monotonic()))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and conn.execute(
                "SELECT count(*) FROM forcebridge.open_changes WHERE id > %s", (first,)
        ).fetchone()[0]:
            time.sleep(0.1)
        ms = [r[0] for r in conn.execute(
            "SELECT extract(epoch FROM finished_at - created_at) * 1000 FROM forcebridge.change_log "
            "WHERE id > %s AND state = 'SUCCESS'", (first,)).fetchall()]
    listener.stop()
    ms.sort()
    say(f"(a) {len(ms)} changes at {rate}/s: p50 {ms[len(ms) // 2]:.0f} ms, p99 {ms[int(len(ms) * 0.99)]:.0f} ms")
    return float(ms[len(ms) // 2]), float(ms[int(len(ms) * 0.99)])


def throughput(url: str, db: Database, sf: Salesforce, emulator, queued: int, bundle: int) -> tuple[float, float]:
    """(b) `queued` changes waiting, then one drain (`bundle` Collections requests an API call)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO salesforce.invoice__c (name, amount__c) SELECT 'bulk ' || g, g "
                     "FROM generate_series(1, %s) g", (queued,))
    before = emulator.admin("GET", "/_emulator/stats")["perRoute"]
    t0 = time.perf_counter()
    result = drain(db, sf, DrainOptions(concurrency=8, bundle=bundle))
    elapsed = time.perf_counter() - t0
    after = emulator.admin("GET", "/_emulator/stats")["perRoute"]
    calls = sum(after.get(r, 0) - before.get(r, 0) for r in after
                if r.startswith("composite.collection") or r == "composite.composite")
    sent = result.outcomes.get("SUCCESS", 0)
    say(f"(b) {sent} records in {elapsed:.1f} s over {calls} calls: {sent / elapsed:.0f} records/s")
    return sent / elapsed, sent / max(1, calls)


def idle(url: str, db: Database, sf: Salesforce, emulator, seconds: float) -> int:
    """(c) Listener up, backstop drains every few seconds, nobody writes: count Salesforce calls."""
    listener = Listener(url, lambda: drain(db, sf))
    listener.start()
    before = api_calls(emulator)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        drain(db, sf)                      # what the once-a-minute backstop does, more often
        time.sleep(min(5.0, max(0.0, end - time.monotonic())))
    listener.stop()
    calls = api_calls(emulator) - before
    say(f"(c) idle {seconds:.0f} s: {calls} Salesforce calls")
    return calls


def capture_cost(url: str, rounds: int = 5) -> tuple[float, float]:
    """(d) 2,000 single-row INSERT transactions and one COPY of 100,000 rows, captured vs plain table, while a
    listener waits on the capture channel as in production (a NOTIFY then signals somebody).
    These machines are shared and noisy, so the two tables take turns: inserts alternate one transaction each
    (the ratio is of the summed times, median over `rounds`); each captured COPY is timed between two plain
    ones (median over `rounds`)."""
    def inserts(conn) -> float:
        statements = {table: sql.SQL("INSERT INTO {} (name, amount__c, external_id__c) VALUES (%s, %s, %s)").format(
            sql.Identifier("salesforce", table)) for table in ("plain__c", "captured__c")}
        spent = {"plain__c": 0.0, "captured__c": 0.0}
        for i in range(2_000):
            for table in (("plain__c", "captured__c") if i % 2 else ("captured__c", "plain__c")):
                t0 = time.perf_counter()
                conn.execute(statements[table], (f"n{i}", i, f"{table}-i{time.monotonic_ns()}"))
                spent[table] += time.perf_counter() - t0
        return spent["captured__c"] / spent["plain__c"]

    def copy(table: str) -> float:
        with psycopg.connect(url) as conn:
            t0 = time.perf_counter()
            statement = sql.SQL("COPY {} (name, amount__c, external_id__c) FROM STDIN").format(
                sql.Identifier("salesforce", table))
            with conn.cursor().copy(statement) as cp:
                tag = time.monotonic_ns()
                for i in range(100_000):
                    cp.write_row((f"n{i}", i, f"c{tag}-{i}"))
            conn.commit()
            return time.perf_counter() - t0

    with psycopg.connect(url, autocommit=True) as listening, psycopg.connect(url, autocommit=True) as conn:
        listening.execute("LISTEN forcebridge_changes")
        ins = [inserts(conn) for _ in range(rounds)]
        cop = []
        for _ in range(rounds):
            before = copy("plain__c")
            cop.append(copy("captured__c") / ((before + copy("plain__c")) / 2))
    ratio_insert, ratio_copy = statistics.median(ins), statistics.median(cop)
    say(f"(d) capture cost: single-row inserts {ratio_insert:.2f}x, COPY 100k {ratio_copy:.2f}x "
        f"(insert rounds: {[round(r, 2) for r in ins]}, COPY rounds: {[round(r, 2) for r in cop]})")
    return ratio_insert, ratio_copy


def naive(url: str, db: Database, sf: Salesforce, records: int) -> float:
    """The original sketch: poll 100 rows, one REST call per record."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE forcebridge.change_log SET state = 'IGNORED' WHERE state <> 'SUCCESS'")
        conn.execute("INSERT INTO salesforce.invoice__c (name, amount__c) SELECT 'naive ' || g, g "
                     "FROM generate_series(1, %s) g", (records,))
        change_log.absorb(db)      # captured changes into the log, where the naive drain polls
        t0, done = time.perf_counter(), 0
        while True:
            batch = conn.execute("SELECT c.id, r.name, r.amount__c FROM forcebridge.change_log c "
                                 "JOIN salesforce.invoice__c r ON r.id = c.record_id "
                                 "WHERE c.state = 'NEW' ORDER BY c.id LIMIT 100").fetchall()
            if not batch:
                break
            for change_id, name, amount in batch:
                sf.create_record("Invoice__c", {"Name": name, "Amount__c": float(amount)})
                conn.execute("UPDATE forcebridge.change_log SET state = 'SUCCESS' WHERE id = %s", (change_id,))
                done += 1
        elapsed = time.perf_counter() - t0
    say(f"naive: {done} records in {elapsed:.1f} s: {done / elapsed:.1f} records/s")
    return done / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-seconds", type=float, default=30)
    parser.add_argument("--rate", type=float, default=20)
    parser.add_argument("--queued", type=int, default=50_000)
    parser.add_argument("--idle-seconds", type=float, default=60)
    parser.add_argument("--naive-records", type=int, default=300)
    parser.add_argument("--bundle", type=int, default=5, help="Collections requests an API call carries (DRAIN_BUNDLE)")
    args = parser.parse_args()

    url, drop = create_database("fb_bench")
    migrate(url)
    db = Database(url, max_size=12)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-emulator-") as data, start_emulator(data) as emulator:
            emulator.admin("POST", "/_emulator/faults", {"rules": LATENCY_RULES})
            settings = Settings.from_env(
                database_url=url, sf_instance_url=emulator.url, sf_username=emulator.username,
                sf_password=emulator.password, sf_security_token=emulator.security_token,
                sf_ca_bundle=str(emulator.ca_path))
            sf = Salesforce(settings, pool_size=12)
            setup_mapping(db, sf, "Invoice__c")
            p50, p99 = latency(url, db, sf, args.latency_seconds, args.rate)
            per_s, per_call = throughput(url, db, sf, emulator, args.queued, args.bundle)
            idle_calls = idle(url, db, sf, emulator, args.idle_seconds)
            naive_per_s = naive(url, db, sf, args.naive_records)
        for name, direction in (("Captured__c", "pg_to_sf"), ("Plain__c", "sf_to_pg")):
            entry = {"object_name": name, "direction": direction, "config": {
                "fields": {"Name": {"type": "string", "length": 80}, "Amount__c": {"type": "currency"},
                           "External_Id__c": {"type": "string", "length": 64}}, "upsert_field": "External_Id__c"}}
            mapping_store.create(db, from_entry(entry), start_sync=False)
        ratio_insert, ratio_copy = capture_cost(url)
    finally:
        db.close()
        drop()
    print(json.dumps({
        "latency_p50_ms": round(p50), "latency_p99_ms": round(p99), "records_per_s": round(per_s),
        "records_per_call": round(per_call, 1), "idle_calls": idle_calls,
        "trigger_overhead_ratio": round(ratio_insert, 2), "copy_overhead_ratio": round(ratio_copy, 2),
        "naive_records_per_s": round(naive_per_s, 1)}))


if __name__ == "__main__":
    main()
