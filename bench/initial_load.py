"""Initial load benchmark: Account records seeded into the emulator, loaded by `flask --app webapp sync load
Account` (Bulk API 2.0 query job, results pages streamed into COPY, one merge) in a process of its own, against
a raw COPY of the same CSV into the same (emptied) table in the same run.

Run: .venv/bin/python -m bench.initial_load [--records 1000000] [--page-size 0]
Prints one JSON line last: records, seconds, records_per_s, raw_copy_records_per_s, peak_rss_mb (of the loading
process), and where the time went: query_job_seconds (the emulator running the job until JobComplete),
fetch_seconds (the results pages into staging), merge_seconds.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time

import psycopg

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from emulator.process import start_emulator  # noqa: E402
from tests.support.postgres import create_database  # noqa: E402

FIELDS = ["Name", "AccountNumber", "Type", "Industry", "Rating", "BillingCity", "BillingState", "Phone", "Website",
          "AnnualRevenue", "NumberOfEmployees"]
SEED = {"Name": "Account {n}", "AccountNumber": "AN-{n}", "Type": "Customer - Direct", "Industry": "Energy",
        "Rating": "Hot", "BillingCity": "Springfield", "BillingState": "IL", "Phone": "(555) 010-{n}",
        "Website": "https://example.com/{n}", "AnnualRevenue": 1250000, "NumberOfEmployees": 42}
API_TOKEN = "bench-token"


def environment(running, db_url: str, tmp: pathlib.Path, page_size: int) -> dict:
    return dict(os.environ, DATABASE_URL=db_url, SF_INSTANCE_URL=running.url, SF_USERNAME=running.username,
                SF_PASSWORD=running.password, SF_SECURITY_TOKEN=running.security_token,
                SF_CA_BUNDLE=str(running.ca_path), SALESFORCE_ORG_ID=running.org_id, API_TOKEN=API_TOKEN,
                SECRET_KEY="bench", FORCEBRIDGE_INSTANCE=str(tmp), HUEY_URL=f"sqlite:///{tmp / 'huey.db'}",
                LOAD_PAGE_SIZE=str(page_size), PYTHONUNBUFFERED="1")


def flask(env: dict, *args: str) -> tuple[float, int, str]:
    """Run `flask --app webapp ...` as its own process: (seconds, peak RSS in KB, output)."""
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "flask", "--app", "webapp", *args], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = process.stdout.read().decode()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise RuntimeError(f"flask {' '.join(args)} failed:\n{output}")
    return seconds, usage.ru_maxrss, output


def create_mapping(env: dict) -> None:
    """Through the app's own code path (describe from the emulator), without loading yet."""
    code = ("from webapp import create_app; from core.mapping import from_entry; from gateway import mapping_store; "
            "app = create_app(enqueue=lambda *a: None); c = app.extensions['forcebridge'];\n"
            "with app.app_context():\n"
            f"    m = from_entry({{'object_name': 'Account', 'config': {{'fields': {{n: {{}} for n in {FIELDS!r}}}}}}},"
            " describe=c.describe('Account'))\n"
            "    mapping_store.create(c.db, m)")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, capture_output=True)


def results_csv(running, path: pathlib.Path) -> int:
    """The same query's results as one CSV file (one page), for the raw COPY."""
    session = running.http()
    base = f"{running.url}/services/data/v62.0"
    sf = running.salesforce()
    headers = {"Authorization": f"Bearer {sf.session_id}"}
    soql = f"SELECT Id, SystemModstamp, IsDeleted, {', '.join(FIELDS)} FROM Account"
    job = session.post(f"{base}/jobs/query", json={"operation": "query", "query": soql}, headers=headers).json()
    while session.get(f"{base}/jobs/query/{job['id']}", headers=headers).json()["state"] != "JobComplete":
        time.sleep(0.2)
    with session.get(f"{base}/jobs/query/{job['id']}/results", params={"maxRecords": 10_000_000},
                     headers={**headers, "Accept": "text/csv"}, stream=True) as response, open(path, "wb") as out:
        for chunk in response.iter_content(1 << 20):
            out.write(chunk)
        return int(response.headers["Sforce-NumberOfRecords"])


def raw_copy(db_url: str, path: pathlib.Path) -> float:
    columns = ", ".join(["sfid", "systemmodstamp", "isdeleted", *(f.lower() for f in FIELDS)])
    with psycopg.connect(db_url) as conn:
        conn.execute("TRUNCATE salesforce.account")
        conn.commit()
        started = time.perf_counter()
        with conn.cursor().copy(f"COPY salesforce.account ({columns}) FROM STDIN "
                                f"(FORMAT csv, HEADER true, FORCE_NULL ({columns}))") as copy, open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                copy.write(chunk)
        conn.commit()
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--page-size", type=int, default=0, help="maxRecords per results page (0: Salesforce decides)")
    args = parser.parse_args()
    db_url, drop = create_database("fb_bench")
    try:
        with tempfile.TemporaryDirectory() as tmp, start_emulator(pathlib.Path(tmp) / "org") as running:
            tmp_path = pathlib.Path(tmp)
            started = time.perf_counter()
            running.admin("POST", "/_emulator/seed", {"sobject": "Account", "count": args.records, "fields": SEED})
            print(f"seeded {args.records:,} Accounts in {time.perf_counter() - started:.1f}s", file=sys.stderr)
            env = environment(running, db_url, tmp_path, args.page_size)
            subprocess.run([sys.executable, "-m", "flask", "--app", "webapp", "db", "upgrade"], cwd=ROOT, env=env,
                           check=True, capture_output=True)
            create_mapping(env)
            seconds, rss_kb, output = flask(env, "sync", "load", "Account")
            print("\n".join(l for l in output.splitlines() if "forcebridge.load" in l or l.startswith("done")), file=sys.stderr)
            job_wait = float(re.search(r"JobComplete after ([0-9.]+)s", output).group(1))
            fetch = float(re.search(r"results pages fetched in ([0-9.]+)s", output).group(1))
            merge = float(re.search(r"merge ([0-9.]+)s", output).group(1))
            with psycopg.connect(db_url) as conn:
                loaded = conn.execute("SELECT count(*) FROM salesforce.account").fetchone()[0]
                load_row = conn.execute("SELECT pages, loaded, extract(epoch FROM finished_at - started_at) "
                                        "FROM forcebridge.loads ORDER BY id DESC LIMIT 1").fetchone()
            assert loaded == args.records, f"{loaded} rows loaded, {args.records} expected"
            csv_path = tmp_path / "accounts.csv"
            assert results_csv(running, csv_path) == args.records
            raw_seconds = raw_copy(db_url, csv_path)
            print(f"load: {load_row[0]} pages, {float(load_row[2]):.1f}s inside the loader; process {seconds:.1f}s; "
                  f"raw COPY {raw_seconds:.1f}s ({csv_path.stat().st_size / 2**20:.0f} MB CSV)", file=sys.stderr)
    finally:
        drop()
    print(json.dumps({"records": args.records, "seconds": round(seconds, 2),
                      "records_per_s": round(args.records / seconds),
                      "raw_copy_records_per_s": round(args.records / raw_seconds),
                      "of_raw_copy": round(raw_seconds / seconds, 3),     # the goal: >= 0.40
                      "peak_rss_mb": round(rss_kb / 1024, 1),
                      # where the time went: Salesforce (the emulator) running the query job until JobComplete,
                      # the results pages into staging (the emulator writes the rest of its results meanwhile),
                      # our merge
                      "query_job_seconds": job_wait, "fetch_seconds": fetch, "merge_seconds": merge,
                      "records_per_s_after_job": round(args.records / (seconds - job_wait))}))


if __name__ == "__main__":
    main()
