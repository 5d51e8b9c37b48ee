"""The console's gate: nothing without signing in, no state change without the CSRF token, safe headers."""
from __future__ import annotations

import re
from dataclasses import replace

import pytest

from tests.conftest import API_TOKEN
from tests.support.console import (BASE, PASSWORD, browser_client, console_app, csrf_of,  # noqa: F401
                                   login_token, sign_in)


OWN_AUTH = {"outbound.receive", "health.healthz", "auth.login", "static", "assets.vendor",
            "openapi.openapi"}   # the API's description is public: it holds no data


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


def test_ten_wrong_passwords_make_the_next_try_wait_even_with_the_right_one(browser_client):
    for _ in range(10):
        assert sign_in(browser_client, "guess").status_code == 401
    assert sign_in(browser_client).status_code == 429
    assert browser_client.get("/", base_url=BASE).status_code == 302


def wrong_password_from(client, address: str):
    token = login_token(client)
    return client.post("/login", base_url=BASE, headers={"X-Forwarded-For": address},
                       data={"csrf_token": token, "password": "guess"})


@pytest.fixture
def behind_proxy_client(settings, enqueued):
    from webapp import create_app

    application = create_app(replace(settings, admin_password=PASSWORD, proxy_fix_hops=1), enqueue=enqueued)
    yield application.test_client()
    application.extensions["forcebridge"].db.close()


def test_behind_a_proxy_a_guesser_cannot_lock_the_admin_out(behind_proxy_client):
    # every request reaches the app from the proxy's address; the throttle must count the real client
    for _ in range(10):
        assert wrong_password_from(behind_proxy_client, "203.0.113.9").status_code == 401
    assert wrong_password_from(behind_proxy_client, "203.0.113.9").status_code == 429
    token = login_token(behind_proxy_client)
    response = behind_proxy_client.post("/login", base_url=BASE, headers={"X-Forwarded-For": "198.51.100.7"},
                                        data={"csrf_token": token, "password": PASSWORD})
    assert response.status_code == 302


def test_without_a_proxy_a_forged_forwarded_for_does_not_dodge_the_throttle(browser_client):
    for i in range(10):
        assert wrong_password_from(browser_client, f"203.0.113.{i}").status_code == 401
    assert sign_in(browser_client).status_code == 429
