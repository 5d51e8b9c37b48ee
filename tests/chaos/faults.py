"""What production does to the system, injected on a seeded schedule: the same seed injects the same
faults at the same moments (relative to the start of the load)."""
from __future__ import annotations

import contextlib
import logging
import os
import random
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass

import psycopg

from tests.chaos.system import OUTBOUND_TOKEN, System

log = logging.getLogger("chaos.faults")

# Emulator routes the sync calls (REST and Collections); login stays clean, as in the list.
SYNC_ROUTES = ("rest.*", "composite.*")
SLOW_CLIENTS = 12   # more than the web's 2 x 4 threads


@dataclass(frozen=True)
class Injection:
    at: float          # seconds after the load started
    kind: str
    duration: float    # how long the condition lasts (0: an instant event)
    pick: float        # a seeded draw the fault may use (which consumer, say)


# name -> (needs a poll to recover from, needs SQLite Huey storage)
KINDS = {
    "kill_consumer": (False, False),
    "kill_web": (False, False),
    "pg_terminate": (False, False),
    "latency_spike": (False, False),
    "http_503": (False, False),
    "unable_to_lock_row": (False, False),
    "request_limit_exceeded": (False, False),
    "expire_sessions": (False, False),
    "om_duplicate_reorder": (False, False),
    "om_delay": (False, False),
    "om_drop_after_24h": (True, False),
    "huey_file_deleted": (False, True),
    "huey_file_unwritable": (False, True),
    "slow_clients": (False, False),
    "validation_rule": (False, False),
    "duplicate_rule": (False, False),
}
# An org's own refusals (issue 15), on Invoice__c while the fault lasts: the records refused stay FAILED
# with Salesforce's message on the row (the verdict counts them as failed with reason, not lost).
ORG_RULES = {
    "validation_rule": {"validationRules": [{"name": "Chaos_Amount_Approval", "condition": "Amount__c > 8000",
                                             "message": "Amounts over 8,000 need an approval",
                                             "field": "Amount__c"}]},
    "duplicate_rule": {"duplicateRules": [{"name": "Chaos_Same_Status", "fields": ["Status__c"]}]},
}
REFUSAL_CODES = ("FIELD_CUSTOM_VALIDATION_EXCEPTION", "DUPLICATES_DETECTED")


def available_kinds(has_poll: bool, sqlite_huey: bool = True) -> list[str]:
    return [k for k, (poll, sqlite) in KINDS.items() if (has_poll or not poll) and (sqlite_huey or not sqlite)]


def schedule(seed: int, seconds: float, kinds: list[str], every: float) -> list[Injection]:
    """One fault about every `every` seconds; kinds come in seeded shuffled rounds, so a run long enough
    for one round injects every kind; conditions that last overlap the next faults: they mix."""
    rng = random.Random(f"faults-{seed}")
    plan, t, bag = [], rng.uniform(0.5, every), []
    while t < seconds - 1:
        if not bag:
            bag = list(kinds)
            rng.shuffle(bag)
        plan.append(Injection(at=round(t, 3), kind=bag.pop(), duration=round(rng.uniform(1, every * 1.5), 3),
                              pick=rng.random()))
        t += rng.uniform(every * 0.5, every * 1.5)
    return plan


class Injector(threading.Thread):
    """Plays a schedule against a running system, restarting what it killed when the fault ends."""

    def __init__(self, system: System, plan: list[Injection], seed: int):
        super().__init__(name="chaos-injector", daemon=True)
        self.system, self.plan, self.seed = system, plan, seed
        self.injected: Counter = Counter()
        self.stopping = threading.Event()
        self._active_rules: dict[int, dict] = {}   # injection index -> emulator fault rule part
        self._org_rules: dict[int, dict] = {}      # injection index -> Invoice__c rules part (ORG_RULES)
        self._lock = threading.Lock()
        self._timers: list[threading.Timer] = []
        self._slow: list[socket.socket] = []
        self.started = time.monotonic()

    def run(self) -> None:
        self.started = time.monotonic()
        for index, injection in enumerate(self.plan):
            if self.stopping.wait(max(0.0, self.started + injection.at - time.monotonic())):
                return
            try:
                self.inject(index, injection)
                self.injected[injection.kind] += 1
            except Exception:  # noqa: BLE001 - a fault that could not be injected is logged, not fatal
                log.exception("could not inject %s", injection.kind)

    def stop(self) -> None:
        """End every condition now (the drain phase runs without faults) and bring processes back."""
        self.stopping.set()
        self.join(10)
        for t in self._timers:
            t.cancel()
        with self._lock:
            self._active_rules.clear()
            self._org_rules.clear()
        self._push_rules()
        self._push_org_rules()
        e = self.system.emulator
        e.admin("PUT", "/_emulator/outbound/chaos", {"seed": self.seed, "redeliver": 0.0, "reorder": False})
        e.admin("POST", "/_emulator/outbound/resume")
        self._huey_writable()
        self._close_slow_clients()
        self.system.ensure_running()

    def later(self, seconds: float, fn) -> None:
        timer = threading.Timer(seconds, self._guard, (fn,))
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    def _guard(self, fn) -> None:
        if self.stopping.is_set():
            return
        try:
            fn()
        except Exception:  # noqa: BLE001
            log.exception("fault recovery failed")

    # -- the faults ---------------------------------------------------------------------------------
    def inject(self, index: int, f: Injection) -> None:
        s, e = self.system, self.system.emulator
        log.info("inject %s for %.1fs", f.kind, f.duration)
        if f.kind == "kill_consumer":
            victim = s.consumers[int(f.pick * len(s.consumers))]
            victim.kill()
            self.later(f.duration, victim.start)
        elif f.kind == "kill_web":
            s.web.kill()
            self.later(f.duration, s.web.start)
        elif f.kind == "pg_terminate":
            terminate_backends(s.database_url)
        elif f.kind in ("latency_spike", "http_503", "unable_to_lock_row", "request_limit_exceeded"):
            rule = {"latency_spike": {"latency_ms": 1500},
                    "http_503": {"errors": {"503": 0.3}},
                    "unable_to_lock_row": {"errors": {"UNABLE_TO_LOCK_ROW": 0.2},
                                           "record_errors": {"UNABLE_TO_LOCK_ROW": 0.2}},
                    "request_limit_exceeded": {"errors": {"REQUEST_LIMIT_EXCEEDED": 0.5}}}[f.kind]
            with self._lock:
                self._active_rules[index] = rule
            self._push_rules()
            self.later(f.duration, lambda: self._end_rule(index))
        elif f.kind in ORG_RULES:
            with self._lock:
                self._org_rules[index] = ORG_RULES[f.kind]
            self._push_org_rules()
            self.later(f.duration, lambda: self._end_org_rule(index))
        elif f.kind == "expire_sessions":
            e.admin("POST", "/_emulator/sessions/expire")
        elif f.kind == "om_duplicate_reorder":
            e.admin("PUT", "/_emulator/outbound/chaos", {"seed": self.seed + index, "redeliver": 0.5, "reorder": True})
            self.later(f.duration, lambda: e.admin("PUT", "/_emulator/outbound/chaos",
                                                   {"seed": self.seed, "redeliver": 0.0, "reorder": False}))
        elif f.kind == "om_delay":
            e.admin("POST", "/_emulator/outbound/pause")
            self.later(f.duration, lambda: e.admin("POST", "/_emulator/outbound/resume"))
        elif f.kind == "om_drop_after_24h":
            # Salesforce gives up on a notification 24 h after it was queued: notifications pile up while
            # the sender is held, then the scaled clock jumps 25 h and the sender drops them all.
            e.admin("POST", "/_emulator/outbound/pause")

            def drop():
                e.admin("POST", "/_emulator/clock", {"advance": 25 * 3600})
                e.admin("POST", "/_emulator/outbound/resume")
            self.later(f.duration, drop)
        elif f.kind == "huey_file_deleted":
            for suffix in ("", "-wal", "-shm", "-journal"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(str(s.huey_path) + suffix)
        elif f.kind == "huey_file_unwritable":
            os.chmod(s.huey_path.parent, 0o500)
            with contextlib.suppress(FileNotFoundError):
                os.chmod(s.huey_path, 0o400)
            self.later(f.duration, self._huey_writable)
        elif f.kind == "slow_clients":
            # issue 14: sockets that announce an Outbound Message body and never send it held every thread
            port = int(s.web_url.rsplit(":", 1)[1])
            head = (f"POST /outbound/{OUTBOUND_TOKEN} HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\n"
                    "Content-Length: 100000\r\n\r\n").encode()
            for _ in range(SLOW_CLIENTS):
                with contextlib.suppress(OSError):
                    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                    sock.sendall(head)
                    with self._lock:
                        self._slow.append(sock)
            # held past the web's body deadline (2 s), so that the server, not the client, ends them
            self.later(max(f.duration, 3.0), self._close_slow_clients)
        else:
            raise ValueError(f"unknown fault {f.kind}")

    def _close_slow_clients(self) -> None:
        with self._lock:
            socks, self._slow = self._slow, []
        for sock in socks:
            sock.close()

    def _end_rule(self, index: int) -> None:
        with self._lock:
            self._active_rules.pop(index, None)
        self._push_rules()

    def _push_rules(self) -> None:
        """Overlapping conditions mix into one rule per route pattern (the emulator takes the first match)."""
        with self._lock:
            merged: dict = {}
            for rule in self._active_rules.values():
                merged["latency_ms"] = max(merged.get("latency_ms", 0), rule.get("latency_ms", 0))
                for key in ("errors", "record_errors"):
                    if key in rule:
                        merged.setdefault(key, {}).update(rule[key])
        rules = {pattern: merged for pattern in SYNC_ROUTES} if merged else {}
        self.system.emulator.admin("POST", "/_emulator/faults", {"seed": self.seed, "rules": rules})

    def _end_org_rule(self, index: int) -> None:
        with self._lock:
            self._org_rules.pop(index, None)
        self._push_org_rules()

    def _push_org_rules(self) -> None:
        with self._lock:
            merged: dict = {}
            for part in self._org_rules.values():
                for key, rules in part.items():
                    merged.setdefault(key, []).extend(r for r in rules if r not in merged.get(key, []))
        self.system.emulator.admin("PUT", "/_emulator/rules", {"Invoice__c": merged} if merged else {})

    def _huey_writable(self) -> None:
        os.chmod(self.system.huey_path.parent, 0o700)
        with contextlib.suppress(FileNotFoundError):
            os.chmod(self.system.huey_path, 0o600)


def terminate_backends(database_url: str) -> int:
    """What a Postgres restart does to the system's connections, without restarting a server other
    developers' test runs share: every backend of this database is terminated."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        return len(conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchall())
