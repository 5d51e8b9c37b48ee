"""/api/v1 is one blueprint tree behind one gate: every route refuses a request without the bearer token,
whatever blueprint it was written in, and paths no route takes are the gate's too."""
from __future__ import annotations

import re

import pytest

from tests.conftest import API_TOKEN

PUBLIC = {"api.openapi.openapi"}      # the API's description: it holds no data


def api_rules(app):
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/"):
            path = re.sub(r"<(?:int:)?[^>]+>", lambda m: "1" if "int:" in m.group(0) else "x", rule.rule)
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                yield rule.endpoint, method, path


def test_every_api_route_belongs_to_the_tree_and_refuses_without_the_token(app, client):
    checked = 0
    for endpoint, method, path in api_rules(app):
        assert endpoint.startswith("api."), f"{endpoint} is under /api/ but not in webapp/api.py's tree"
        if endpoint in PUBLIC:
            continue
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": API_TOKEN}):
            response = client.open(path, method=method, headers=headers)
            assert response.status_code == 401, (endpoint, method, headers, response.status_code)
            assert response.get_json()["error"] == "unauthorized"
        checked += 1
    assert checked >= 20


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
def test_a_path_no_route_takes_is_refused_before_it_is_found_missing(client, method):
    assert client.open("/api/v1/no-such-thing", method=method).status_code == 401
    found = client.open("/api/v1/no-such-thing", method=method, headers={"Authorization": f"Bearer {API_TOKEN}"})
    assert found.status_code == 404 and found.get_json()["error"] == "not_found"


def test_a_method_no_route_takes_is_a_json_405_with_the_token(client):
    r = client.put("/api/v1/mappings", headers={"Authorization": f"Bearer {API_TOKEN}"})
    assert r.status_code == 405 and r.get_json()["error"] == "method_not_allowed" and "GET" in r.headers["Allow"]
    assert client.put("/api/v1/mappings").status_code == 401


def test_without_an_api_token_configured_nothing_gets_in(settings, enqueued):
    from dataclasses import replace

    from tests.conftest import testing_app

    with testing_app(replace(settings, api_token=""), enqueued) as app:
        assert app.test_client().get("/api/v1/mappings", headers={"Authorization": "Bearer "}).status_code == 401
