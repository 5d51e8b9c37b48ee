"""Bulk API 2.0 query throughput of the emulator over HTTPS, read with unmodified simple-salesforce.

python bench/emulator_bulk2.py [--rows 1000000] [--page 50000]; prints one JSON line of results last.
"""
import argparse
import json
import pathlib
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from emulator.process import start_emulator  # noqa: E402

SOQL = "SELECT Id, Name, Industry, AnnualRevenue, SystemModstamp, IsDeleted FROM Account"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000, help="Accounts seeded and queried")
    parser.add_argument("--page", type=int, default=50_000, help="maxRecords per results page")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir, start_emulator(data_dir) as running:
        started = time.perf_counter()
        running.admin("POST", "/_emulator/seed", {"sobject": "Account", "count": args.rows, "fields": {
            "Name": "Account {n}", "Industry": "Banking", "AnnualRevenue": 125000}})
        seed_s = time.perf_counter() - started
        client = running.salesforce(client="bench").bulk2.Account._client
        started = time.perf_counter()
        job = client.create_job("query", SOQL)
        client.wait_for_job(job["id"], True, 0.1)
        job_s = time.perf_counter() - started
        produced_ms = client.get_job(job["id"], True)["totalProcessingTime"]
        started = time.perf_counter()
        rows = pages = size = 0
        locator = ""
        while True:
            page = client.get_query_results(job["id"], locator, args.page)
            rows += page["number_of_records"]
            size += len(page["records"])
            pages += 1
            locator = page["locator"]
            if not locator:
                break
        fetch_s = time.perf_counter() - started
    print(json.dumps({
        "bench": "emulator_bulk2", "rows": rows, "pages": pages, "csv_mb": round(size / 2 ** 20, 1),
        "seed_s": round(seed_s, 2), "job_until_complete_s": round(job_s, 2),
        "results_written_rows_per_s": round(rows / (produced_ms / 1000)) if produced_ms else None,
        "fetch_s": round(fetch_s, 2), "fetch_rows_per_s": round(rows / fetch_s),
        "end_to_end_rows_per_s": round(rows / (job_s + fetch_s)),
    }))


if __name__ == "__main__":
    main()
