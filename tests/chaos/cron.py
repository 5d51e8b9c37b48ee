"""The Huey scheduler's per-minute backstop at a scaled interval, for chaos runs that last seconds:
`python -m tests.chaos.cron --every 2` rings `sweep` and `drain_outbound` like the minute crontab does."""
from __future__ import annotations

import argparse
import logging
import time


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos.cron", description=__doc__)
    parser.add_argument("--every", type=float, default=2.0, help="seconds between doorbells")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    log = logging.getLogger("chaos.cron")
    from jobs import tasks

    while True:
        for task in (tasks.sweep, tasks.drain_outbound):
            try:
                task()
            except Exception as exc:  # noqa: BLE001 - Huey's storage may be gone on purpose; ring again later
                log.warning("could not enqueue %s: %s", task.name, exc)
        time.sleep(args.every)


if __name__ == "__main__":
    main()
