"""Sign-in and sign-out of the console, with the one password ADMIN_PASSWORD (kept only as a hash)."""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import secrets
import threading
import time
from collections import defaultdict, deque

from flask import Blueprint, abort, current_app, make_response, redirect, render_template, request, url_for
from werkzeug.security import check_password_hash, generate_password_hash

from webapp import security

bp = Blueprint("auth", __name__)
LOGIN_CSRF_COOKIE = "fb_login_csrf"
DEVICE_COOKIE = "fb_device"
DEVICE_DAYS = 90
WINDOW = 15 * 60           # wrong passwords are remembered this many seconds
ADDRESS_FREE = 10          # per address (IPv6: per /64) before its tries are spaced out ...
MAX_ADDRESS_DELAY = 60     # ... 1, 2, 4 ... seconds apart, never more than this
GLOBAL_FREE = 50           # from everyone together before every stranger's try is spaced out ...
MAX_GLOBAL_DELAY = 10      # ... by (wrong passwords in the window / GLOBAL_FREE) seconds, at most this
DEVICE_FREE = 10           # a known browser's own wrong passwords before it counts as a stranger


def client_key(address: str) -> str:
    """IPv6 clients own whole /64 networks: counting single addresses would give them 2**64 tries."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class SignInThrottle:
    """Wrong passwords in the last WINDOW seconds, per address, per known browser and in total (per process:
    a guesser spread over several processes gets a few more tries, never unlimited ones). The answer is a
    delay, never a wall: `wait()` says how many seconds must pass before a try is checked at all. A browser
    that signed in before (its device cookie) skips the address and global delays, so a guesser elsewhere,
    or one behind the same address, cannot keep the admin out; it has its own DEVICE_FREE allowance."""

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self._lock = threading.Lock()
        self._by_key: dict[str, deque] = defaultdict(deque)
        self._all: deque = deque()

    def _recent(self, seen: deque, now: float) -> deque:
        while seen and seen[0] <= now - WINDOW:
            seen.popleft()
        return seen

    def _seen(self, key: str) -> deque:
        return self._by_key.get(key) or deque()   # asking must not add an entry per address

    def wait(self, address: str, device: str | None = None) -> float:
        now = self.clock()
        with self._lock:
            if device is not None and len(self._recent(self._seen(f"device:{device}"), now)) < DEVICE_FREE:
                return 0.0
            waits = [0.0]
            mine = self._recent(self._seen(client_key(address)), now)
            if len(mine) >= ADDRESS_FREE:
                waits.append(mine[-1] + min(2 ** (len(mine) - ADDRESS_FREE), MAX_ADDRESS_DELAY) - now)
            everyone = self._recent(self._all, now)
            if len(everyone) >= GLOBAL_FREE:
                waits.append(everyone[-1] + min(len(everyone) / GLOBAL_FREE, MAX_GLOBAL_DELAY) - now)
            return max(waits)

    def failed(self, address: str, device: str | None = None) -> None:
        now = self.clock()
        with self._lock:
            self._by_key[client_key(address)].append(now)
            if device is not None:
                self._by_key[f"device:{device}"].append(now)
            self._all.append(now)
            if len(self._by_key) > 10_000:   # many addresses with old failures: forget the stale ones
                for key in [k for k, seen in self._by_key.items() if not self._recent(seen, now)]:
                    del self._by_key[key]


def _device_mac(nonce: str) -> str:
    key = current_app.config["SESSION_BINDING"].encode()
    return hmac.new(key, f"device:{nonce}".encode(), hashlib.sha256).hexdigest()


def _known_device() -> str | None:
    """The nonce of this browser's device cookie when it is ours and from the current password."""
    nonce, _, mac = request.cookies.get(DEVICE_COOKIE, "").partition(".")
    if nonce and mac and hmac.compare_digest(mac.encode(), _device_mac(nonce).encode()):
        return nonce
    return None


def _remember_device(response, nonce: str | None) -> None:
    nonce = nonce or secrets.token_urlsafe(16)
    response.set_cookie(DEVICE_COOKIE, f"{nonce}.{_device_mac(nonce)}", max_age=DEVICE_DAYS * 86_400,
                        secure=True, httponly=True, samesite="Strict", path="/login")


def init_app(app, admin_password: str, secret_key: str = "") -> None:
    """Hash the password once at start; the plain text is not kept by the console. Sessions are bound to a
    digest of it, so a new ADMIN_PASSWORD ends every session opened with the old one."""
    app.config["ADMIN_PASSWORD_HASH"] = generate_password_hash(admin_password) if admin_password else None
    app.config["SESSION_BINDING"] = security.password_binding(admin_password, secret_key) if admin_password else ""
    app.extensions["forcebridge_sign_ins"] = SignInThrottle()


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
        throttle = current_app.extensions["forcebridge_sign_ins"]
        device = _known_device() if password_hash else None
        wait = throttle.wait(address, device)
        if wait > 0:
            # The password is not even checked: a guesser learns nothing by trying early.
            retry_after = max(1, math.ceil(wait))
            error, status = f"Too many wrong passwords. Try again in {retry_after} seconds.", 429
        elif password_hash and check_password_hash(password_hash, request.form.get("password", "")):
            response = redirect(_safe_next(request.form.get("next")))
            security.start_session(response)
            _remember_device(response, device)
            response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
            return response
        else:
            throttle.failed(address, device)
            error, status = "Wrong password.", 401
    # Reuse the cookie's token: another tab (or the browser's favicon fetch) must not void an open form.
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(32)
    response = make_response(render_template(
        "auth/login.html", login_token=token, error=error, enabled=bool(password_hash),
        next=request.values.get("next", "")), status)
    response.set_cookie(LOGIN_CSRF_COOKIE, token, secure=True, httponly=True, samesite="Strict", path="/login")
    if status == 429:
        response.headers["Retry-After"] = str(retry_after)
    return response


@bp.post("/logout")
def logout():
    response = redirect(url_for("auth.login"))
    security.end_session(response)
    return response
