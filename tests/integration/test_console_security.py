"""The console's gate: nothing without signing in, no state change without the CSRF token, safe headers."""
from __future__ import annotations

import re
from dataclasses import replace

import pytest

from tests.conftest import API_TOKEN
from tests.support.console import (BASE, PASSWORD, browser_client, console_app, csrf_of,  # noqa: F401
                                   login_token, sign_in)


OWN_AUTH = {"outbound.receive", "health.healthz", "auth.login", "static", "assets.vendor",
            "api.openapi.openapi"}   # the API's description is public: it holds no data


def console_rules(app):
    for rule in app.url_map.iter_rules():
        if rule.endpoint in OWN_AUTH:
            continue
        path = re.sub(r"<(?:int:)?[^>]+>", lambda m: "1" if "int:" in m.group(0) else "x", rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            yield rule.endpoint, method, path


def test_every_page_and_api_route_is_refused_without_signing_in(console_app, browser_client):
    checked = 0
    for endpoint, method, path in console_rules(console_app):
        response = browser_client.open(path, method=method, base_url=BASE)
        checked += 1
        if method == "GET" and not path.startswith(("/api/", "/metrics")):
            assert response.status_code == 302 and "/login" in response.location, (endpoint, response.status_code)
        else:
            assert response.status_code in (401, 403), (endpoint, method, response.status_code)
    assert checked > 25


def test_a_wrong_password_is_refused_and_the_password_is_kept_only_hashed(console_app, browser_client):
    assert sign_in(browser_client, "wrong").status_code == 401
    assert browser_client.get("/", base_url=BASE).status_code == 302
    stored = console_app.config["ADMIN_PASSWORD_HASH"]
    assert PASSWORD not in stored and stored.startswith(("scrypt:", "pbkdf2:"))


def test_signing_in_sets_a_secure_http_only_cookie_and_signing_out_ends_the_session(browser_client):
    response = sign_in(browser_client)
    assert response.status_code == 302
    cookie = next(c for c in response.headers.getlist("Set-Cookie") if c.startswith("fb_session="))
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert browser_client.get("/mappings", base_url=BASE).status_code == 200
    stolen = cookie.split(";")[0].split("=", 1)[1]
    browser_client.post("/logout", base_url=BASE, data={"csrf_token": csrf_of(browser_client)})
    # The old cookie value is dead on the server, not just deleted in this browser.
    browser_client.set_cookie("fb_session", stolen, domain="localhost")
    assert browser_client.get("/mappings", base_url=BASE).status_code == 302


def test_a_form_posted_without_the_csrf_token_is_refused(console_app, browser_client):
    sign_in(browser_client)
    token = csrf_of(browser_client)
    form = {"object_name": "Account", "typed_fields": "Name:string:80"}
    assert browser_client.post("/mappings", base_url=BASE, data=form).status_code == 403
    assert browser_client.post("/mappings", base_url=BASE, data={**form, "csrf_token": "forged"}).status_code == 403
    # HTMX sends it as a header; another site's page cannot, even with the token.
    assert browser_client.post("/mappings", base_url=BASE, data=form,
                               headers={"X-CSRF-Token": token, "Origin": "https://evil.example"}).status_code == 403
    assert console_app.extensions["forcebridge"].db.fetchall("list_mappings") == []
    assert browser_client.post("/mappings", base_url=BASE, data=form, headers={"X-CSRF-Token": token}).status_code == 303


def test_the_sign_in_form_needs_its_token_too(browser_client):
    response = browser_client.post("/login", base_url=BASE, data={"password": PASSWORD})
    assert response.status_code == 403
    assert "fb_session" not in " ".join(response.headers.getlist("Set-Cookie"))


def test_pages_carry_security_headers(browser_client):
    response = browser_client.get("/login", base_url=BASE)
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "Strict-Transport-Security" in response.headers


def test_outbound_endpoint_and_bearer_api_stay_outside_sessions_and_csrf(browser_client):
    assert browser_client.get("/api/v1/mappings", headers={"Authorization": f"Bearer {API_TOKEN}"}).status_code == 200
    created = browser_client.post("/api/v1/mappings", headers={"Authorization": f"Bearer {API_TOKEN}"}, json={
        "object_name": "Account", "config": {"fields": {"Name": {"type": "string", "length": 80}}}})
    assert created.status_code == 201
    metrics = browser_client.get("/metrics", headers={"Authorization": f"Bearer {API_TOKEN}"})
    assert metrics.status_code == 200 and b"forcebridge_backlog" in metrics.data


@pytest.mark.parametrize("target", ["//evil.example/x", "/\t/evil.example", "/\n/evil.example", "/\\evil.example",
                                    "https://evil.example", " /x", "/x\r\nSet-Cookie: a=b"])
def test_sign_in_sends_you_back_only_to_a_page_of_this_site(browser_client, target):
    # browsers drop tabs and newlines from a URL, so "/\t/evil.example" is "//evil.example" to them
    token = login_token(browser_client)
    response = browser_client.post("/login", base_url=BASE, data={
        "csrf_token": token, "password": PASSWORD, "next": target})
    assert response.location == "/"


def test_sign_in_sends_you_back_to_the_page_you_asked_for(browser_client):
    token = login_token(browser_client)
    response = browser_client.post("/login", base_url=BASE, data={
        "csrf_token": token, "password": PASSWORD, "next": "/mappings?x=1"})
    assert response.location == "/mappings?x=1"


class Clock:
    """The sign-in throttle's clock, moved by the test (never the wall clock)."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def frozen(app) -> Clock:
    clock = Clock()
    app.extensions["forcebridge_sign_ins"].clock = clock
    return clock


@pytest.fixture
def clock(console_app):
    return frozen(console_app)


def test_ten_wrong_passwords_make_the_next_try_wait_even_with_the_right_one(browser_client, clock):
    for _ in range(10):
        assert sign_in(browser_client, "guess").status_code == 401
    refused = sign_in(browser_client)
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
    assert browser_client.get("/", base_url=BASE).status_code == 302


def test_the_wait_is_a_delay_not_a_wall_the_right_password_works_after_it(browser_client, clock):
    for _ in range(30):
        clock.now += 60
        assert sign_in(browser_client, "guess").status_code == 401
    refused = sign_in(browser_client)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) <= 60
    clock.now += int(refused.headers["Retry-After"])
    assert sign_in(browser_client).status_code == 302
    assert browser_client.get("/mappings", base_url=BASE).status_code == 200


def wrong_password_from(client, address: str):
    token = login_token(client)
    return client.post("/login", base_url=BASE, headers={"X-Forwarded-For": address},
                       data={"csrf_token": token, "password": "guess"})


def right_password_from(client, address: str):
    token = login_token(client)
    return client.post("/login", base_url=BASE, headers={"X-Forwarded-For": address},
                       data={"csrf_token": token, "password": PASSWORD})


@pytest.fixture
def behind_proxy_app(settings, enqueued):
    from webapp import create_app

    application = create_app(replace(settings, admin_password=PASSWORD, proxy_fix_hops=1), enqueue=enqueued)
    frozen(application)
    yield application
    application.extensions["forcebridge"].db.close()


@pytest.fixture
def behind_proxy_client(behind_proxy_app):
    return behind_proxy_app.test_client()


def test_behind_a_proxy_a_guesser_cannot_lock_the_admin_out(behind_proxy_client):
    # every request reaches the app from the proxy's address; the throttle must count the real client
    for _ in range(10):
        assert wrong_password_from(behind_proxy_client, "203.0.113.9").status_code == 401
    assert wrong_password_from(behind_proxy_client, "203.0.113.9").status_code == 429
    assert right_password_from(behind_proxy_client, "198.51.100.7").status_code == 302


def test_without_a_proxy_a_forged_forwarded_for_does_not_dodge_the_throttle(browser_client, clock):
    for i in range(10):
        assert wrong_password_from(browser_client, f"203.0.113.{i}").status_code == 401
    assert sign_in(browser_client).status_code == 429


def test_an_ipv6_guesser_rotating_addresses_in_its_64_is_one_client(behind_proxy_client):
    for i in range(10):
        assert wrong_password_from(behind_proxy_client, f"2001:db8:7:7::{i + 1:x}").status_code == 401
    assert wrong_password_from(behind_proxy_client, "2001:db8:7:7:abcd::1").status_code == 429


def test_guessing_from_many_networks_meets_the_global_ceiling_but_the_admins_browser_gets_in(behind_proxy_app):
    admin = behind_proxy_app.test_client()
    assert right_password_from(admin, "198.51.100.7").status_code == 302     # the browser is known from now on
    guesser = behind_proxy_app.test_client()
    for i in range(50):
        assert wrong_password_from(guesser, f"2001:db8:{i:x}::1").status_code == 401
    assert wrong_password_from(guesser, "2001:db8:ffff::1").status_code == 429
    # a first-time browser waits its turn like everyone; the admin's own browser does not wait at all
    assert right_password_from(behind_proxy_app.test_client(), "192.0.2.44").status_code == 429
    assert right_password_from(admin, "192.0.2.45").status_code == 302


def test_the_admins_browser_gets_in_while_a_guesser_behind_the_same_address_waits(console_app, clock):
    admin = console_app.test_client()
    assert sign_in(admin).status_code == 302
    guesser = console_app.test_client()
    for _ in range(15):
        clock.now += 60
        assert sign_in(guesser, "guess").status_code == 401
    assert sign_in(guesser, "guess").status_code == 429
    assert sign_in(admin).status_code == 302
    # a forged device cookie is just a stranger's
    forger = console_app.test_client()
    forger.set_cookie("fb_device", "abc.def", domain="localhost", path="/login")
    assert sign_in(forger).status_code == 429


# -- sessions ---------------------------------------------------------------------------------------------------

def session_cookie(client) -> str:
    return client.get_cookie("fb_session", domain="localhost").value


def test_a_new_admin_password_ends_every_session_a_restart_does_not(settings, enqueued):
    from tests.conftest import testing_app

    with testing_app(replace(settings, admin_password="the-old-password"), enqueued) as before:
        browser = before.test_client()
        assert sign_in(browser, "the-old-password").status_code == 302
        cookie = session_cookie(browser)
    with testing_app(replace(settings, admin_password="the-old-password"), enqueued) as restarted:
        browser = restarted.test_client()
        browser.set_cookie("fb_session", cookie, domain="localhost")
        assert browser.get("/mappings", base_url=BASE).status_code == 200
    with testing_app(replace(settings, admin_password="a-new-password"), enqueued) as changed:
        browser = changed.test_client()
        browser.set_cookie("fb_session", cookie, domain="localhost")
        assert browser.get("/mappings", base_url=BASE).status_code == 302
        assert browser.get("/overview/status", base_url=BASE, headers={"HX-Request": "true"}).status_code == 401


def test_a_session_ends_at_its_absolute_lifetime_however_busy(console_app, browser_client):
    response = sign_in(browser_client)
    cookie = next(c for c in response.headers.getlist("Set-Cookie") if c.startswith("fb_session="))
    assert "Max-Age=43200" in cookie                   # SESSION_MAX_HOURS, 12 by default
    db = console_app.extensions["forcebridge"].db
    with db.transaction() as conn:                     # signed in almost 12 hours ago, busy ever since
        conn.execute("UPDATE forcebridge.console_sessions SET created_at = now() - interval '11 hours 59 minutes'")
    assert browser_client.get("/mappings", base_url=BASE).status_code == 200
    with db.transaction() as conn:
        row = conn.execute("SELECT expires_at <= created_at + interval '12 hours' AS capped "
                           "FROM forcebridge.console_sessions").fetchone()
        assert row["capped"]                           # the sliding expiry stops at the absolute one
        conn.execute("UPDATE forcebridge.console_sessions SET created_at = now() - interval '12 hours 1 minute', "
                     "expires_at = now() + interval '1 hour'")
    assert browser_client.get("/mappings", base_url=BASE).status_code == 302


def test_an_idle_session_ends_after_the_idle_timeout(console_app, browser_client):
    sign_in(browser_client)
    db = console_app.extensions["forcebridge"].db
    assert browser_client.get("/mappings", base_url=BASE).status_code == 200
    with db.transaction() as conn:
        row = conn.execute("SELECT expires_at - last_seen_at AS idle FROM forcebridge.console_sessions").fetchone()
        assert row["idle"].total_seconds() == pytest.approx(120 * 60, abs=5)   # SESSION_IDLE_MINUTES
        conn.execute("UPDATE forcebridge.console_sessions SET expires_at = now() - interval '1 second'")
    assert browser_client.get("/mappings", base_url=BASE).status_code == 302


# -- the setup page's test message, forwarded headers ---------------------------------------------------------

class _Posted:
    def __init__(self):
        self.urls = []

    def __call__(self, url, **kwargs):
        self.urls.append(url)
        raise __import__("requests").ConnectionError("not in this test")


def test_the_test_message_goes_to_public_url_never_to_the_host_a_request_names(console_app, browser_client,
                                                                               monkeypatch):
    from webapp import setup

    posted = _Posted()
    monkeypatch.setattr(setup.requests, "post", posted)
    sign_in(browser_client)
    token = csrf_of(browser_client)
    # the request names another host (a rebinding DNS name, a forged Host or X-Forwarded-Host)
    browser_client.set_cookie("fb_session", session_cookie(browser_client), domain="evil.example")
    evil = "https://evil.example"
    forged = {"X-Forwarded-Host": "evil.example", "X-CSRF-Token": token}
    refused = browser_client.post("/setup/test-message", base_url=evil, headers=forged)
    assert refused.status_code == 200 and "PUBLIC_URL is not set" in refused.text
    assert posted.urls == []
    context = console_app.extensions["forcebridge"]
    context.settings = replace(context.settings, public_url="https://connector.example.com")
    browser_client.post("/setup/test-message", base_url=evil, headers=forged)
    assert posted.urls == [f"https://connector.example.com/outbound/{context.settings.outbound_token}"]
    page = browser_client.get("/setup", base_url=evil)
    assert "https://connector.example.com/outbound/" in page.text and "evil.example/outbound" not in page.text


def test_gunicorn_trusts_no_forwarded_header_the_app_reads_them_per_proxy_fix_hops():
    import pathlib
    import runpy

    conf = runpy.run_path(str(pathlib.Path(__file__).parents[2] / "gunicorn.conf.py"))
    assert conf["forwarded_allow_ips"] == "" and conf["forwarder_headers"] == ""
