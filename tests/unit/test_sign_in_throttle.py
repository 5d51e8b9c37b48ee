"""The sign-in throttle on a clock the test moves: delays that grow and stay bounded, a global ceiling that
slows guessers spread over many addresses, and a known browser that is never kept out."""
from __future__ import annotations

import pytest

from webapp.auth import (ADDRESS_FREE, DEVICE_FREE, GLOBAL_FREE, MAX_ADDRESS_DELAY, MAX_GLOBAL_DELAY, WINDOW,
                         SignInThrottle, client_key)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def throttle(clock):
    return SignInThrottle(clock=clock)


def guess(throttle, clock, address, times, device=None):
    """Wrong passwords as fast as the throttle lets them through."""
    for _ in range(times):
        clock.now += throttle.wait(address, device)
        assert throttle.wait(address, device) == 0
        throttle.failed(address, device)


def test_the_first_wrong_passwords_cost_nothing_then_each_waits_longer(throttle, clock):
    guess(throttle, clock, "203.0.113.9", ADDRESS_FREE)
    assert throttle.wait("203.0.113.9") == 1
    guess(throttle, clock, "203.0.113.9", 1)
    assert throttle.wait("203.0.113.9") == 2
    clock.now += 1
    assert throttle.wait("203.0.113.9") == 1
    assert throttle.wait("198.51.100.7") == 0          # another address is not slowed by this one


def test_an_address_waits_at_most_a_minute_never_a_fifteen_minute_wall(throttle, clock):
    guess(throttle, clock, "203.0.113.9", ADDRESS_FREE + 30)
    assert throttle.wait("203.0.113.9") == MAX_ADDRESS_DELAY
    clock.now += WINDOW
    assert throttle.wait("203.0.113.9") == 0           # forgotten after the window


def test_an_ipv6_client_is_one_client_for_its_whole_64(throttle, clock):
    for i in range(ADDRESS_FREE):
        throttle.failed(f"2001:db8:1:2::{i + 1:x}")
    assert throttle.wait("2001:db8:1:2:ffff::1") > 0
    assert throttle.wait("2001:db8:1:3::1") == 0
    assert client_key("::ffff:203.0.113.9") == client_key("203.0.113.9") == "203.0.113.9"


def test_guesses_from_many_addresses_meet_a_global_ceiling(throttle, clock):
    for i in range(GLOBAL_FREE):                       # one guess per address: no address is ever slowed
        assert throttle.wait(f"2001:db8:{i:x}::1") == 0
        throttle.failed(f"2001:db8:{i:x}::1")
    fresh = "2001:db8:ffff::1"
    assert throttle.wait(fresh) == pytest.approx(1.0)
    # sustained guessing, as fast as allowed, settles at a few seconds between tries (at most the cap)
    for i in range(GLOBAL_FREE * 40):
        clock.now += throttle.wait(f"198.18.{i // 250}.{i % 250}")
        throttle.failed(f"198.18.{i // 250}.{i % 250}")
    assert 4 < throttle.wait(fresh) <= MAX_GLOBAL_DELAY
    assert len(throttle._all) < WINDOW / 4             # under one guess in four seconds


def test_a_browser_that_signed_in_before_is_not_slowed_by_anyone_else(throttle, clock):
    guess(throttle, clock, "203.0.113.9", ADDRESS_FREE + 5)     # a guesser behind the admin's own address
    for i in range(GLOBAL_FREE * 2):
        throttle.failed(f"198.18.0.{i % 250}")
    assert throttle.wait("203.0.113.9") > 0
    assert throttle.wait("203.0.113.9", device="admins-browser") == 0


def test_a_known_browser_has_its_own_allowance_then_counts_as_a_stranger(throttle, clock):
    guess(throttle, clock, "192.0.2.1", DEVICE_FREE - 1, device="stolen")
    assert throttle.wait("192.0.2.77", device="stolen") == 0
    throttle.failed("192.0.2.1", device="stolen")
    for _ in range(ADDRESS_FREE):
        throttle.failed("192.0.2.77", device="stolen")
    assert throttle.wait("192.0.2.77", device="stolen") > 0


def test_asking_does_not_grow_memory_per_address(throttle):
    for i in range(1000):
        throttle.wait(f"2001:db8:{i:x}::1")
    assert len(throttle._by_key) == 0
