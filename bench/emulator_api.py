"""Emulator throughput over real HTTPS with simple-salesforce: single calls, 200-record collections, query paging.

python bench/emulator_api.py [--rows 100000] [--calls 200]; prints one JSON line of results last.
"""
import argparse
import json
import pathlib
import statistics
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from emulator.process import start_emulator  # noqa: E402


def timed(fn, repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000, help="Accounts seeded for the paging test")
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir, start_emulator(data_dir) as running:
        sf = running.salesforce(client="bench")
        counter = iter(range(10 ** 9))
        single = timed(lambda: sf.Account.create({"Name": f"B{next(counter)}"}), args.calls)
        batch = [{"attributes": {"type": "Account"}, "Name": "Coll"} for _ in range(200)]
        collections = timed(lambda: sf.restful("composite/sobjects", method="POST",
                                               json={"allOrNone": False, "records": batch}), args.calls // 4)
        started = time.perf_counter()
        running.admin("POST", "/_emulator/seed", {"sobject": "Account", "count": args.rows,
                                                   "fields": {"Name": "Seed {n}", "External_Id__c": "S-{n}"}})
        seed_s = time.perf_counter() - started
        started = time.perf_counter()
        fetched = sum(1 for _ in sf.query_all_iter("SELECT Id, Name, SystemModstamp FROM Account"))
        paging_s = time.perf_counter() - started
    print(json.dumps({
        "bench": "emulator_api", "single_create_ms_p50": round(statistics.median(single), 2),
        "collection200_create_ms_p50": round(statistics.median(collections), 2),
        "collection200_records_per_s": round(200 / (statistics.median(collections) / 1000)),
        "seed_rows": args.rows, "seed_rows_per_s": round(args.rows / seed_s),
        "query_rows": fetched, "query_rows_per_s": round(fetched / paging_s),
    }))


if __name__ == "__main__":
    main()
