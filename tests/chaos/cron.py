"""The Huey scheduler's per-minute backstops at a scaled interval, for chaos runs that last seconds:
`python -m tests.chaos.cron --every 2 [--poll-url http://web]` rings `sweep` and `drain_outbound` like the
minute crontab does, and with --poll-url asks the web app to poll every mapping (the polling backstop,
whose shortest interval is a minute)."""
from __future__ import annotations

import argparse
import logging
import os
import time

import requests


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos.cron", description=__doc__)
    parser.add_argument("--every", type=float, default=2.0, help="seconds between doorbells")
    parser.add_argument("--poll-url", help="the web app's base URL: POST /api/v1/mappings/<id>/poll each round")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    log = logging.getLogger("chaos.cron")
    from jobs.queue import create_queue
    from settings import Settings

    queue = create_queue(Settings.from_env())
    while True:
        for name in ("sweep", "drain_outbound"):
            try:
                queue.enqueue(name)
            except Exception as exc:  # noqa: BLE001 - Huey's storage may be gone on purpose; ring again later
                log.warning("could not enqueue %s: %s", name, exc)
        if args.poll_url:
            poll(args.poll_url, log)
        time.sleep(args.every)


def poll(url: str, log) -> None:
    headers = {"Authorization": f"Bearer {os.environ['API_TOKEN']}"}
    try:
        for m in requests.get(f"{url}/api/v1/mappings", headers=headers, timeout=10).json()["mappings"]:
            r = requests.post(f"{url}/api/v1/mappings/{m['id']}/poll", headers=headers, timeout=30)
            if r.status_code != 202:     # a job the worker runs (jobs/api_jobs.py)
                log.warning("poll of mapping %s: %s %s", m["id"], r.status_code, r.text[:200])
    except (requests.RequestException, ValueError, KeyError) as exc:   # the web may be down on purpose
        log.warning("could not poll: %s", exc)


if __name__ == "__main__":
    main()
