"""The HTTP(S) server: gunicorn, one process with many threads (gthread), keep-alive so clients reuse TLS.

One worker process only: the org's SQLite writer, query cursors and the outbound sender live in it.
Werkzeug's server was not enough: it closes every connection, so each call paid a TLS handshake.
"""
import sys
from typing import Callable

from gunicorn.app.base import BaseApplication
from gunicorn.http import wsgi

THREADS = 32
KEEPALIVE_SECONDS = 75


class _AppDateResponse(wsgi.Response):
    """gunicorn drops an app's Date header and writes its own from the machine's clock; the emulator's Date comes
    from the org's clock (emulator.rest.add_date: tests advance it), so that one is sent instead."""

    app_date: str | None = None

    def process_headers(self, headers):
        dates = [value for name, value in headers if isinstance(name, str) and name.lower() == "date"]
        if dates:
            self.app_date = dates[-1]
        super().process_headers(headers)

    def default_headers(self):
        lines = super().default_headers()
        if self.app_date:
            lines = [f"Date: {self.app_date}\r\n" if line.startswith("Date: ") else line for line in lines]
        return lines


class EmulatorServer(BaseApplication):
    """Runs `app_factory()` inside the single worker; `on_ready(port)` is called once the socket listens."""

    def __init__(self, app_factory: Callable, *, host: str, port: int, on_ready: Callable[[int], None],
                 on_exit: Callable[[], None], certfile: str | None = None, verbose: bool = False):
        self.app_factory = app_factory
        self.on_exit = on_exit
        self.options = {
            "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
            "workers": 1, "worker_class": "gthread", "threads": THREADS, "keepalive": KEEPALIVE_SECONDS,
            "timeout": 0, "graceful_timeout": 2, "limit_request_line": 0, "backlog": 512,
            "accesslog": "-" if verbose else None, "errorlog": "-", "loglevel": "info" if verbose else "warning",
            "proc_name": "forcebridge-emulator",
            "when_ready": lambda arbiter: on_ready(arbiter.LISTENERS[0].sock.getsockname()[1]),
            "worker_exit": lambda arbiter, worker: self.on_exit(),
        }
        if certfile:
            self.options.update(certfile=certfile, keyfile=certfile)
        super().__init__()

    def load_config(self):
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        wsgi.Response = _AppDateResponse      # in the worker process only: gunicorn's wsgi.create builds this
        return self.app_factory()


def serve(app_factory: Callable, **kwargs) -> None:
    sys.argv = sys.argv[:1]       # gunicorn parses argv; ours are not its options
    EmulatorServer(app_factory, **kwargs).run()
