"""Real receivers on this machine for alert tests: an HTTP server that keeps every JSON body posted to it,
and an SMTP server (aiosmtpd) that requires STARTTLS and a login, keeping every message."""
from __future__ import annotations

import contextlib
import email
import json
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import trustme


class HttpReceiver:
    def __init__(self):
        self.bodies: list[tuple[str, dict]] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                receiver.bodies.append((self.path, json.loads(self.rfile.read(length) or b"null")))
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def posted(self, path: str) -> list[dict]:
        return [body for p, body in self.bodies if p == path]

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SmtpReceiver:
    """STARTTLS required, AUTH only after it, one user; `messages` are email.message.Message objects."""

    def __init__(self, tmp_path, user: str = "alerts", password: str = "s3cret"):
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult

        self.user, self.password = user, password
        self.messages: list = []
        self.logins: list[str] = []
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        self.ca_path = tmp_path / "smtp-ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_path))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cert.configure_cert(context)
        receiver = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                receiver.messages.append(email.message_from_bytes(envelope.content))
                return "250 OK"

        def authenticate(server, session, envelope, mechanism, auth_data):
            ok = auth_data.login.decode() == user and auth_data.password.decode() == password
            if ok:
                receiver.logins.append(auth_data.login.decode())
            return AuthResult(success=ok)

        self.port = _free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port, tls_context=context,
                                     require_starttls=True, authenticator=authenticate, auth_require_tls=True)

    def __enter__(self):
        self.controller.start()
        return self

    def __exit__(self, *exc):
        with contextlib.suppress(Exception):
            self.controller.stop()
