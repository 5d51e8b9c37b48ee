"""The API budget on the Overview, the Setup page and /metrics (issue 16)."""
from __future__ import annotations

import psycopg
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import API_TOKEN
from tests.support.console import BASE, browser_client, console_app, csrf_of, sign_in  # noqa: F401


def spend(url, per_hour: int, allocation: int, used: int) -> None:
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO forcebridge.api_usage_hourly (hour, kind, object_name, calls) "
                     "SELECT h, 'polls', 'Account', %s FROM generate_series(date_trunc('hour', now()) - "
                     "interval '23 hours', date_trunc('hour', now()) - interval '1 hour', interval '1 hour') h",
                     (per_hour,))
        conn.execute("INSERT INTO forcebridge.api_usage_hourly (hour, kind, object_name, calls, saved, split_calls) "
                     "VALUES (date_trunc('hour', now()), 'writes', 'Account', 0, 12, 3)")
        conn.execute("INSERT INTO forcebridge.api_limits (name, max, remaining) VALUES ('DailyApiRequests', %s, %s)",
                     (allocation, allocation - used))
    from jobs import budget
    budget.forget()


def test_overview_shows_use_against_budget_what_is_held_back_and_a_forecast(console_app, browser_client, settings):
    sign_in(browser_client)
    db = console_app.extensions["forcebridge"].db
    browser_client.post("/mappings", base_url=BASE, data={
        "csrf_token": csrf_of(browser_client), "object_name": "Account", "typed_fields": "Name:string:80"})
    spend(settings.database_url, 270, 15_000, 8000)
    page = browser_client.get("/overview/status", base_url=BASE).text
    assert "15,000 calls a day" in page and "7,500" in page               # allocation and our budget
    assert "6,210 = 83% of the budget" in page
    assert "polls spaced out ×3" in page and "drift checks paused until" in page
    assert 'id="api-forecast"' in page and "Account" in page
    assert "Calls saved, last 24 h" in page and "3 calls spent splitting" in page
    assert "part-filled call waits up to" in page        # 83%: the send window is open (pressed: 60 min)
    metrics = browser_client.get("/metrics", base_url=BASE, headers={"Authorization": f"Bearer {API_TOKEN}"}).text
    values = {(s.name, tuple(sorted(s.labels.items()))): s.value
              for f in text_string_to_metric_families(metrics) for s in f.samples}
    assert values[("forcebridge_api_budget_calls", (("what", "allocation"),))] == 15_000
    assert values[("forcebridge_api_budget_calls", (("what", "budget"),))] == 7_500
    assert values[("forcebridge_api_calls_24h", (("kind", "polls"),))] == 6210
    assert values[("forcebridge_api_work_held", (("action", "spaced"), ("kind", "polls")))] == 1
    assert ("forcebridge_api_forecast_calls_per_day", (("mapping", "Account"),)) in values
    assert values[("forcebridge_api_calls_saved_24h", (("kind", "writes"),))] == 12
    assert values[("forcebridge_api_split_calls_24h", (("kind", "writes"),))] == 3
    assert db.ping()


def test_setup_sets_the_share_and_floor_and_refuses_nonsense(console_app, browser_client):
    sign_in(browser_client)
    page = browser_client.get("/setup", base_url=BASE).text
    assert 'name="share"' in page and 'value="50"' in page
    bad = browser_client.post("/setup/budget", base_url=BASE, data={
        "csrf_token": csrf_of(browser_client), "share": "80", "floor": "30"})
    assert bad.status_code == 400 and 'data-field="floor"' in bad.text
    ok = browser_client.post("/setup/budget", base_url=BASE, data={
        "csrf_token": csrf_of(browser_client), "share": "30", "floor": "5"})
    assert ok.status_code == 200 and "30%" in ok.text
    assert 'value="30"' in browser_client.get("/setup", base_url=BASE).text


def test_formula_refreshes_are_their_own_kind_on_the_overview_and_in_metrics(console_app, browser_client, settings):
    sign_in(browser_client)
    with psycopg.connect(settings.database_url) as conn:
        conn.execute("INSERT INTO forcebridge.api_usage_hourly (hour, kind, object_name, calls) "
                     "VALUES (date_trunc('hour', now()), 'formula_refresh', 'Contact', 42)")
    page = browser_client.get("/overview/status", base_url=BASE).text
    assert "formula refreshes 42" in page
    metrics = browser_client.get("/metrics", base_url=BASE, headers={"Authorization": f"Bearer {API_TOKEN}"}).text
    values = {(s.name, tuple(sorted(s.labels.items()))): s.value
              for f in text_string_to_metric_families(metrics) for s in f.samples}
    assert values[("forcebridge_api_calls_24h", (("kind", "formula_refresh"),))] == 42


def test_the_mappings_page_shows_each_mappings_formula_refresh(console_app, browser_client, settings):
    sign_in(browser_client)
    browser_client.post("/mappings", base_url=BASE, data={
        "csrf_token": csrf_of(browser_client), "object_name": "Contact", "typed_fields": "Name:string:80"})
    assert 'id="formula-refresh"' not in browser_client.get("/mappings", base_url=BASE).text   # never refreshed
    with psycopg.connect(settings.database_url) as conn:
        (mapping_id,) = conn.execute("SELECT id FROM forcebridge.mappings WHERE object_name = 'Contact'").fetchone()
        conn.execute("INSERT INTO forcebridge.formula_refresh (mapping_id, last_run_at, next_run_at, fields, checked, "
                     "updated, parents, targeted_at, targeted_checked, targeted_updated) VALUES (%s, "
                     "'2026-12-03 10:00Z', '2099-12-03 10:15Z', '{Tier__c}', 1200, 7, "
                     "'[{\"object\": \"Account\", \"lookup\": \"AccountId\", \"fields\": [\"Tier__c\"]}]', "
                     "'2026-12-03 10:05Z', 3, 2)", (mapping_id,))
        conn.execute("INSERT INTO forcebridge.formula_refresh_pending (mapping_id, lookup, parent_id) "
                     "VALUES (%s, 'AccountId', '001000000000001AAA')", (mapping_id,))
    page = browser_client.get("/mappings", base_url=BASE).text
    card = page[page.index('id="formula-refresh"'):]
    assert "Tier__c" in card and "2026-12-03 10:00:00 UTC" in card and "2099-12-03 10:15:00 UTC" in card
    assert ">7</td>" in card and "1,200" in card and "every 15 min" in card
    assert "Account <small class=\"muted\">via AccountId: Tier__c" in card
    assert "1 waiting" in card and "2026-12-03 10:05:00 UTC: 2 of 3 rows changed" in card
    with psycopg.connect(settings.database_url) as conn:      # nothing calculated mapped: looked at daily
        conn.execute("UPDATE forcebridge.formula_refresh SET fields = '{}' WHERE mapping_id = %s", (mapping_id,))
    card = browser_client.get("/mappings", base_url=BASE).text.split('id="formula-refresh"', 1)[1]
    assert "looked at daily: nothing to refresh" in card and "every 15 min" not in card
