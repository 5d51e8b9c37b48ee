"""Real processes for end-to-end tests: the web app under gunicorn and Huey consumers (jobs.worker),
each with its own environment, ephemeral port and log file."""
from __future__ import annotations

import os
import pathlib
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

import psycopg
import pytest
import requests

ROOT = pathlib.Path(__file__).resolve().parents[2]


def postgres_url(conninfo: str) -> str:
    """The tests' databases are named by conninfo strings; HUEY_URL and DATABASE_URL take URLs."""
    d = psycopg.conninfo.conninfo_to_dict(conninfo)
    user = d.get("user", "postgres")
    password = f":{d['password']}" if d.get("password") else ""
    return f"postgresql://{user}{password}@{d.get('host', '127.0.0.1')}:{d.get('port', 5432)}/{d['dbname']}"


def wait_for(predicate, timeout: float = 60, interval: float = 0.05, what: str = "condition", logs=()):
    """Poll until predicate() is truthy. The timeout only stops a broken test from hanging; when it
    fires, the logs of the given processes are part of the failure."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            tails = "".join(f"\n--- {p.log.name}:\n{p.text()[-4000:]}" for p in logs)
            raise AssertionError(f"timed out waiting for {what}{tails}")
        time.sleep(interval)


@dataclass
class Process:
    popen: subprocess.Popen
    log: pathlib.Path

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def signal(self, signum: int) -> None:
        self.popen.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL: no handler runs, nothing is flushed; what a crashed or OOM-killed host does."""
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait(30)

    def stop(self, timeout: float = 30) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        return self.popen.returncode


_started: list[subprocess.Popen] = []


def spawn(args: list[str], env: dict, log: pathlib.Path, cwd: pathlib.Path = ROOT) -> Process:
    full_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
    with open(log, "ab") as out:
        popen = subprocess.Popen(args, cwd=cwd, env=full_env, stdout=out, stderr=subprocess.STDOUT,
                                 start_new_session=True)
    _started.append(popen)
    return Process(popen, log)


@pytest.fixture(autouse=True)
def no_leftover_processes():
    """Import into a test module that starts processes; runs kill_leftovers() after each test."""
    yield
    kill_leftovers()


def kill_leftovers() -> None:
    """After a test: SIGKILL the process groups it started that still run (a failed test must not leave
    consumers behind to steal the next test's tasks)."""
    while _started:
        popen = _started.pop()
        if popen.poll() is None:
            try:
                os.killpg(popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            popen.wait(10)


def start_worker(env: dict, log: pathlib.Path, *extra: str, python: str = sys.executable) -> Process:
    return spawn([python, "-m", "jobs.worker", *extra], env, log)


@dataclass
class WebServer(Process):
    url: str = ""


def start_web(env: dict, log: pathlib.Path, python: str = sys.executable, cwd: pathlib.Path = ROOT,
              args: list[str] | None = None) -> WebServer:
    """gunicorn with the project's gunicorn.conf.py on an ephemeral port (PORT=0); the port it got is
    read from its log."""
    env = {"PORT": "0", "WEB_CONCURRENCY": "2", **env}
    args = args or [python, "-m", "gunicorn", "-c", "gunicorn.conf.py", "webapp:create_app()"]
    proc = spawn(args, env, log, cwd=cwd)

    def listening():
        if proc.popen.poll() is not None:
            raise AssertionError(f"gunicorn exited:\n{proc.text()}")
        m = re.search(r"Listening at: (http://[\d.]+:\d+)", proc.text())
        return m and m.group(1)

    url = wait_for(listening, timeout=60, what="gunicorn to listen")
    server = WebServer(proc.popen, log, url)
    wait_for(lambda: _healthy(url), timeout=60, what="/healthz")
    return server


def _healthy(url: str) -> bool:
    try:
        return requests.get(f"{url}/healthz", timeout=5).status_code == 200
    except requests.RequestException:
        return False
