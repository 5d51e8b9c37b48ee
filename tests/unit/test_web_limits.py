"""Log redaction of the Outbound Message token and the request-body deadline, without a server."""
from __future__ import annotations

import io
import logging
import socket

import pytest

from webapp.access_log import RedactingFilter, redact
from webapp.slow_clients import BodyTooSlow, _DeadlineInput

TOKEN = "Zm9y/ZWJy+aWRn/ZQ=="     # base64, as Render generates it: "/" about half the time


@pytest.mark.parametrize("line", [
    f'POST /outbound/{TOKEN} HTTP/1.1',
    f'"POST /outbound/{TOKEN}?x=1 HTTP/1.1" 200',
    f'Referer: https://sync.example.com/outbound/{TOKEN}',
    "POST /outbound/Zm9y%2FZWJy%2BaWRn%2FZQ%3D%3D HTTP/1.1",
    f"Exception on /outbound/{TOKEN} [POST]",
])
def test_the_whole_token_is_redacted_whatever_it_contains(line):
    out = redact(line, TOKEN)
    assert "/outbound/[redacted]" in out
    for part in TOKEN.split("/"):
        assert part not in out, out


def test_the_token_is_redacted_anywhere_in_a_record_and_its_traceback():
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed for %s", (f"token={TOKEN}",), None)
    try:
        raise RuntimeError(f"while reading /outbound/{TOKEN}")
    except RuntimeError:
        import sys

        record.exc_info = sys.exc_info()
    RedactingFilter(TOKEN).filter(record)
    text = logging.Formatter().format(record)
    assert "RuntimeError" in text and "ZWJy" not in text and "aWRn" not in text


def test_a_short_token_does_not_blank_out_ordinary_words():
    assert redact("GET /healthz 200 ok", "ok") == "GET /healthz 200 ok"


def test_a_body_that_stops_coming_ends_in_408_not_a_hang():
    server, client = socket.socketpair()
    try:
        client.sendall(b"<soap")
        body = _DeadlineInput(server.makefile("rb", buffering=0), server, grace=0.3, min_rate=1000)
        assert body.read(5) == b"<soap"
        with pytest.raises(BodyTooSlow):   # the socket read times out: no more bytes come
            body.read(100)
    finally:
        server.close()
        client.close()


def test_a_body_that_keeps_up_is_read_whole():
    server, client = socket.socketpair()
    try:
        client.sendall(b"x" * 100_000)
        client.shutdown(socket.SHUT_WR)
        body = _DeadlineInput(server.makefile("rb", buffering=0), server, grace=5, min_rate=1000)
        assert len(body.read()) == 100_000
    finally:
        server.close()
        client.close()


def test_without_gunicorn_the_body_passes_through():
    from webapp.slow_clients import BodyDeadline

    seen = {}

    def app(environ, start_response):
        seen["input"] = environ["wsgi.input"]
        return []

    stream = io.BytesIO(b"x")
    BodyDeadline(app, 2, 50_000)({"wsgi.input": stream}, lambda *a: None)
    assert seen["input"] is stream
