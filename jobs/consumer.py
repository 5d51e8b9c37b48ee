"""The worker process: Huey's consumer plus the sync's background threads, stopped gracefully on SIGTERM.
Started by `python -m jobs.worker` (jobs/worker.py), which calls main() here."""
from __future__ import annotations

import argparse
import logging
import threading
from typing import Callable

from huey import signals

from settings import Settings

log = logging.getLogger("forcebridge.worker")

# Tasks rung once when a consumer starts, so that work a killed consumer left behind is picked up now,
# not at the next periodic tick. Each must be an idempotent doorbell (see jobs/tasks.py).
STARTUP_DOORBELLS: list[str] = ["sweep"]


def background_threads(settings: Settings) -> list[Callable[[threading.Event], None]]:
    """Long-running helpers that live beside the consumer. Each is called as fn(stop) in a thread of its
    own and must return soon after `stop` is set."""
    from jobs import embedded, heartbeat

    threads = [heartbeat.beat]
    if settings.parent_pid:
        threads.append(embedded.parent_watch(settings.parent_pid))
    from gateway.salesforce import configured

    if settings.database_url and configured(settings):
        # Change Data Capture: it subscribes only while an active mapping says "sf_source": "cdc", and only
        # one worker of all (an advisory lock elects it; jobs/cdc.py)
        threads.append(cdc_subscriber(settings))
    return threads


def cdc_subscriber(settings: Settings) -> Callable[[threading.Event], None]:
    def cdc_subscriber(stop: threading.Event) -> None:
        from jobs import cdc_source

        cdc_source.run(settings, stop)
    return cdc_subscriber


def install_hooks(queue, interrupted: list) -> None:
    """Collect the tasks a shutdown interrupts (main() enqueues them again), and ring the startup
    doorbells once per process."""
    rung = threading.Event()
    huey = queue.huey

    @huey.signal(signals.SIGNAL_INTERRUPTED)
    def collect_interrupted(signal, task, *args, **kwargs):
        interrupted.append(task)

    @huey.on_startup()
    def ring_startup_doorbells():
        if rung.is_set():
            return
        rung.set()
        for name in STARTUP_DOORBELLS:
            queue.enqueue(name)


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


def start_background(functions, stop: threading.Event) -> list[threading.Thread]:
    threads = []
    for fn in functions:
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


def parse_args(argv, settings: Settings) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m jobs.worker", description=__doc__.splitlines()[0])
    p.add_argument("-w", "--workers", type=int, default=settings.worker_threads,
                   help="worker threads (default 2, env WORKER_THREADS)")
    p.add_argument("-n", "--no-periodic", dest="periodic", action="store_false", default=settings.worker_periodic,
                   help="do not schedule periodic tasks: give every consumer but one this flag "
                        "(env WORKER_PERIODIC=0)")
    p.add_argument("-t", "--shutdown-timeout", type=float,
                   default=settings.worker_shutdown_seconds,
                   help="on SIGTERM, seconds running tasks get to finish before they are re-enqueued "
                        "(default 20; Render sends SIGKILL 30 s after SIGTERM)")
    # How often an idle consumer looks at a storage that cannot block (SQLite): Huey's defaults; the
    # inbound benchmark polls faster.
    p.add_argument("-d", "--delay", type=float, default=0.1, help="first pause when the queue is empty (0.1 s)")
    p.add_argument("-m", "--max-delay", type=float, default=10.0, help="longest such pause (10 s)")
    p.add_argument("-b", "--backoff", type=float, default=1.15, help="factor between pauses (1.15)")
    return p.parse_args(argv)


def main(argv=None) -> None:
    settings = Settings.from_env()
    args = parse_args(argv, settings)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    from gateway.db import migrate
    from jobs import runtime, tasks
    from jobs.queue import create_queue

    runtime.configure(settings)
    if settings.database_url:
        migrate(settings.database_url)  # a worker may start before the web app on a fresh database
        from gateway import mapping_store

        # Heroku Connect's indexes and objects, capture functions of today (deployments before migration 0060)
        upgraded = mapping_store.bring_up_to_date(runtime.db())
        if upgraded:
            log.info("gave Heroku Connect's indexes and objects to %s", ", ".join(upgraded))
    queue = create_queue(settings)
    interrupted: list = []
    install_hooks(queue, interrupted)
    consumer = queue.huey.create_consumer(workers=args.workers, worker_type="thread", periodic=args.periodic,
                                          graceful_signal="TERM", shutdown_timeout=args.shutdown_timeout,
                                          initial_delay=args.delay, max_delay=args.max_delay, backoff=args.backoff)
    stop = threading.Event()
    threads = start_background(background_threads(settings), stop)
    listener = tasks.write_listener()
    if listener is not None:
        listener.start()
    try:
        consumer.run()
        if listener is not None:
            # a drain woken by the listener gets a moment to finish rather than leave its claims to expire
            # (they would, after their lease); bounded: Render's SIGKILL comes 30 s after its SIGTERM
            listener.stop(timeout=5)
        requeue(queue.huey, consumer, interrupted)
    finally:
        stop.set()
        for t in threads:
            t.join(5)
        queue.huey.storage.close()
        log.info("worker stopped")
