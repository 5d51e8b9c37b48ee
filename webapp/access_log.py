"""Logs without the Outbound Message token: the token is the endpoint's only secret and sits in its path, and
logs travel to log drains and support tickets. gunicorn's access and error logs (RedactingLogger) and the
app's own log handlers (install_redaction) pass every line through `redact`."""
from __future__ import annotations

import logging
import os
import re
from urllib.parse import quote

from gunicorn.glogging import Logger

# Everything after /outbound/ up to whitespace, a quote or the query: a generated token is base64 and may
# hold "/", "+" and "=" (or their %-escapes in RAW_URI).
_OUTBOUND_PATH = re.compile(r"(/outbound/)[^\s?#\"'<>]+")
REDACTED = "[redacted]"


def redact(text: str, token: str = "") -> str:
    """The text with any /outbound/<token> path, and the token itself wherever it appears, redacted."""
    text = _OUTBOUND_PATH.sub(r"\1" + REDACTED, text)
    if len(token) >= 8:   # a token too short to be a secret would blank out ordinary words
        for form in {token, quote(token, safe=""), quote(token, safe="/")}:
            text = text.replace(form, REDACTED)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites a record's message (and its formatted traceback) before any handler formats it."""

    _formatter = logging.Formatter()

    def __init__(self, token: str = ""):
        super().__init__()
        self.token = token

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken format string is logged as it is, redacted
            message = str(record.msg)
        record.msg, record.args = redact(message, self.token), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self.token)
        return True


def install_redaction(token: str, logger: logging.Logger | None = None) -> None:
    """Put the filter on every handler of `logger` (the root logger by default): records propagated from
    child loggers (Flask's "Exception on <path>", ours) pass handlers, not the root logger's own filters."""
    logger = logger or logging.getLogger()
    for handler in logger.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter(token))


class _SlowHeadersFilter(logging.Filter):
    """gunicorn logs a read timeout while parsing headers (webapp/slow_clients.py) as "Socket error" with a
    traceback; under a slow-client flood that is a traceback per connection. One line says what happened."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], TimeoutError) and "Socket error" in str(record.msg):
            record.msg, record.args, record.exc_info, record.exc_text = (
                "a client was too slow sending its request headers; connection closed", (), None, None)
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


class RedactingLogger(Logger):
    def setup(self, cfg):
        super().setup(cfg)
        # gunicorn's error log names the request line of a failed request ("Error handling request POST ...")
        token = os.environ.get("OUTBOUND_TOKEN", "")
        for handler in self.error_log.handlers:
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(_SlowHeadersFilter())
                handler.addFilter(RedactingFilter(token))

    def atoms(self, resp, req, environ, request_time):
        # every atom, not only the request line: PATH_INFO, RAW_URI and the Referer can carry it too
        token = os.environ.get("OUTBOUND_TOKEN", "")
        return {key: redact(value, token) if isinstance(value, str) else value
                for key, value in super().atoms(resp, req, environ, request_time).items()}
