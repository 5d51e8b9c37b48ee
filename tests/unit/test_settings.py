"""Every process reads its settings in one place, settings.py: the web app, the worker and gunicorn."""
from __future__ import annotations

import runpy

import pytest

from jobs.consumer import parse_args
from settings import ROOT, Settings

PROCESS_ENV = {"WORKER_THREADS": "5", "WORKER_PERIODIC": "0", "WORKER_SHUTDOWN_SECONDS": "7.5",
               "HOST": "127.0.0.1", "PORT": "10000", "WEB_CONCURRENCY": "1", "WEB_THREADS": "8",
               "WEB_GRACEFUL_SECONDS": "25", "FORCEBRIDGE_EMBEDDED_WORKER": "1"}


@pytest.fixture
def process_env(monkeypatch):
    for name, value in PROCESS_ENV.items():
        monkeypatch.setenv(name, value)


def test_defaults_without_any_variable(monkeypatch):
    for name in [*PROCESS_ENV, "FORCEBRIDGE_PARENT_PID"]:
        monkeypatch.delenv(name, raising=False)
    s = Settings.from_env()
    assert (s.worker_threads, s.worker_periodic, s.worker_shutdown_seconds) == (2, True, 20.0)
    assert (s.host, s.port, s.web_concurrency, s.web_threads, s.web_graceful_seconds) == ("0.0.0.0", 8000, 2, 4, 20)
    assert not s.embedded_worker and s.parent_pid == 0


def test_the_worker_takes_its_defaults_from_the_settings_and_its_options_win(process_env):
    args = parse_args([], Settings.from_env())
    assert (args.workers, args.periodic, args.shutdown_timeout) == (5, False, 7.5)
    args = parse_args(["-w", "3", "-t", "1"], Settings.from_env())
    assert (args.workers, args.shutdown_timeout) == (3, 1.0)


def test_gunicorn_reads_the_web_services_variables_through_the_settings(process_env):
    conf = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    assert (conf["bind"], conf["workers"], conf["threads"], conf["graceful_timeout"]) == ("127.0.0.1:10000", 1, 8, 25)
    assert conf["_settings"].embedded_worker


@pytest.mark.parametrize("raw,expected", [("1", True), ("true", True), ("on", True), ("0", False), ("no", False)])
def test_the_embedded_worker_switch(monkeypatch, raw, expected):
    monkeypatch.setenv("FORCEBRIDGE_EMBEDDED_WORKER", raw)
    assert Settings.from_env().embedded_worker is expected
