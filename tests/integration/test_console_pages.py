"""Console forms through the test client: what a user sees when something is refused or the console is off."""
from __future__ import annotations

import io
import json
from dataclasses import replace

import pytest

from tests.support.console import BASE, browser_client, console_app, csrf_of, sign_in  # noqa: F401


def test_without_admin_password_the_console_is_off(settings, enqueued):
    from webapp import create_app

    app = create_app(replace(settings, admin_password=""), enqueue=enqueued)
    try:
        client = app.test_client()
        page = client.get("/login", base_url=BASE)
        assert "set ADMIN_PASSWORD" in page.text
        assert client.get("/mappings", base_url=BASE).status_code == 302
    finally:
        app.extensions["forcebridge"].db.close()


def test_an_import_with_one_bad_mapping_changes_nothing(console_app, browser_client):
    sign_in(browser_client)
    doc = {"format": "forcebridge", "version": 1, "connection": {}, "mappings": [
        {"object_name": "Account", "config": {"fields": {"Name": {"type": "string", "length": 80}}}},
        {"object_name": "Contact", "config": {"fields": {"LastName": {"type": "geolocation"}}}}]}
    response = browser_client.post("/mappings/import", base_url=BASE, data={
        "csrf_token": csrf_of(browser_client),
        "config": (io.BytesIO(json.dumps(doc).encode()), "forcebridge-config.json")})
    assert response.status_code == 400
    assert "Nothing imported" in response.text and "geolocation" in response.text
    assert console_app.extensions["forcebridge"].db.fetchall("list_mappings") == []


def test_a_mapping_form_with_a_bad_field_is_shown_again_with_the_reason(console_app, browser_client):
    sign_in(browser_client)
    response = browser_client.post("/mappings", base_url=BASE, data={
        "csrf_token": csrf_of(browser_client), "object_name": "Account", "typed_fields": "Name:string:80\nId2"})
    assert response.status_code == 422
    assert "Id2: give a type" in response.text
    assert "Name:string:80" in response.text          # what was typed is kept


def test_an_unreadable_wsdl_is_refused_with_the_reason(browser_client):
    sign_in(browser_client)
    response = browser_client.post("/mappings/wsdl", base_url=BASE, data={
        "csrf_token": csrf_of(browser_client), "wsdl": (io.BytesIO(b"<definitions/>"), "x.wsdl")})
    assert response.status_code == 400 and "could not be read" in response.text


def test_a_conflict_shows_both_values_the_rule_and_the_winner(console_app, browser_client):
    sign_in(browser_client)
    db = console_app.extensions["forcebridge"].db
    with db.transaction() as conn:
        conn.execute("INSERT INTO forcebridge.mappings (object_name, table_name, direction, fields) "
                     "VALUES ('Account', 'account', 'bidirectional', '[]')")
        conn.execute("INSERT INTO forcebridge.conflicts (mapping_id, record_id, sfid, rule, winner, pg_values, sf_values) "
                     "VALUES (1, 7, '001000000000001AAA', 'salesforce_wins', 'salesforce', "
                     "'{\"phone\": \"555-0100\"}', '{\"Phone\": \"555-0199\"}')")
    page = browser_client.get("/errors", base_url=BASE).text
    assert "<title>Errors · ForceBridge</title>" in page
    section = page[page.index('id="conflicts"'):page.index('id="drift"')]
    assert "001000000000001AAA" in section and "555-0100" in section and "555-0199" in section
    assert "salesforce wins" in section and "<strong>salesforce</strong>" in section


def test_a_hostile_name_in_the_trend_chart_cannot_close_its_script(console_app):
    from flask import render_template

    hostile = "</script><script>alert(1)</script>"
    with console_app.test_request_context():
        html = render_template("trends/_chart.html", figure={"data": [{"name": hostile}]}, totals={}, series=[])
    assert "</script><script>" not in html and html.count("</script>") == 1
    figure = html.split(' id="trend-figure">', 1)[1].split("</script>", 1)[0]
    assert json.loads(figure) == {"data": [{"name": hostile}]}


@pytest.mark.parametrize("path,title", [("/", "Overview"), ("/mappings", "Mappings"), ("/trends", "Trends"),
                                        ("/errors", "Errors"), ("/setup", "Setup")])
def test_every_page_has_its_plain_title(console_app, browser_client, path, title):
    """A merge once put the Setup page's adopt section inside its <title>: the tab read as HTML source."""
    sign_in(browser_client)
    html = browser_client.get(path, base_url=BASE).get_data(as_text=True)
    assert f"<title>{title} · ForceBridge</title>" in html


def test_setup_lists_cdc_objects_to_select_and_outbound_fields_only_for_outbound_mappings(console_app,
                                                                                         browser_client):
    sign_in(browser_client)
    db = console_app.extensions["forcebridge"].db
    with db.transaction() as conn:
        conn.execute("INSERT INTO forcebridge.mappings (object_name, table_name, direction, fields, extra) VALUES "
                     "('Account', 'account', 'bidirectional', '[]', '{}'), "
                     "('Contact', 'contact', 'sf_to_pg', '[]', '{\"sf_source\": \"cdc\"}')")
        conn.execute("INSERT INTO forcebridge.documents (key, value) VALUES ('cdc_subscriber', "
                     "'{\"connected\": true, \"unselected\": [\"Contact\"]}')")
    page = browser_client.get("/setup", base_url=BASE).get_data(as_text=True)
    fields = page[page.index("2. The fields to send"):page.index('id="cdc-setup"')]
    cdc = page[page.index('id="cdc-setup"'):page.index("3. The integration user")]
    assert "<strong>Account</strong>" in fields and "Contact" not in fields
    assert "<code>Contact</code> <span class=\"pill bad\">not selected yet</span>" in cdc
    assert "Account" not in cdc
