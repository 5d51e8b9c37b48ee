"""Fault rules: matching by route pattern, seeded and reproducible draws, validation of error kinds."""
import pytest

from emulator.faults import Faults


def draws(faults, route, n=50):
    return [faults.decide(route) for _ in range(n)]


def test_same_seed_same_faults():
    rules = {"rest.*": {"latency_ms": 10, "jitter_ms": 5, "errors": {"503": 0.3, "UNABLE_TO_LOCK_ROW": 0.3}}}
    first, second = Faults(), Faults()
    first.configure(rules, seed=42)
    second.configure(rules, seed=42)
    assert draws(first, "rest.query") == draws(second, "rest.query")
    kinds = {error for _, error in draws(first, "rest.query", 200)}
    assert kinds == {None, "503", "UNABLE_TO_LOCK_ROW"}


def test_first_matching_pattern_wins_and_others_are_untouched():
    faults = Faults()
    faults.configure({"rest.query": {"latency_ms": 100}, "rest.*": {"errors": {"503": 1.0}}}, seed=1)
    assert faults.decide("rest.query") == (0.1, None)
    assert faults.decide("rest.sobject_create") == (0.0, "503")
    assert faults.decide("composite.collection_create") == (0.0, None)


def test_latency_stays_within_jitter():
    faults = Faults()
    faults.configure({"*": {"latency_ms": 100, "jitter_ms": 20}}, seed=3)
    assert all(0.1 <= latency <= 0.12 for latency, _ in draws(faults, "anything"))


def test_unknown_error_kind_is_refused():
    with pytest.raises(ValueError):
        Faults().configure({"*": {"errors": {"500": 0.5}}})
