"""The write path's send window (core/send_window.py): part-filled calls wait for more records, never longer
than the window, and only as long as the budget's pressure asks."""
from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from core import send_window
from core.send_window import Pending, plan_claim, window_seconds

NOW = dt.datetime(2026, 6, 1, 12, tzinfo=dt.timezone.utc)


def ago(seconds: float) -> dt.datetime:
    return NOW - dt.timedelta(seconds=seconds)


def test_the_window_is_the_relaxed_one_until_the_budget_presses_then_grows_to_the_pressed_one():
    assert window_seconds(0, 3600, 0.2) == 0
    assert window_seconds(0, 3600, send_window.RELAXED_BELOW) == 0
    assert 0 < window_seconds(0, 3600, 0.65) < 3600
    assert window_seconds(0, 3600, send_window.PRESSED_FROM) == 3600
    assert window_seconds(0, 3600, 5.0) == 3600
    assert window_seconds(2, 1, 0.9) == 2            # never shorter than the relaxed window


def test_without_a_window_nothing_waits():
    assert plan_claim([Pending(1, 3, ago(0))], 0, NOW) == send_window.Claim({}, None)


def test_a_small_batch_waits_until_its_oldest_record_has_waited_the_window():
    claim = plan_claim([Pending(1, 3, ago(10))], 60, NOW)
    assert claim.limits == {1: 0} and claim.wake_at == NOW + dt.timedelta(seconds=50)
    assert plan_claim([Pending(1, 3, ago(60))], 60, NOW).limits == {}       # its time has come: sent


def test_full_calls_go_now_and_only_the_rest_waits():
    claim = plan_claim([Pending(1, 605, ago(5)), Pending(2, 400, ago(5))], 60, NOW)
    assert claim.limits == {1: 600}                   # mapping 2 fills two calls exactly: nothing waits


def test_a_retry_is_never_held():
    assert plan_claim([Pending(1, 1, ago(0), retries=True)], 60, NOW).limits == {}


def test_the_earliest_end_of_a_window_is_when_to_wake():
    claim = plan_claim([Pending(1, 1, ago(30)), Pending(2, 1, ago(50))], 60, NOW)
    assert claim.wake_at == NOW + dt.timedelta(seconds=10)


def test_children_wait_whole_while_a_record_they_may_name_is_held():
    claim = plan_claim([Pending(1, 1, ago(10)), Pending(2, 200, ago(10), names_parents=True)], 60, NOW)
    assert claim.limits == {1: 0, 2: 0} and claim.wake_at == NOW + dt.timedelta(seconds=50)
    # nothing held: the children's full calls go at once
    assert plan_claim([Pending(2, 200, ago(10), names_parents=True)], 60, NOW).limits == {}


def test_a_child_whose_window_ended_takes_the_parents_it_may_name_with_it():
    claim = plan_claim([Pending(1, 1, ago(10)), Pending(2, 3, ago(60), names_parents=True)], 60, NOW)
    assert claim == send_window.Claim({}, None)
    retry = plan_claim([Pending(1, 1, ago(10)), Pending(2, 3, ago(5), retries=True, names_parents=True)], 60, NOW)
    assert retry == send_window.Claim({}, None)


@given(st.lists(st.tuples(st.integers(1, 2000), st.integers(0, 7200), st.booleans(), st.booleans()), max_size=6),
       st.integers(1, 3600))
def test_only_full_calls_go_before_the_window_ends_and_nothing_waits_past_it(mappings, seconds):
    pending = [Pending(i, records, ago(age), retry, child) for i, (records, age, retry, child) in enumerate(mappings)]
    claim = plan_claim(pending, seconds, NOW)
    for p in pending:
        most = claim.limits.get(p.mapping_id)
        if p.retries or p.oldest + dt.timedelta(seconds=seconds) <= NOW:
            assert most is None                                   # due (or a retry): everything goes
        elif most is not None:
            assert most % send_window.FULL == 0 and most < p.records
            assert p.records - send_window.FULL < most or (p.names_parents and most == 0)
            assert NOW < claim.wake_at <= p.oldest + dt.timedelta(seconds=seconds)
    if claim.limits:                                              # children never go while a record is held
        assert all(claim.limits.get(p.mapping_id) == 0 for p in pending if p.names_parents)


def test_held_requests_ride_along_in_the_room_a_call_that_goes_anyway_leaves():
    # mapping 1's 600 fill three requests of a five-request call: room for two more, the oldest held go
    pending = [Pending(1, 605, ago(5)), Pending(2, 1, ago(30)), Pending(3, 2, ago(20))]
    claim = plan_claim(pending, 3600, NOW, bundle=5)
    assert claim.limits == {1: 600}                       # 2 and 3 ride; mapping 1's newest 5 wait
    assert plan_claim(pending, 3600, NOW, bundle=1).limits == {1: 600, 2: 0, 3: 0}
    # nothing goes anyway: nothing rides
    assert plan_claim([Pending(2, 1, ago(30)), Pending(3, 2, ago(20))], 3600, NOW, bundle=5).limits == {2: 0, 3: 0}
    # a child never rides ahead of a held record it may name
    claim = plan_claim([Pending(1, 200, ago(5)), Pending(2, 1, ago(5), names_parents=True)], 3600, NOW, bundle=5)
    assert claim == send_window.Claim({}, None) or claim.limits.get(2) == 0


@given(st.lists(st.tuples(st.integers(1, 2000), st.integers(0, 7200), st.booleans()), max_size=6),
       st.integers(1, 3600), st.integers(1, 5))
def test_riding_along_never_costs_a_call(mappings, seconds, bundle):
    pending = [Pending(i, records, ago(age), retry) for i, (records, age, retry) in enumerate(mappings)]

    def calls(limits):
        requests = sum(-(-limits.get(p.mapping_id, p.records) // send_window.FULL) for p in pending)
        return -(-requests // bundle)
    alone, riding = plan_claim(pending, seconds, NOW), plan_claim(pending, seconds, NOW, bundle=bundle)
    assert calls(riding.limits) == calls(alone.limits)
    assert set(riding.limits) <= set(alone.limits)
