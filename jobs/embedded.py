"""One worker process inside the web service, for hosts without background workers (Render's free plan).
gunicorn.conf.py starts it from the master, so there is one per instance, not one per web worker."""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time

log = logging.getLogger("forcebridge.embedded")

PARENT_ENV = "FORCEBRIDGE_PARENT_PID"   # how the master tells its worker who it is (Settings.parent_pid)


class EmbeddedWorker:
    """`python -m jobs.worker` as a child of gunicorn's master: restarted if it dies, sent SIGTERM when the
    master is told to stop, and waited for (its running tasks finish or are re-enqueued) before the
    master exits. A child process rather than threads in the master, because the master forks web
    workers and a fork must not copy a consumer's threads, locks and database connections."""

    def __init__(self, shutdown_timeout: float, args: list[str] | None = None, logger=None):
        self.shutdown_timeout = shutdown_timeout
        self.args = args or [sys.executable, "-m", "jobs.worker", "-t", str(self.shutdown_timeout)]
        self.process: subprocess.Popen | None = None
        self.log = logger or log  # gunicorn passes its own, so these lines land beside its
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._supervisor: threading.Thread | None = None

    def start(self) -> None:
        self._spawn()
        self._supervisor = threading.Thread(target=self._supervise, name="embedded-worker", daemon=True)
        self._supervisor.start()

    def _spawn(self) -> None:
        with self._lock:
            if self.stopping.is_set():
                return
            env = {**os.environ, PARENT_ENV: str(os.getpid())}
            # A session of its own: a signal sent to the master's process group reaches the worker
            # only through begin_stop(), once, so a second SIGTERM cannot cut its graceful stop short.
            self.process = subprocess.Popen(self.args, env=env, start_new_session=True)
            self.log.info("embedded worker started (pid %s)", self.process.pid)

    def _supervise(self) -> None:
        while not self.stopping.is_set():
            code = self.process.wait()  # gunicorn may reap it first; then wait() reports 0
            if self.stopping.is_set():
                return
            self.log.error("embedded worker exited (%s); starting another in 2 s", code)
            self.stopping.wait(2)
            self._spawn()

    def begin_stop(self) -> None:
        """Ask the worker to stop taking tasks and finish the running ones. Safe in a signal handler."""
        self.stopping.set()
        proc = self.process
        if proc is not None and proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass

    def wait(self) -> None:
        """Block until the worker is gone; SIGKILL it if it overstays its shutdown timeout (its tasks are
        doorbells over Postgres, so even then nothing acknowledged is lost)."""
        self.begin_stop()
        proc = self.process
        if proc is None:
            return
        deadline = time.monotonic() + self.shutdown_timeout + 5
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        if proc.poll() is None:
            self.log.warning("embedded worker did not stop in time; killing it")
            proc.kill()
        self.log.info("embedded worker stopped")


def parent_watch(parent: int):
    """The background thread of an embedded worker: exit when the web service that started it (pid
    `parent`) is gone (a SIGKILLed master cannot forward its SIGTERM)."""
    def watch_parent(stop: threading.Event) -> None:
        while not stop.wait(1):
            if os.getppid() != parent:
                log.warning("web service (pid %s) is gone; stopping the embedded worker", parent)
                os.kill(os.getpid(), signal.SIGTERM)
                return
    return watch_parent
