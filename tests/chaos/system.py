"""The whole system as real processes for the chaos suite: emulator, web (gunicorn), Huey consumers, a cron.
Every process can be SIGKILLed and started again; Postgres is the test run's own database."""
from __future__ import annotations

import contextlib
import os
import pathlib
import signal
import socket
import subprocess
import sys
import threading
import time

import psycopg
import requests

from tests.emulator_fixture import REPO, Emulator, start_emulator

ORG_ID = "00D5g000004CHAO"
OUTBOUND_TOKEN = "chaos-outbound-token"
API_TOKEN = "chaos-api-token"
CLIENT_PEOPLE = "people"          # Sforce-Call-Options of the load's Salesforce users


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    """One child process with its log file; start() again after kill() brings it back with the same
    command (the web keeps its port, so the emulator's Outbound Message rule stays valid)."""

    def __init__(self, name: str, command: list[str], env: dict, log_dir: pathlib.Path):
        self.name, self.command, self.env = name, command, env
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen | None = None
        self.starts = 0
        self._lock = threading.Lock()
        self.retired = False

    def start(self) -> None:
        # A fault's restart timer and the end-of-run restart can race: never leave a second copy behind.
        with self._lock:
            if self.alive() or self.retired:
                return
            self._start()

    def _start(self) -> None:
        self.starts += 1
        log = open(self.log_path, "ab")
        log.write(f"\n==== start #{self.starts}\n".encode())
        log.flush()
        self.process = subprocess.Popen(self.command, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        log.close()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole process group (gunicorn's workers too): nothing gets to clean up."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self, timeout: float = 10) -> None:
        """For good: a restart timer that fires later does nothing."""
        with self._lock:
            self.retired = True
        if not self.alive():
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()


def consumer_command() -> list[str]:
    """The deployment's worker, as the Procfile starts it."""
    return [sys.executable, "-m", "jobs.worker", "-w", "2"]


class System:
    """Start with `with System(...) as system:`; attributes: emulator, web_url, database_url, huey_path."""

    def __init__(self, work_dir: pathlib.Path, database_url: str, *, consumers: int = 2, time_scale: float = 60,
                 cron_seconds: float = 2.0, lease_seconds: int = 5, poll: bool = False):
        self.work_dir = pathlib.Path(work_dir)
        self.database_url = database_url
        self.consumers_wanted = consumers
        self.time_scale = time_scale
        self.cron_seconds = cron_seconds
        self.lease_seconds = lease_seconds
        self.poll = poll
        self.huey_path = self.work_dir / "huey" / "huey.sqlite3"
        self.web_port = free_port()
        self.web_url = f"http://127.0.0.1:{self.web_port}"
        self._stack = contextlib.ExitStack()
        self.emulator: Emulator | None = None
        self.web: Proc | None = None
        self.consumers: list[Proc] = []
        self.cron: Proc | None = None

    # -- lifecycle ----------------------------------------------------------------------------------
    def __enter__(self) -> "System":
        (self.work_dir / "logs").mkdir(parents=True, exist_ok=True)
        self.huey_path.parent.mkdir(parents=True, exist_ok=True)
        self.emulator = self._stack.enter_context(start_emulator(
            self.work_dir / "emulator", "--time-scale", str(self.time_scale), org_id=ORG_ID))
        env = self.env()
        logs = self.work_dir / "logs"
        # the project's gunicorn.conf.py (its worker class bounds slow clients), on the run's own port
        self.web = Proc("web", [str(pathlib.Path(sys.executable).with_name("gunicorn")), "-c", "gunicorn.conf.py",
                                "-b", f"127.0.0.1:{self.web_port}", "-w", "2", "--threads", "4", "--timeout", "30",
                                "webapp:create_app()"], env, logs)
        self.consumers = [Proc(f"consumer{i}", consumer_command(), env, logs) for i in range(self.consumers_wanted)]
        self.cron = Proc("cron", [sys.executable, "-m", "tests.chaos.cron", "--every", str(self.cron_seconds),
                                  *(["--poll-url", self.web_url] if self.poll else [])], env, logs)
        self._stack.callback(self.stop_all)
        self.web.start()
        self.wait_web()
        for c in self.consumers:
            c.start()
        self.cron.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def env(self) -> dict:
        e = self.emulator
        return dict(
            os.environ, PYTHONUNBUFFERED="1", DATABASE_URL=self.database_url, SECRET_KEY="chaos",
            HUEY_URL=f"sqlite:///{self.huey_path}", HUEY_NAME=f"chaos{self.web_port}",
            FORCEBRIDGE_INSTANCE=str(self.work_dir / "instance"),
            SALESFORCE_ORG_ID=e.org_id, OUTBOUND_TOKEN=OUTBOUND_TOKEN, API_TOKEN=API_TOKEN,
            SF_INSTANCE_URL=e.url, SF_USERNAME=e.username, SF_PASSWORD=e.password,
            SF_SECURITY_TOKEN=e.security_token, SF_CA_BUNDLE=str(e.ca_path), SF_API_VERSION="59.0",
            SF_PUBSUB_URL=e.pubsub or "",
            DRAIN_LEASE_SECONDS=str(self.lease_seconds))

    def stop_all(self) -> None:
        for p in [self.cron, *self.consumers, self.web]:
            if p is not None:
                p.stop()

    def wait_web(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.web.alive():
                raise RuntimeError("web exited:\n" + self.web.log_path.read_text()[-3000:])
            with contextlib.suppress(requests.RequestException):
                if requests.get(self.web_url + "/healthz", timeout=2).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError("web did not answer /healthz:\n" + self.web.log_path.read_text()[-3000:])

    def ensure_running(self) -> None:
        """Start whatever a fault killed (a supervisor's job in production: systemd, Render)."""
        if not self.web.alive():
            self.web.start()
            self.wait_web()
        for c in self.consumers:
            if not c.alive():
                c.start()
        if not self.cron.alive():
            self.cron.start()

    # -- the user's side ----------------------------------------------------------------------------
    def api(self, method: str, path: str, **kw) -> requests.Response:
        headers = {"Authorization": f"Bearer {API_TOKEN}", **kw.pop("headers", {})}
        return requests.request(method, self.web_url + path, headers=headers, timeout=30, **kw)

    def sql(self, statement, params=None):
        with psycopg.connect(self.database_url) as conn:
            cur = conn.execute(statement, params)
            return cur.fetchall() if cur.description else cur.rowcount

    def logs_tail(self, chars: int = 2000) -> str:
        parts = []
        for p in [self.web, *self.consumers, self.cron]:
            if p and p.log_path.exists():
                parts.append(f"--- {p.name}\n{p.log_path.read_text(errors='replace')[-chars:]}")
        return "\n".join(parts)
