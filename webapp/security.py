"""The console's gate: server-side sessions, CSRF on every unsafe request, security headers."""
from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import urlsplit

from flask import Flask, abort, current_app, g, jsonify, redirect, render_template, request, url_for

from webapp import api
from webapp.context import ctx

SESSION_COOKIE = "fb_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
# These look after themselves: Salesforce posts Outbound Messages with a URL token, /metrics takes a bearer
# token, health checks are anonymous, and the sign-in page is how one gets a session at all. The /api/v1
# tree (webapp/api.py) has its own gate, found by blueprint, not by path. tests/integration/
# test_console_security.py walks every route to prove it.
PUBLIC_ENDPOINTS = {"outbound.receive", "health.healthz", "auth.login", "static", "assets.vendor", "metrics.metrics"}
BEARER_PREFIX = "/api/"      # how refusals are answered (JSON); never what is let through
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'")


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def password_binding(password: str, secret_key: str) -> str:
    """What ties a session to the password it was opened with: a slow, SECRET_KEY-salted digest (the table
    must not hand out a cheap way to test guesses). Computed once per process."""
    salt = b"forcebridge console session\0" + secret_key.encode()
    return hashlib.pbkdf2_hmac("sha256", password.encode(), salt, 100_000).hex()


def _lifetimes() -> dict:
    s = ctx().settings
    return {"idle_seconds": max(60, s.session_idle_minutes * 60), "max_seconds": max(300, s.session_max_hours * 3600),
            "binding": current_app.config["SESSION_BINDING"]}


def start_session(response) -> None:
    """A fresh session after a good password (never reuse one from before sign-in)."""
    token = secrets.token_urlsafe(32)
    lifetimes = _lifetimes()
    # sign-ins are rare; a good moment to drop dead sessions (and those of an earlier password)
    ctx().db.execute("purge_console_sessions", lifetimes)
    ctx().db.execute("create_console_session", {"token_hash": _hash(token), "csrf_token": secrets.token_urlsafe(32),
                                                **lifetimes})
    response.set_cookie(SESSION_COOKIE, token, max_age=lifetimes["max_seconds"], secure=True, httponly=True,
                        samesite="Lax", path="/")


def end_session(response) -> None:
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        ctx().db.execute("delete_console_session", {"token_hash": _hash(token)})
    response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="Lax")


def signed_in() -> bool:
    """Looks the cookie up (and slides its expiry, never past the absolute lifetime); sets g.csrf_token for
    templates. A session opened under another ADMIN_PASSWORD is not found."""
    if "csrf_token" in g:
        return g.csrf_token is not None
    token = request.cookies.get(SESSION_COOKIE)
    row = ctx().db.fetchone("touch_console_session", {"token_hash": _hash(token), **_lifetimes()}) \
        if token else None
    g.csrf_token = row["csrf_token"] if row else None
    return g.csrf_token is not None


def csrf_ok(expected: str | None) -> bool:
    given = request.headers.get(CSRF_HEADER) or request.form.get(CSRF_FIELD) or ""
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


def _same_origin() -> bool:
    """Browsers send Origin on POSTs; one from another site is refused even with a valid token."""
    origin = request.headers.get("Origin")
    # Host only: behind a TLS-terminating proxy the scheme we see differs from the browser's.
    return origin is None or urlsplit(origin).netloc == request.host


def _guard():
    endpoint = request.endpoint or ""
    if endpoint in PUBLIC_ENDPOINTS or api.is_api_request():
        return None                        # its own gate decides
    if request.routing_exception is not None and request.path.startswith(BEARER_PREFIX):
        # No route: nothing to protect, but the API's gate still answers first (then a JSON 404 or 405).
        return api.require_token()
    if not signed_in():
        if request.method in SAFE_METHODS and not request.headers.get("HX-Request"):
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        abort(401)
    if request.method not in SAFE_METHODS and (not _same_origin() or not csrf_ok(g.csrf_token)):
        abort(403, description="The form expired or did not come from this site (CSRF check). Reload the page.")
    return None


def _headers(response):
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
    if request.is_secure:
        response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    if request.endpoint not in ("static", "assets.vendor"):
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def init_app(app: Flask) -> None:
    app.before_request(_guard)
    app.after_request(_headers)
    app.register_error_handler(401, _refused)
    app.register_error_handler(403, _refused)
    app.register_error_handler(404, _refused)
    app.register_error_handler(409, _refused)

    @app.context_processor
    def csrf():
        return {"csrf_token": g.get("csrf_token"), "csrf_field": CSRF_FIELD, "csrf_header": CSRF_HEADER}


def _refused(exc):
    """401/403 as a page for browsers; HTMX gets sent to the sign-in page when the session ended."""
    if request.path.startswith(BEARER_PREFIX):
        return jsonify(error={401: "unauthorized", 403: "forbidden"}.get(exc.code, "not_found"),
                       message=exc.description), exc.code
    if exc.code == 401 and request.headers.get("HX-Request"):
        return "", 401, {"HX-Redirect": url_for("auth.login")}
    if request.headers.get("HX-Request"):
        # HTMX swaps nothing on an error; static/console.js shows this fragment above the page instead.
        return render_template("_refused.html", code=exc.code, message=exc.description), exc.code
    return render_template("error.html", code=exc.code, message=exc.description), exc.code
