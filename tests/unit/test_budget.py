"""The API budget's decisions (core/budget.py): spacing, pausing, the floor, the cheaper API."""
from __future__ import annotations

import datetime as dt

import pytest

from core import budget
from core.budget import BudgetSettings, Usage

NOW = dt.datetime(2026, 1, 5, 12, 30, tzinfo=dt.timezone.utc)


def usage(per_hour: int, allocation: int = 15_000, org_used: int | None = None, current: int | None = None):
    hourly = (per_hour,) * 23 + (per_hour // 2 if current is None else current,)
    return Usage(allocation, org_used if org_used is not None else sum(hourly), hourly, NOW)


def test_well_inside_the_budget_nothing_is_held():
    p = budget.plan(BudgetSettings(), usage(100))
    assert p.budget == 7500 and p.holds == {} and p.factor("polls") == 1.0


def test_as_the_projection_nears_the_budget_drift_then_polls_are_spaced_then_paused():
    # 7,500 calls a day allowed; the projection is 23 full hours + an hour at the current pace
    spaced = budget.plan(BudgetSettings(), usage(210))          # ~67% of the budget
    assert spaced.hold("drift").action == "spaced" and "polls" not in spaced.holds
    polls = budget.plan(BudgetSettings(), usage(260))           # ~83%
    assert polls.factor("polls") == 3.0 and polls.hold("drift").action == "paused"
    paused = budget.plan(BudgetSettings(), usage(310))          # ~97%
    assert paused.factor("polls") is None and paused.hold("polls").until > NOW
    assert paused.hold("gap_fetches").action == "spaced"
    over = budget.plan(BudgetSettings(), usage(400))
    assert over.factor("gap_fetches") is None
    assert "writes" not in over.holds                            # writes are never held above the floor


def test_formula_refreshes_are_held_back_just_before_the_polls():
    assert budget.plan(BudgetSettings(), usage(210)).hold("formula_refresh") is None      # ~67%
    spaced = budget.plan(BudgetSettings(), usage(240))                                    # ~77%
    assert spaced.factor("formula_refresh") == 3.0 and spaced.factor("polls") == 1.0
    paused = budget.plan(BudgetSettings(), usage(290))                                    # ~91%
    assert paused.factor("formula_refresh") is None and paused.factor("polls") == 3.0
    assert "formula refreshes paused" in paused.hold("formula_refresh").describe()


def test_a_poll_every_10_minutes_runs_every_30_when_spaced():
    p = budget.plan(BudgetSettings(), usage(260))
    last = NOW - dt.timedelta(minutes=12)
    assert budget.next_run(p, "polls", last, 600, NOW) == last + dt.timedelta(minutes=30)
    calm = budget.plan(BudgetSettings(), usage(10))
    assert budget.next_run(calm, "polls", last, 600, NOW) == last + dt.timedelta(minutes=10)


def test_paused_work_resumes_when_old_hours_leave_the_window():
    hourly = (2000,) * 4 + (0,) * 20          # a burst 20-24 hours ago, quiet since: 8,000 in the window
    p = budget.plan(BudgetSettings(), Usage(15_000, 8000, hourly, NOW))
    assert p.projected == 6000 and p.hold("drift").action == "paused" and p.factor("polls") == 3.0
    # drift resumes below 80% of 7,500: when two of the four busy hours have left the window
    assert p.hold("drift").until == NOW.replace(minute=0) + dt.timedelta(hours=2)


def test_writes_are_delayed_only_when_the_org_is_at_its_floor():
    # others used nearly everything: we spent little, the org has 1,000 calls left, its floor is 1,500
    p = budget.plan(BudgetSettings(), usage(10, org_used=14_000))
    assert p.hold("writes").action == "delayed" and p.hold("writes").until == NOW.replace(minute=0) + dt.timedelta(hours=1)
    assert p.factor("polls") is None and p.allowed == 0
    assert "at its floor" in p.hold("writes").describe()


def test_the_others_usage_lowers_what_we_may_spend():
    p = budget.plan(BudgetSettings(), usage(100, org_used=12_000))
    assert p.budget == 7500 and p.allowed == 2350 + 3000 - 1500


def test_unknown_allocation_holds_nothing():
    p = budget.plan(BudgetSettings(), Usage(None, None, (5000,) * 24, NOW))
    assert p.holds == {} and p.budget is None


def test_share_of_budget_for_alerts():
    p = budget.plan(BudgetSettings(share=0.5), Usage(10_000, 6000, (250,) * 24, NOW))
    assert p.share_of_budget == pytest.approx(6000 / 5000)


@pytest.mark.parametrize("records, api, saved", [(100, "rest", 0), (8000, "rest", 0), (10_001, "bulk", 1),
                                                 (200_000, "bulk", 100 - 8)])
def test_cheaper_query(records, api, saved):
    choice = budget.cheaper_query(records)
    assert choice.api == api and choice.saved == saved


def test_cheaper_push():
    assert budget.cheaper_push(1000).api == "rest"
    assert budget.cheaper_push(5000).saved == 25 - 6


@pytest.mark.parametrize("form, field", [({"share": "x", "floor": "10"}, "share"), ({"share": "0", "floor": "1"}, "share"),
                                         ({"share": "50", "floor": "95"}, "floor"), ({"share": "95", "floor": "10"}, "floor")])
def test_settings_refusals_name_the_field(form, field):
    with pytest.raises(budget.BudgetError) as refused:
        budget.parse_settings(form)
    assert refused.value.field == field


def test_settings_from_percent():
    assert budget.parse_settings({"share": "40%", "floor": "5"}) == BudgetSettings(0.4, 0.05)


def test_forecast_per_day():
    assert budget.forecast_per_day(90, 90) == 1440


def test_a_poll_chooses_bulk_before_any_call_when_the_last_poll_predicts_many_changes():
    choice = budget.poll_api(4000, 1800, 600, bulk_above=10_000)     # put off to 3 intervals: ~12,000 expected
    assert (choice.api, choice.expected, choice.saved) == ("bulk", 12_000, 1)
    assert budget.poll_api(4000, 600, 600, bulk_above=10_000).api == "rest"
    assert budget.poll_api(None, None, 600, bulk_above=10_000) == budget.PollChoice("rest", None)   # the page decides


def test_a_catch_up_poll_count_is_spread_over_the_time_it_covered():
    # 50,000 changes found after a 5-hour outage: the next regular poll expects about 1,700, not 50,000
    choice = budget.poll_api(50_000, 600, 600, bulk_above=10_000, covered_seconds=5 * 3600)
    assert (choice.api, choice.expected) == ("rest", 1667)
    assert budget.poll_api(50_000, 600, 600, bulk_above=10_000, covered_seconds=None).api == "bulk"  # not known
