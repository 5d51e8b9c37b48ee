"""Alerts end to end (issue 16) with real receivers on this machine: a local HTTP server for the generic
webhook and Slack's format, aiosmtpd for email over STARTTLS with a login. Each condition is raised by
making it true in Postgres (and, for Salesforce, by the gateway against the emulator), then cleared."""
from __future__ import annotations

import dataclasses
import threading

import psycopg
import pytest

from gateway.db import Database
from gateway.salesforce import PermanentError, Salesforce, TransientError
from jobs import alerts, api_usage, budget
from tests.conftest import API_TOKEN
from tests.support.console import BASE, browser_client, console_app, csrf_of, sign_in  # noqa: F401
from tests.support.receivers import HttpReceiver, SmtpReceiver

CONDITIONS = {"failed_writes", "failed_notifications", "lag_sf_to_pg", "lag_pg_to_sf", "no_worker", "drift_found",
              "budget_80", "budget_100", "credentials_refused"}


def sql(url, statement, params=None):
    with psycopg.connect(url) as conn:
        cur = conn.execute(statement, params)
        return cur.fetchall() if cur.description else cur.rowcount


@pytest.fixture
def receivers(tmp_path):
    with HttpReceiver() as http, SmtpReceiver(tmp_path) as smtp:
        yield http, smtp


@pytest.fixture
def alert_settings(settings, receivers):
    _, smtp = receivers
    return dataclasses.replace(settings, smtp_host="127.0.0.1", smtp_port=smtp.port, smtp_username=smtp.user,
                               smtp_password=smtp.password, smtp_from="forcebridge@example.com",
                               smtp_tls="starttls", smtp_ca_bundle=str(smtp.ca_path),
                               public_url="https://fb.example.com")


@pytest.fixture
def db(alert_settings):
    database = Database(alert_settings.database_url)
    budget.forget()
    yield database
    budget.forget()
    database.close()


def add_channels(db, http):
    alerts.add_channel(db, {"kind": "webhook", "target": f"{http.url}/hook"})
    alerts.add_channel(db, {"kind": "slack", "target": f"{http.url}/slack"})
    alerts.add_channel(db, {"kind": "email", "target": "ops@example.com"})


def make_everything_wrong(url, api, salesforce_settings):
    mapping = api.post("/api/v1/mappings", json={"object_name": "Account", "config": {
        "fields": {"Name": {"type": "string", "length": 80}}}}).get_json()
    sql(url, "INSERT INTO forcebridge.change_log (mapping_id, op, record_id, state, error, finished_at) "
             "VALUES (%s, 'insert', 1, 'FAILED', '[]', now()), (%s, 'insert', 2, 'NEW', NULL, NULL)",
        (mapping["id"], mapping["id"]))
    # past the lag threshold and the send window (an hour at this budget pressure), which holds writes on purpose
    sql(url, "UPDATE forcebridge.change_log SET created_at = now() - interval '90 minutes' WHERE state = 'NEW'")
    sql(url, "INSERT INTO forcebridge.inbox (notification_id, object_name, sfid, fields, organization_id, state, "
             "received_at) VALUES ('n1', 'Account', '001000000000001AAA', '{}', 'org', 'failed', now()), "
             "('n2', 'Account', '001000000000002AAA', '{}', 'org', 'pending', now() - interval '20 minutes')")
    sql(url, "INSERT INTO forcebridge.drift_reports (mapping_id, sf_count, pg_count, missing, extra, stale, "
             "unsynced, samples) VALUES (%s, 10, 7, 3, 0, 0, 0, '{}')", (mapping["id"],))
    sql(url, "INSERT INTO forcebridge.api_usage_hourly (hour, kind, object_name, calls) "
             "SELECT h, 'polls', 'Account', 400 FROM generate_series(date_trunc('hour', now()) - interval '23 hours', "
             "date_trunc('hour', now()) - interval '1 hour', interval '1 hour') h")
    sql(url, "INSERT INTO forcebridge.api_limits (name, max, remaining) VALUES ('DailyApiRequests', 15000, 5000)")
    refused = Salesforce(dataclasses.replace(salesforce_settings, sf_password="wrong"))
    with pytest.raises(PermanentError):
        refused.query("SELECT Id FROM Account")
    return mapping, refused


def test_each_condition_is_raised_once_and_cleared_through_every_channel(
        api, alert_settings, db, receivers, emulator):
    http, smtp = receivers
    url = alert_settings.database_url
    add_channels(db, http)
    sf_settings = dataclasses.replace(
        alert_settings, sf_instance_url=emulator.url, sf_username=emulator.username, sf_password=emulator.password,
        sf_security_token=emulator.security_token, sf_ca_bundle=str(emulator.ca_path))
    mapping, refused = make_everything_wrong(url, api, sf_settings)
    api_usage.flush(db, refused)

    sent = alerts.check(db, alert_settings)
    assert {a.condition for a in sent} == CONDITIONS and {a.status for a in sent} == {"open"}
    hooks = {b["condition"]: b for b in http.posted("/hook")}
    assert set(hooks) == CONDITIONS
    assert hooks["failed_writes"]["count"] == 1 and hooks["failed_writes"]["link"] == "https://fb.example.com/errors"
    assert hooks["lag_pg_to_sf"]["count"] >= 20 and hooks["lag_pg_to_sf"]["since"]
    assert hooks["budget_100"]["detail"].startswith("ForceBridge used 123% of its API budget")
    slack = [b["text"] for b in http.posted("/slack")]
    assert len(slack) == len(CONDITIONS) and all(t.startswith(":red_circle: *OPEN: ") for t in slack)
    assert len(smtp.messages) == len(CONDITIONS) and smtp.logins
    subjects = {m["Subject"] for m in smtp.messages}
    assert "[ForceBridge] OPEN: Salesforce refuses the credentials" in subjects
    assert smtp.messages[0]["To"] == "ops@example.com"

    # not repeated within the interval, not even by a process that starts afresh (state is in Postgres)
    assert alerts.check(db, alert_settings) == []
    restarted = Database(url)
    try:
        assert alerts.check(restarted, alert_settings) == []
    finally:
        restarted.close()
    state = api.get("/api/v1/alerts").get_json()
    opened = {a["condition"] for a in state["alerts"] if a["open"]}
    assert opened == CONDITIONS and state["thresholds"]["repeat_minutes"] == 60
    assert [c["target"] for c in state["channels"]][:2] == [f"{http.url}/…"] * 2   # webhook URLs are secrets

    # everything back to normal
    sql(url, "UPDATE forcebridge.change_log SET state = 'IGNORED'")
    sql(url, "UPDATE forcebridge.inbox SET state = 'applied', applied_at = now()")
    sql(url, "UPDATE forcebridge.drift_reports SET repaired = '{}'")
    sql(url, "DELETE FROM forcebridge.api_usage_hourly")
    sql(url, "INSERT INTO forcebridge.worker_heartbeats (worker) VALUES ('test:1')")
    good = Salesforce(sf_settings)
    try:
        good.query("SELECT Id FROM Account LIMIT 1")
        api_usage.flush(db, good)
    finally:
        good.close()
    budget.forget()
    http.bodies.clear()
    smtp.messages.clear()
    cleared = alerts.check(db, alert_settings)
    assert {a.condition for a in cleared} == CONDITIONS and {a.status for a in cleared} == {"recovered"}
    assert {b["status"] for b in http.posted("/hook")} == {"recovered"}
    assert all(t.startswith(":large_green_circle: *RECOVERED: ") for t in (b["text"] for b in http.posted("/slack")))
    assert len(smtp.messages) == len(CONDITIONS)
    assert not any(a["open"] for a in api.get("/api/v1/alerts").get_json()["alerts"])


def test_salesforce_unreachable_is_raised_and_cleared(api, alert_settings, db, receivers, emulator):
    http, _ = receivers
    alerts.add_channel(db, {"kind": "webhook", "target": f"{http.url}/hook"})
    sql(alert_settings.database_url, "INSERT INTO forcebridge.worker_heartbeats (worker) VALUES ('test:1')")
    sf_settings = dataclasses.replace(
        alert_settings, sf_instance_url="https://127.0.0.1:9", sf_username=emulator.username,
        sf_password=emulator.password, sf_security_token=emulator.security_token, sf_ca_bundle=str(emulator.ca_path))
    away = Salesforce(sf_settings, retries=0)
    with pytest.raises(TransientError):
        away.query("SELECT Id FROM Account")
    api_usage.flush(db, away)
    assert [a.condition for a in alerts.check(db, alert_settings)] == ["salesforce_unreachable"]
    back = Salesforce(dataclasses.replace(sf_settings, sf_instance_url=emulator.url))
    back.query("SELECT Id FROM Account LIMIT 1")
    api_usage.flush(db, back)
    back.close()
    assert [(a.condition, a.status) for a in alerts.check(db, alert_settings)] == [("salesforce_unreachable", "recovered")]
    assert [b["status"] for b in http.posted("/hook")] == ["open", "recovered"]


def test_an_alert_no_channel_took_is_sent_again_next_time(api, alert_settings, db, receivers):
    http, _ = receivers
    alerts.add_channel(db, {"kind": "webhook", "target": f"{http.url}/hook"})
    http.status = 500
    assert alerts.check(db, alert_settings) == []          # no worker: the receiver refused it
    shown = {a["condition"]: a for a in alerts.as_json(db)["alerts"]}["no_worker"]
    assert shown["open"] and shown["last_sent_at"] is None   # the console and the API show it all the same
    http.status = 200
    assert [(a.condition, a.status) for a in alerts.check(db, alert_settings)] == [("no_worker", "open")]
    assert alerts.check(db, alert_settings) == []
    assert len(http.posted("/hook")) == 2


def test_setup_page_configures_channels_and_sends_a_test_alert(console_app, browser_client, receivers, tmp_path):
    http, _ = receivers
    sign_in(browser_client)
    page = browser_client.get("/setup", base_url=BASE).text
    assert "6. Alerts" in page and "No channel yet" in page
    bad = browser_client.post("/setup/alerts/channels", base_url=BASE, data={
        "csrf_token": csrf_of(browser_client), "kind": "webhook", "target": "not a url"})
    assert bad.status_code == 400 and 'data-field="target"' in bad.text
    ok = browser_client.post("/setup/alerts/channels", base_url=BASE, data={
        "csrf_token": csrf_of(browser_client), "kind": "slack", "target": f"{http.url}/slack/T000/B000/XXXX"})
    assert ok.status_code == 200 and "Added slack channel" in ok.text and "XXXX" not in ok.text
    tested = browser_client.post("/setup/alerts/test", base_url=BASE, data={"csrf_token": csrf_of(browser_client)})
    assert "Test alert sent" in tested.text and "delivered" in tested.text
    assert http.posted("/slack/T000/B000/XXXX")[0]["text"].startswith(":information_source: *TEST: ")
    saved = browser_client.post("/setup/alerts/thresholds", base_url=BASE, data={
        "csrf_token": csrf_of(browser_client), "lag_minutes_sf_to_pg": "5", "lag_minutes_pg_to_sf": "7",
        "repeat_minutes": "30"})
    assert "Thresholds saved" in saved.text and 'value="7"' in saved.text
    assert browser_client.get("/api/v1/alerts", base_url=BASE).status_code == 401      # the API wants its token
    state = browser_client.get("/api/v1/alerts", base_url=BASE,
                               headers={"Authorization": f"Bearer {API_TOKEN}"}).get_json()
    assert state["thresholds"] == {"lag_minutes_sf_to_pg": 5, "lag_minutes_pg_to_sf": 7, "repeat_minutes": 30}


def test_the_web_process_notices_that_no_worker_runs(alert_settings, db, receivers, enqueued):
    """Nothing else would: the worker cannot report its own absence."""
    import time

    from webapp import alerting, create_app

    http, _ = receivers
    alerts.add_channel(db, {"kind": "webhook", "target": f"{http.url}/hook"})
    app = create_app(dataclasses.replace(alert_settings, web_alert_checks=True), enqueue=enqueued)
    alerting._last_web_check["at"] = 0.0
    try:
        assert app.test_client().get("/healthz").status_code == 200
        for _ in range(200):                     # the check runs in a thread of its own
            if http.posted("/hook"):
                break
            time.sleep(0.05)
        assert [b["condition"] for b in http.posted("/hook")] == ["no_worker"]
    finally:
        app.extensions["forcebridge"].db.close()


def test_a_disconnected_cdc_subscriber_is_raised_and_cleared(alert_settings, db, receivers):
    """The CDC subscriber reports through the 'cdc_subscriber' document; until one exists nothing is raised."""
    from psycopg.types.json import Jsonb

    http, _ = receivers
    alerts.add_channel(db, {"kind": "webhook", "target": f"{http.url}/hook"})
    sql(alert_settings.database_url, "INSERT INTO forcebridge.worker_heartbeats (worker) VALUES ('test:1')")
    assert alerts.check(db, alert_settings) == []
    db.execute("put_document", {"key": "cdc_subscriber", "value": Jsonb({"connected": False,
                                                                          "since": "2026-03-01T08:00:00+00:00"})})
    assert [(a.condition, a.status) for a in alerts.check(db, alert_settings)] == [("cdc_disconnected", "open")]
    db.execute("put_document", {"key": "cdc_subscriber", "value": Jsonb({"connected": True})})
    assert [(a.condition, a.status) for a in alerts.check(db, alert_settings)] == [("cdc_disconnected", "recovered")]
    assert http.posted("/hook")[0]["since"].startswith("2026-03-01T08:00")


def test_a_web_process_gives_its_worker_a_minute_before_it_looks(alert_settings, db, receivers, enqueued):
    """At a deploy the web process and the worker start together: the web's first check waits a minute, so no
    "no worker" alert (and its recovery) goes out at every start."""
    import time

    from webapp import alerting, create_app

    http, _ = receivers
    alerts.add_channel(db, {"kind": "webhook", "target": f"{http.url}/hook"})
    alerting._last_web_check["at"] = 0.0
    app = create_app(dataclasses.replace(alert_settings, web_alert_checks=True), enqueue=enqueued)
    try:
        assert time.monotonic() - alerting._last_web_check["at"] < alerting.WEB_CHECK_SECONDS
        assert app.test_client().get("/healthz").status_code == 200
        assert not [t for t in threading.enumerate() if t.name == "alerts"]      # no check was started
    finally:
        app.extensions["forcebridge"].db.close()
    assert http.posted("/hook") == []
