"""The API budget holding work back (issue 16), against Postgres and the emulator: a poll spaced from every
10 minutes to every 30, a drift check put off, writes delayed at the org's floor and sent after it."""
from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from huey.exceptions import RetryTask

from jobs import budget, drain, poll, sync_tasks
from tests.integration.test_capture import sql, writing_mapping
from tests.integration.test_loading import api, db, loaded_mapping, route_calls, sf, sf_app, sf_settings  # noqa: F401
from tests.integration.test_write_path import FIELDS, collection_calls


def spend(url, per_hour: int, allocation: int = 15_000, remaining: int | None = None) -> None:
    """Our calls in each of the 23 hours before this one (none yet in this one, so the minute of the hour
    the test runs at changes nothing), and the org's DailyApiRequests."""
    sql(url, "DELETE FROM forcebridge.api_usage_hourly")
    sql(url, "INSERT INTO forcebridge.api_usage_hourly (hour, kind, object_name, calls) "
             "SELECT h, 'polls', 'Account', %s FROM generate_series(date_trunc('hour', now()) - interval '23 hours', "
             "date_trunc('hour', now()) - interval '1 hour', interval '1 hour') h", (per_hour,))
    used = per_hour * 23 if remaining is None else allocation - remaining
    sql(url, "INSERT INTO forcebridge.api_limits (name, max, remaining) VALUES ('DailyApiRequests', %s, %s) "
             "ON CONFLICT (name) DO UPDATE SET max = EXCLUDED.max, remaining = EXCLUDED.remaining",
        (allocation, allocation - used))
    budget.forget()


@pytest.fixture(autouse=True)
def fresh_plan():
    budget.forget()
    yield
    budget.forget()


def test_polls_are_spaced_to_every_30_minutes_near_the_budget_and_recover(api, db, sf, emulator, sf_settings):
    m = loaded_mapping(api, db, sf, emulator, count=5)
    poll.poll(db, sf, m, force=True)
    url = sf_settings.database_url
    sql(url, "UPDATE forcebridge.poll_state SET last_polled_at = now() - interval '12 minutes', "
             "next_poll_at = now() - interval '2 minutes'")
    spend(url, 270)                       # ~83% of a 7,500-call budget projected: polls every 30 minutes
    emulator.admin("DELETE", "/_emulator/stats")
    sync_tasks.poll_backstop()
    assert route_calls(emulator, "rest.") == 0
    gap = sql(url, "SELECT next_poll_at - last_polled_at FROM forcebridge.poll_state")[0][0]
    assert gap == dt.timedelta(minutes=30)
    plan = budget.current_plan(db, fresh=True)
    assert "polls spaced out ×3" in plan.hold("polls").describe()

    spend(url, 10)                        # the pressure is gone: the poll runs at its own interval again
    sql(url, "UPDATE forcebridge.poll_state SET next_poll_at = now() - interval '1 minute'")
    sync_tasks.poll_backstop()
    assert route_calls(emulator, "rest.query") >= 1


def test_a_drift_check_is_put_off_while_drift_checks_are_paused(api, db, sf, emulator, sf_settings):
    m = loaded_mapping(api, db, sf, emulator, count=5)
    spend(sf_settings.database_url, 300)   # ~92%: drift checks paused
    with pytest.raises(RetryTask) as put_off:
        sync_tasks.reconcile_mapping(m.id)
    assert put_off.value.delay >= 60
    spend(sf_settings.database_url, 10)
    assert sync_tasks.reconcile_mapping(m.id) is not None


def test_writes_wait_at_the_floor_and_are_sent_when_the_org_has_calls_again(api, db, sf, emulator, sf_settings):
    writing_mapping(api, fields=FIELDS, upsert_field="External_Id__c")
    url = sf_settings.database_url
    sql(url, "INSERT INTO salesforce.invoice__c (name) VALUES ('held back')")
    spend(url, 10, remaining=1000)         # others used the org's calls: 1,000 left, the floor is 1,500
    assert drain.drain_now().claimed == 0
    assert budget.current_plan(db).hold("writes").action == "delayed"
    assert sql(url, "SELECT state FROM forcebridge.open_changes") == [("NEW",)]
    spend(url, 10, remaining=9000)
    assert drain.drain_now().outcomes == {"SUCCESS": 1}


def test_a_part_filled_call_waits_for_its_window_and_full_calls_go_at_once(api, db, sf, emulator, sf_settings):
    writing_mapping(api, fields=FIELDS, upsert_field="External_Id__c")
    url = sf_settings.database_url
    sql(url, "INSERT INTO salesforce.invoice__c (name) SELECT 'w' || g FROM generate_series(1, 205) g")
    emulator.admin("DELETE", "/_emulator/stats")
    options = drain.DrainOptions(retry_base_seconds=0, send_window_seconds=60, bundle=1)   # nothing rides along
    first = drain.drain(db, sf, options)
    assert first.outcomes == {"SUCCESS": 200} and collection_calls(emulator) == 1    # one full call
    assert sql(url, "SELECT count(*) FROM forcebridge.open_changes WHERE state = 'NEW'") == [(5,)]
    assert first.held_until is not None
    settings = dataclasses.replace(sf_settings, send_window_seconds=60)
    assert 0 < drain.next_retry_in(db, settings) <= 60          # the listener wakes when the window ends
    later = first.held_until + dt.timedelta(seconds=1)
    assert drain.drain(db, sf, options, now=later).outcomes == {"SUCCESS": 5}
    assert collection_calls(emulator) == 2
    assert sql(url, "SELECT count(*) FROM forcebridge.open_changes") == [(0,)]      # held, never dropped


def test_a_poll_expecting_many_changes_runs_one_bulk_job_without_a_rest_page_first(api, db, sf, emulator,
                                                                                    sf_settings):
    from jobs import api_usage
    m = loaded_mapping(api, db, sf, emulator, count=30)
    emulator.salesforce(client="user").bulk2.Account.update(
        records=[{"Id": r["Id"], "Name": "mass"} for r in sf.query("SELECT Id FROM Account")])
    url = sf_settings.database_url
    # the last poll brought 20 changes; two intervals later about 40 are expected, above bulk_above
    sql(url, "UPDATE forcebridge.poll_state SET last_changed = 20, "
             "last_polled_at = now() - make_interval(secs => 2 * %s)", (poll.poll_settings(m).seconds,))
    sf.take_usage()
    emulator.admin("DELETE", "/_emulator/stats")
    result = poll.poll(db, sf, m, force=True, bulk_above=25)
    assert result.changed == 30
    assert route_calls(emulator, "rest.query") == 0 and route_calls(emulator, "bulk2.create_query_job") == 1
    api_usage.flush(db, sf)
    # every Bulk call counts against what the job saved; its 30 records would have cost one REST page, and
    # the page not spent to find out is the choice's own saving
    saved = sql(url, "SELECT sum(saved) FROM forcebridge.api_usage_hourly")[0][0]
    assert saved == 1 + 1 - route_calls(emulator, "bulk2.")


def test_after_a_catch_up_poll_the_next_poll_expects_its_count_spread_over_the_outage(api, db, sf, emulator,
                                                                                     sf_settings):
    m = loaded_mapping(api, db, sf, emulator, count=30)
    users = emulator.salesforce(client="user")
    users.bulk2.Account.update(records=[{"Id": r["Id"], "Name": "mass"} for r in sf.query("SELECT Id FROM Account")])
    url = sf_settings.database_url
    interval = poll.poll_settings(m).seconds
    # the worker was down for ten intervals: the catch-up poll finds 30 changes over that time
    sql(url, "UPDATE forcebridge.poll_state SET last_changed = 0, "
             "last_polled_at = now() - make_interval(secs => 10 * %s)", (interval,))
    assert poll.poll(db, sf, m, force=True, bulk_above=25).changed == 30
    for r in sf.query("SELECT Id FROM Account LIMIT 3"):
        users.Account.update(r["Id"], {"Name": "one of a few"})
    sql(url, "UPDATE forcebridge.poll_state SET last_polled_at = now() - make_interval(secs => %s)", (interval,))
    emulator.admin("DELETE", "/_emulator/stats")
    # one interval later about 3 are expected (30 over ten intervals), not 30: no Bulk job for a handful
    assert poll.poll(db, sf, m, force=True, bulk_above=25).changed == 3
    assert route_calls(emulator, "bulk2.create_query_job") == 0 and route_calls(emulator, "rest.query") == 1


def test_a_bulk_job_that_brings_few_records_credits_no_saving(api, db, sf, emulator, sf_settings):
    from jobs import api_usage
    m = loaded_mapping(api, db, sf, emulator, count=3)
    users = emulator.salesforce(client="user")
    for r in sf.query("SELECT Id FROM Account"):
        users.Account.update(r["Id"], {"Name": "one of a few"})
    url = sf_settings.database_url
    sql(url, "UPDATE forcebridge.poll_state SET last_changed = 30, "
             "last_polled_at = now() - make_interval(secs => %s)", (poll.poll_settings(m).seconds,))
    sf.take_usage()
    emulator.admin("DELETE", "/_emulator/stats")
    assert poll.poll(db, sf, m, force=True, bulk_above=25).changed == 3       # Bulk chosen on 30 expected
    assert route_calls(emulator, "bulk2.create_query_job") == 1
    api_usage.flush(db, sf)
    # 3 records: the first REST page would have been the whole answer, so the page not spent saved nothing;
    # the job's records would have cost one page, its calls count against that
    saved = sql(url, "SELECT sum(saved) FROM forcebridge.api_usage_hourly")[0][0]
    assert saved == 1 - route_calls(emulator, "bulk2.")
