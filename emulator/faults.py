"""Fault injection, deterministic for a given seed: latency per route and error rates (503, lock, limit)."""
import fnmatch
import random
import threading

ERROR_KINDS = ("503", "UNABLE_TO_LOCK_ROW", "REQUEST_LIMIT_EXCEEDED")


class Faults:
    """Rules keyed by route pattern (Flask endpoint name such as "rest.query", "bulk2.*" or "*").

    A rule: {"latency_ms": 200, "jitter_ms": 50, "errors": {"503": 0.1, "UNABLE_TO_LOCK_ROW": 0.05}}
    (latency_ms plus a uniform 0..jitter_ms); the first matching
    pattern in insertion order wins. Draws come from one random.Random(seed), so a single-threaded
    client sees the same faults on every run with the same seed.
    """

    def __init__(self, seed: int = 0):
        self._lock = threading.Lock()
        self.configure({}, seed)

    def configure(self, rules: dict, seed: int | None = None) -> None:
        for rule in rules.values():
            unknown = set(rule.get("errors", {})) - set(ERROR_KINDS)
            if unknown:
                raise ValueError(f"unknown error kinds {sorted(unknown)}; use {ERROR_KINDS}")
        with self._lock:
            self.rules = dict(rules)
            if seed is not None:
                self.seed = seed
                self._random = random.Random(seed)
            self.injected: dict[str, int] = {}

    def rule_for(self, route: str) -> dict | None:
        for pattern, rule in self.rules.items():
            if fnmatch.fnmatchcase(route, pattern):
                return rule
        return None

    def decide(self, route: str) -> tuple[float, str | None]:
        """(latency in seconds, error kind or None) for one call of `route`."""
        rule = self.rule_for(route)
        if rule is None:
            return 0.0, None
        with self._lock:
            jitter = rule.get("jitter_ms", 0) * self._random.random() if rule.get("jitter_ms") else 0.0
            error = None
            for kind in ERROR_KINDS:
                rate = rule.get("errors", {}).get(kind, 0)
                if rate and self._random.random() < rate:
                    error = kind
                    self.injected[kind] = self.injected.get(kind, 0) + 1
                    break
        return (rule.get("latency_ms", 0) + jitter) / 1000.0, error

    def record_error_rate(self, route: str) -> float:
        """Rate of per-record UNABLE_TO_LOCK_ROW inside sObject Collections for `route`."""
        rule = self.rule_for(route)
        return (rule or {}).get("record_errors", {}).get("UNABLE_TO_LOCK_ROW", 0.0)

    def draw(self) -> float:
        with self._lock:
            return self._random.random()

    def snapshot(self) -> dict:
        with self._lock:
            return {"seed": self.seed, "rules": self.rules, "injected": dict(self.injected)}
