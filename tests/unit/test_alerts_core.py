"""Alert decisions (core/alerts.py): raise once, repeat no sooner than the interval, failures only when new
ones came, a recovery once; the message says what, since when, how many and where to look."""
from __future__ import annotations

import datetime as dt

import pytest

from core import alerts
from core.alerts import Facts, State, Thresholds

NOW = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.timezone.utc)
T = Thresholds(lag_minutes_sf_to_pg=10, lag_minutes_pg_to_sf=10, repeat_minutes=60)


def run(facts: Facts, states: dict, now=NOW):
    decision = alerts.decide(alerts.observe(facts, T, now), states, T, now, "https://fb.example.com")
    merged = {**states, **decision.states}
    return {(a.condition, a.status) for a in decision.alerts}, merged, decision.alerts


def test_every_condition_raises_and_clears():
    bad = Facts(failed_writes=2, failed_writes_newest=7, failed_notifications=1, failed_notifications_newest=5,
                oldest_pending_sf=NOW - dt.timedelta(minutes=11), oldest_pending_pg=NOW - dt.timedelta(minutes=30),
                workers_alive=0, cdc_connected=False, drift_differences=3, drift_objects=("Account",),
                budget_share=1.2, salesforce={"state": "refused", "since": NOW.isoformat(), "message": "INVALID_LOGIN"})
    sent, states, _ = run(bad, {})
    assert {c for c, s in sent if s == "open"} == set(alerts.CONDITIONS) - {"salesforce_unreachable"}
    good = Facts(workers_alive=1, cdc_connected=True, budget_share=0.1, salesforce={"state": "ok"})
    sent, states, _ = run(good, states, NOW + dt.timedelta(minutes=1))
    assert {c for c, s in sent if s == "recovered"} == set(alerts.CONDITIONS) - {"salesforce_unreachable"}
    assert not any(s.open for s in states.values())
    sent, _, _ = run(Facts(salesforce={"state": "unreachable", "message": "refused"}, workers_alive=1), states)
    assert sent == {("salesforce_unreachable", "open")}


def test_an_open_alert_is_repeated_no_sooner_than_the_interval():
    facts = Facts(workers_alive=0)
    _, states, _ = run(facts, {})
    assert run(facts, states, NOW + dt.timedelta(minutes=59))[0] == set()
    sent, _, out = run(facts, states, NOW + dt.timedelta(minutes=60))
    assert sent == {("no_worker", "still open")} and out[0].since == NOW


def test_an_opening_no_channel_took_goes_out_as_new_next_time():
    _, states, _ = run(Facts(workers_alive=0), {})
    unsent = {"no_worker": State("no_worker", True, NOW, 0, "", 0, None)}
    assert states["no_worker"].last_sent_at == NOW
    sent, states, _ = run(Facts(workers_alive=0), unsent, NOW + dt.timedelta(minutes=1))
    assert sent == {("no_worker", "open")} and states["no_worker"].since == NOW


def test_failures_repeat_only_when_new_ones_arrived():
    _, states, _ = run(Facts(failed_writes=2, failed_writes_newest=7, workers_alive=1), {})
    later = NOW + dt.timedelta(hours=2)
    assert run(Facts(failed_writes=2, failed_writes_newest=7, workers_alive=1), states, later)[0] == set()
    sent, states, out = run(Facts(failed_writes=5, failed_writes_newest=12, workers_alive=1), states, later)
    assert sent == {("failed_writes", "still open")} and "New since the last alert" in out[0].detail
    assert states["failed_writes"].watermark == 12


def test_the_message_says_what_since_when_how_many_and_where():
    _, _, out = run(Facts(failed_writes=3, failed_writes_newest=1, failed_writes_since=NOW - dt.timedelta(hours=1),
                          workers_alive=1), {})
    text = out[0].text()
    assert "Writes to Salesforce failed (3) since 2026-03-01 08:00 UTC" in text
    assert out[0].link == "https://fb.example.com/errors" and text.endswith("https://fb.example.com/errors")
    slack = alerts.slack_body(out[0])["text"]
    assert slack.startswith(":red_circle: *OPEN: Writes to Salesforce failed* (3)")
    assert "<https://fb.example.com/errors|Open the console>" in slack
    assert out[0].as_json()["status"] == "open"


def test_lag_below_the_threshold_is_no_alert():
    facts = Facts(oldest_pending_sf=NOW - dt.timedelta(minutes=9), workers_alive=1)
    assert run(facts, {})[0] == set()


def test_writes_held_by_the_send_window_are_not_lag_until_the_window_has_passed_too():
    held = Facts(oldest_pending_pg=NOW - dt.timedelta(minutes=30), send_window_minutes=60, workers_alive=1)
    assert run(held, {})[0] == set()
    late = Facts(oldest_pending_pg=NOW - dt.timedelta(minutes=75), send_window_minutes=60, workers_alive=1)
    sent, _, out = run(late, {})
    assert sent == {("lag_pg_to_sf", "open")}
    assert "(threshold 10, plus the send window's 60)" in out[0].text()


def test_unknown_facts_raise_nothing():
    assert run(Facts(), {})[0] == set()    # no worker count, no CDC, no budget, no Salesforce yet


@pytest.mark.parametrize("form, field", [({"kind": "pager", "target": "x"}, "kind"),
                                         ({"kind": "webhook", "target": "ftp://x"}, "target"),
                                         ({"kind": "email", "target": "not an address"}, "target"),
                                         ({"kind": "slack", "target": ""}, "target")])
def test_channel_refusals_name_the_field(form, field):
    with pytest.raises(alerts.AlertConfigError) as refused:
        alerts.parse_channel(form)
    assert refused.value.field == field


def test_thresholds():
    assert alerts.parse_thresholds({"lag_minutes_sf_to_pg": "5", "lag_minutes_pg_to_sf": "20",
                                    "repeat_minutes": "30"}) == Thresholds(5, 20, 30)
    with pytest.raises(alerts.AlertConfigError) as refused:
        alerts.parse_thresholds({"lag_minutes_sf_to_pg": "0", "lag_minutes_pg_to_sf": "1", "repeat_minutes": "1"})
    assert refused.value.field == "lag_minutes_sf_to_pg"
