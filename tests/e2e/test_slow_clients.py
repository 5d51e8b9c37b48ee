"""The web process under gunicorn.conf.py (as the Procfile starts it) against clients that send slowly or
badly: health checks and Outbound Messages keep answering, and the outbound token never reaches the log."""
from __future__ import annotations

import socket
import time
import urllib.parse

import pytest
import requests

from tests.conftest import ORG_ID
from tests.support.deployment import Deployment
from tests.support.messages import envelope
from tests.support.processes import start_web, wait_for
from tests.support.processes import no_leftover_processes  # noqa: F401  (autouse: stops leftover processes)

# what Render's generateValue makes: base64, "/" and "+" included
SLASHED_TOKEN = "Zm9y/ZWJy+aWRnZQ/dG9rZW4="


@pytest.fixture
def deployment(clean_db, tmp_path):
    dep = Deployment.create(clean_db, "sqlite", tmp_path)
    yield dep
    dep.forget_queue()


def _web(deployment, tmp_path, **env):
    # one process with four threads: fewer threads than the slow clients below
    return start_web(deployment.env(WEB_CONCURRENCY="1", WEB_THREADS="4", OUTBOUND_TOKEN=SLASHED_TOKEN, **env),
                     tmp_path / "web.log")


def _open(url: str, head: bytes) -> socket.socket:
    parsed = urllib.parse.urlsplit(url)
    assert parsed.hostname == "127.0.0.1"
    sock = socket.create_connection((parsed.hostname, parsed.port), timeout=60)
    sock.sendall(head)
    return sock


def _outbound_path() -> str:
    return "/outbound/" + SLASHED_TOKEN


def test_slow_clients_do_not_stop_health_checks_or_outbound_messages(deployment, tmp_path):
    web = _web(deployment, tmp_path)
    try:
        # ten clients announce a body and send nothing; two more stop in the middle of their headers
        silent = [_open(web.url, f"POST {_outbound_path()} HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\n"
                                 "Content-Length: 100000\r\n\r\n".encode()) for _ in range(10)]
        silent += [_open(web.url, b"POST /outbound/x HTTP/1.1\r\nHost: x\r\nContent-Le") for _ in range(2)]
        time.sleep(0.5)                      # let them take the threads
        for _ in range(3):                   # bounded: each answer is awaited for 30 s at most
            assert requests.get(f"{web.url}/healthz", timeout=30).status_code == 200
        body = envelope(ORG_ID, "Account", [{"Id": "001000000000001AAA"}])
        r = requests.post(f"{web.url}{_outbound_path()}", data=body, headers={"Content-Type": "text/xml"},
                          timeout=30)
        assert r.status_code == 200 and b"<Ack>true</Ack>" in r.content
        # the silent ones were answered 408 (a SOAP fault) or dropped, not kept
        for sock in silent[:10]:
            answer = sock.recv(4096)
            assert answer == b"" or answer.startswith(b"HTTP/1.1 408"), answer[:200]
            sock.close()
        # the two that stopped mid-headers are closed by the header timeout: one line each, no traceback
        wait_for(lambda: web.text().count("too slow sending its request headers") >= 2, timeout=60,
                 what="the header timeouts", logs=(web,))
        for sock in silent[10:]:
            assert sock.recv(4096) == b""
            sock.close()
    finally:
        web.stop()
    log = web.text()
    assert "Traceback" not in log
    assert SLASHED_TOKEN not in log and urllib.parse.quote(SLASHED_TOKEN, safe="") not in log


def test_a_malformed_chunked_body_is_a_soap_fault_and_the_log_keeps_the_token(deployment, tmp_path):
    web = _web(deployment, tmp_path)
    try:
        sock = _open(web.url, f"POST {_outbound_path()} HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\n"
                              "Transfer-Encoding: chunked\r\n\r\nzz-not-a-size\r\n<a/>\r\n0\r\n\r\n".encode())
        answer = b""
        while b"</soapenv:Envelope>" not in answer:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
        sock.close()
        status = answer.split(b"\r\n", 1)[0]
        assert status.startswith(b"HTTP/1.1 400"), answer[:300]
        assert b"text/xml" in answer and b"Fault" in answer
        # a referer and an escaped path carry the token as well
        r = requests.post(f"{web.url}/outbound/{urllib.parse.quote(SLASHED_TOKEN, safe='')}", data=b"<x/>",
                          headers={"Content-Type": "text/xml", "Referer": f"{web.url}{_outbound_path()}"}, timeout=30)
        assert r.status_code in (400, 404)
        wait_for(lambda: web.text().count("/outbound/[redacted]") >= 2, what="the access log lines", logs=(web,))
    finally:
        web.stop()
    log = web.text()
    for part in (SLASHED_TOKEN, urllib.parse.quote(SLASHED_TOKEN, safe=""), *SLASHED_TOKEN.split("/")[1:]):
        assert part not in log, part
