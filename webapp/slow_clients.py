"""Time limits on what a client sends, so that slow or silent clients cannot hold every server thread.

gunicorn's gthread worker gives a connection a thread once its first byte arrives and then reads the
headers and the body with blocking reads that never time out: ten sockets that announce a body and send
nothing held every thread, and /healthz and /outbound stopped answering. Two limits close that:
- `BoundedThreadWorker` (gunicorn.conf.py's worker class): every read of the request line and headers waits
  at most WEB_HEADER_SECONDS;
- `BodyDeadline` (WSGI middleware, webapp.create_app): the body must keep up with a minimum rate after a
  grace period: by t seconds into the body at least (t - WEB_BODY_SECONDS) * WEB_BODY_MIN_RATE bytes have
  come. A client that falls behind gets 408 and the thread is free again.
A slow client still holds a thread for those few seconds: requests queued behind N of them wait about
N / threads * WEB_BODY_SECONDS. Clients that never send a byte cost no thread (gunicorn keeps them in its
poller). A proxy that buffers whole requests in front removes the rest.
"""
from __future__ import annotations

import errno
import socket
import threading
import time

from gunicorn import util
from gunicorn.workers.gthread import TConn, ThreadWorker
from werkzeug.exceptions import RequestTimeout

# Set once per worker process from settings.py (BoundedThreadWorker.init_process).
header_seconds = 3.0
# Set in the request's thread when its body was given up on; the worker then closes the connection instead
# of draining the rest (gunicorn would wait 5 more seconds on the same silent client).
_request = threading.local()


class BodyTooSlow(RequestTimeout):
    description = "The request body did not arrive in time."


class _DeadlineInput:
    """wsgi.input whose reads wait on the socket only as long as the body's time budget allows."""

    def __init__(self, stream, sock: socket.socket, grace: float, min_rate: float):
        self._stream, self._sock = stream, sock
        self._start, self._grace, self._min_rate = time.monotonic(), grace, min_rate
        self._received = 0

    def _arm(self) -> None:
        budget = self._grace + (self._received / self._min_rate if self._min_rate else float("inf"))
        remaining = self._start + budget - time.monotonic()
        if remaining <= 0:
            raise BodyTooSlow()
        self._sock.settimeout(min(remaining, 3600.0))

    def _count(self, data):
        self._received += len(data)
        return data

    def read(self, size=-1):
        # a read of the whole body is done in pieces, so each one is held to the budget
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(64 * 1024), b""))
        return self._call(self._stream.read, size)

    def readline(self, size=-1):
        return self._call(self._stream.readline, size)

    def readlines(self, hint=-1):
        return list(iter(self.readline, b""))

    def __iter__(self):
        return iter(self.readline, b"")

    def _call(self, method, size):
        try:
            self._arm()
            return self._count(method(size))
        except (TimeoutError, socket.timeout, BodyTooSlow):
            _request.body_abandoned = True
            raise BodyTooSlow() from None


class BodyDeadline:
    """WSGI middleware: holds request bodies read under gunicorn to the time budget (see module docstring).
    Outside gunicorn (tests, `flask run`) there is no socket to bound and requests pass through."""

    def __init__(self, app, grace_seconds: float, min_bytes_per_second: float):
        self.app, self.grace, self.min_rate = app, grace_seconds, min_bytes_per_second

    def __call__(self, environ, start_response):
        sock = environ.get("gunicorn.socket")
        if sock is None or not self.grace:
            return self.app(environ, start_response)
        _request.body_abandoned = False
        environ["wsgi.input"] = _DeadlineInput(environ["wsgi.input"], sock, self.grace, self.min_rate)
        try:
            return self.app(environ, start_response)
        finally:
            # the response is written after this returns: with the blocking socket gunicorn expects
            try:
                sock.settimeout(None)
            except OSError:
                pass


class _TimedConn(TConn):
    def init(self):
        super().init()
        # gunicorn makes the socket blocking before every request on the connection and then calls init():
        # from here on each read of the request line and headers waits WEB_HEADER_SECONDS at most
        self.sock.settimeout(header_seconds)

    def close(self, graceful=False):
        if graceful:
            # gunicorn's graceful close lingers up to 2 s, on the worker's main loop, for the peer to close:
            # a client that never does stalls every other connection that long. Read what has already
            # arrived (so the kernel does not reset the connection over it) and close without waiting.
            try:
                self.sock.shutdown(socket.SHUT_WR)
                self.sock.setblocking(False)
                for _ in range(16):
                    if not self.sock.recv(4096):
                        break
            except OSError:      # BlockingIOError: nothing more has arrived
                pass
        util.close(self.sock)


class BoundedThreadWorker(ThreadWorker):
    """gunicorn's gthread worker whose connections time out while a client sends its headers, are closed
    (not drained) after a body too slow to wait for, and are closed without lingering on the main loop."""

    def init_process(self):
        global header_seconds
        from settings import Settings

        header_seconds = Settings.from_env().web_header_seconds
        super().init_process()

    def accept(self, listener):
        try:
            client_sock, client_addr = listener.accept()
            self.nr_conns += 1
            client_sock.setblocking(True)
            self.enqueue_req(_TimedConn(self.cfg, client_sock, client_addr, listener.getsockname()))
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise

    def _keepalive_after(self, conn, keepalive):
        if getattr(_request, "body_abandoned", False):
            _request.body_abandoned = False
            return False
        return super()._keepalive_after(conn, keepalive)
