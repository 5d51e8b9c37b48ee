"""The worker process: Huey's consumer plus the sync's background threads, stopped gracefully on SIGTERM.
Run `python -m jobs.worker` (Procfile `worker:`; on Render's free plan gunicorn.conf.py starts it)."""
from __future__ import annotations

import argparse
import logging
import os
import threading
from typing import Callable

from huey import signals

log = logging.getLogger("forcebridge.worker")

# Long-running helpers that live beside the consumer (e.g. a LISTEN-based listener that rings the
# drain doorbell). Each is called as fn(stop: threading.Event) in a thread of its own and must return
# soon after `stop` is set. Register with @background_thread.
BACKGROUND_THREADS: list[Callable[[threading.Event], None]] = []

# Tasks rung once when a consumer starts, so that work a killed consumer left behind is picked up now,
# not at the next periodic tick. Each must be an idempotent doorbell (see jobs/tasks.py).
STARTUP_DOORBELLS: list[str] = ["sweep"]


def background_thread(fn: Callable[[threading.Event], None]):
    BACKGROUND_THREADS.append(fn)
    return fn


def install_hooks(huey, interrupted: list) -> None:
    """Collect the tasks a shutdown interrupts (main() enqueues them again), and ring the startup
    doorbells once per process."""
    rung = threading.Event()

    @huey.signal(signals.SIGNAL_INTERRUPTED)
    def collect_interrupted(signal, task, *args, **kwargs):
        interrupted.append(task)

    @huey.on_startup()
    def ring_startup_doorbells():
        if rung.is_set():
            return
        rung.set()
        from jobs import tasks

        for name in STARTUP_DOORBELLS:
            getattr(tasks, name)()


def requeue(huey, consumer, interrupted: list) -> None:
    """Put the tasks the shutdown cut short back in the queue (they are doorbells over Postgres state, so
    running one again is always safe). Idle worker threads first leave their blocking dequeue, or one of
    them could take a re-enqueued task just before the process exits."""
    if not interrupted:
        return
    wait = getattr(huey.storage, "read_timeout", 1) + 1
    for _, thread in consumer.worker_threads:
        thread.join(wait)
    for task in interrupted:
        log.warning("task %s was interrupted by the shutdown; enqueueing it again", task)
        huey.enqueue(task)


def stop_listener(timeout: float) -> None:
    """The write path's LISTEN thread (jobs/tasks.py starts it on Huey's startup) may be in a drain: give
    that drain a moment to finish rather than leave its claims to expire (they would, after their lease)."""
    from jobs import tasks

    listener = getattr(tasks, "_listener", None)
    if listener is not None:
        listener.stop(timeout=timeout)


def start_background(stop: threading.Event) -> list[threading.Thread]:
    threads = []
    for fn in BACKGROUND_THREADS:
        t = threading.Thread(target=_guarded, args=(fn, stop), name=f"bg-{fn.__name__}", daemon=True)
        t.start()
        threads.append(t)
    return threads


def _guarded(fn, stop: threading.Event) -> None:
    """A background thread that crashes is restarted after a pause; the sweeper covers the gap."""
    while not stop.is_set():
        try:
            fn(stop)
            return
        except Exception:  # noqa: BLE001 - log and keep the process serving
            log.exception("background thread %s failed; restarting in 5 s", fn.__name__)
            stop.wait(5)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m jobs.worker", description=__doc__)
    p.add_argument("-w", "--workers", type=int, default=int(os.environ.get("WORKER_THREADS", "2")),
                   help="worker threads (default 2, env WORKER_THREADS)")
    p.add_argument("-n", "--no-periodic", dest="periodic", action="store_false",
                   default=os.environ.get("WORKER_PERIODIC", "1") != "0",
                   help="do not schedule periodic tasks: give every consumer but one this flag "
                        "(env WORKER_PERIODIC=0)")
    p.add_argument("-t", "--shutdown-timeout", type=float,
                   default=float(os.environ.get("WORKER_SHUTDOWN_SECONDS", "20")),
                   help="on SIGTERM, seconds running tasks get to finish before they are re-enqueued "
                        "(default 20; Render sends SIGKILL 30 s after SIGTERM)")
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    from gateway.db import migrate
    from jobs import huey, runtime

    if runtime.settings().database_url:
        migrate(runtime.settings().database_url)  # a worker may start before the web app on a fresh database
        from gateway import capture, mapping_store

        # Heroku Connect's indexes and objects, capture functions of today (deployments before migration 0060)
        upgraded = mapping_store.bring_up_to_date(runtime.db(), hook=capture.sync_with_mapping)
        if upgraded:
            log.info("gave Heroku Connect's indexes and objects to %s", ", ".join(upgraded))
    interrupted: list = []
    install_hooks(huey, interrupted)
    from jobs import embedded

    if os.environ.get(embedded.PARENT_ENV):
        background_thread(embedded.watch_parent)
    consumer = huey.create_consumer(workers=args.workers, worker_type="thread", periodic=args.periodic,
                                    graceful_signal="TERM", shutdown_timeout=args.shutdown_timeout)
    stop = threading.Event()
    threads = start_background(stop)
    try:
        consumer.run()
        stop_listener(timeout=5)  # bounded: Render's SIGKILL comes 30 s after its SIGTERM
        requeue(huey, consumer, interrupted)
    finally:
        stop.set()
        for t in threads:
            t.join(5)
        huey.storage.close()
        log.info("worker stopped")


if __name__ == "__main__":
    main()
