"""Sign-in and sign-out of the console, with the one password ADMIN_PASSWORD (kept only as a hash)."""
from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import defaultdict, deque

from flask import Blueprint, abort, current_app, make_response, redirect, render_template, request, url_for
from werkzeug.security import check_password_hash, generate_password_hash

from webapp import security

bp = Blueprint("auth", __name__)
LOGIN_CSRF_COOKIE = "fb_login_csrf"
MAX_FAILURES = 10          # per client address ...
FAILURE_WINDOW = 15 * 60   # ... in this many seconds, then wait


class FailedSignIns:
    """Wrong passwords per address in the last FAILURE_WINDOW seconds (per process: a guesser spread over
    several processes gets a few more tries, never unlimited ones)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._seen: dict[str, deque] = defaultdict(deque)

    def throttled(self, address: str) -> bool:
        now = time.monotonic()
        with self._lock:
            seen = self._seen[address]
            while seen and seen[0] < now - FAILURE_WINDOW:
                seen.popleft()
            return len(seen) >= MAX_FAILURES

    def note(self, address: str) -> None:
        with self._lock:
            self._seen[address].append(time.monotonic())


def init_app(app, admin_password: str) -> None:
    """Hash the password once at start; the plain text is not kept by the console."""
    app.config["ADMIN_PASSWORD_HASH"] = generate_password_hash(admin_password) if admin_password else None
    app.extensions["forcebridge_sign_ins"] = FailedSignIns()


def _safe_next(target: str | None) -> str:
    # Only paths on this site: an open redirect would make the sign-in page a phishing tool. Browsers drop
    # tabs and newlines from a URL ("/\t/evil.example" is "//evil.example"), so no whitespace or control
    # character at all.
    if (target and target.startswith("/") and not target.startswith("//") and "\\" not in target
            and not any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7f for c in target)):
        return target
    return url_for("dashboard.overview")


@bp.route("/login", methods=["GET", "POST"])
def login():
    password_hash = current_app.config.get("ADMIN_PASSWORD_HASH")
    error, status = None, 200
    if request.method == "POST":
        # Double-submit token: no session exists yet, so the cookie carries the expected value.
        expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
        given = request.form.get(security.CSRF_FIELD, "")
        if not expected or not hmac.compare_digest(expected.encode(), given.encode()):
            abort(403, description="The sign-in form expired. Reload the page and try again.")
        address = request.remote_addr or "?"
        failures = current_app.extensions["forcebridge_sign_ins"]
        if failures.throttled(address):
            error, status = "Too many wrong passwords. Wait a few minutes and try again.", 429
        elif password_hash and check_password_hash(password_hash, request.form.get("password", "")):
            response = redirect(_safe_next(request.form.get("next")))
            security.start_session(response)
            response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
            return response
        else:
            failures.note(address)
            error, status = "Wrong password.", 401
    # Reuse the cookie's token: another tab (or the browser's favicon fetch) must not void an open form.
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(32)
    response = make_response(render_template(
        "auth/login.html", login_token=token, error=error, enabled=bool(password_hash),
        next=request.values.get("next", "")), status)
    response.set_cookie(LOGIN_CSRF_COOKIE, token, secure=True, httponly=True, samesite="Strict", path="/login")
    return response


@bp.post("/logout")
def logout():
    response = redirect(url_for("auth.login"))
    security.end_session(response)
    return response
