"""Load on both sides at once: people in Salesforce, an app writing Postgres, and records changed on both
sides at the same moment. Each actor draws from its own seeded RNG, so what it tries is reproducible."""
from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import psycopg
from psycopg import sql
from simple_salesforce.exceptions import SalesforceError

from tests.chaos.system import CLIENT_PEOPLE, System

OBJECT = "Invoice__c"
TABLE = sql.Identifier("salesforce", "invoice__c")
STATUSES = ("Draft", "Sent", "Paid")


@dataclass
class Ledger:
    """What the load did, shared by the actors (thread-safe)."""
    done: Counter = field(default_factory=Counter)        # "sf.create", "pg.update", ...
    errors: Counter = field(default_factory=Counter)      # refused attempts by kind (faults hit people too)
    live: set = field(default_factory=set)                # external ids believed to exist
    both_sides: list = field(default_factory=list)        # (external id, sfid, pg name, sf name)
    touched: dict = field(default_factory=lambda: {"pg": set(), "sf": set()})   # external ids changed per side
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, what: str, ext: str) -> None:
        with self.lock:
            self.done[what] += 1
            self.touched[what.split(".")[0]].add(ext)

    def pick(self, rng: random.Random) -> str | None:
        with self.lock:
            return rng.choice(sorted(self.live)) if self.live else None

    def changes(self) -> int:
        return sum(self.done.values())


class Actor(threading.Thread):
    def __init__(self, name: str, system: System, ledger: Ledger, rate: float, seed: int, stop: threading.Event):
        super().__init__(name=name, daemon=True)
        self.system, self.ledger, self.rate, self.stop = system, ledger, rate, stop
        self.rng = random.Random(f"{name}-{seed}")
        self.serial = 0

    def run(self) -> None:
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        while not self.stop.is_set():
            try:
                self.step()
            except Exception as exc:  # noqa: BLE001 - a refused write is part of the weather; count it
                self.ledger.errors[f"{self.name}:{_code(exc)}"] += 1
            next_at += interval
            self.stop.wait(max(0.0, next_at - time.monotonic()))

    def step(self) -> None:
        raise NotImplementedError


def _code(exc: Exception) -> str:
    content = getattr(exc, "content", None)
    if isinstance(content, list) and content and isinstance(content[0], dict):
        return content[0].get("errorCode", type(exc).__name__)
    return type(exc).__name__


class SalesforceUsers(Actor):
    """People editing Invoice__c in Salesforce: create, update, delete (deletes only when the system has a
    poll to notice them: Outbound Messages never fire for deletes)."""

    def __init__(self, *args, deletes: bool = False):
        super().__init__(*args)
        self.deletes = deletes
        self.sf = None

    def step(self) -> None:
        if self.sf is None:
            self.sf = self.system.emulator.salesforce(client=CLIENT_PEOPLE)
        roll = self.rng.random()
        if roll < 0.4 or not self.ledger.live:
            self.serial += 1
            ext = f"S-{self.serial}"
            self.sf.Invoice__c.create({"Name": f"sf {self.serial}", "External_Id__c": ext,
                                       "Amount__c": self.rng.randrange(1, 10_000),
                                       "Status__c": self.rng.choice(STATUSES)})
            with self.ledger.lock:
                self.ledger.live.add(ext)
            self.ledger.count("sf.create", ext)
            return
        ext = self.ledger.pick(self.rng)
        record_id = sfid_in_salesforce(self.sf, ext)
        if record_id is None:
            return   # not in Salesforce yet (on its way) or deleted meanwhile
        if roll < 0.9 or not self.deletes:
            self.sf.Invoice__c.update(record_id, {"Amount__c": self.rng.randrange(1, 10_000),
                                                  "Status__c": self.rng.choice(STATUSES)})
            self.ledger.count("sf.update", ext)
        else:
            self.sf.Invoice__c.delete(record_id)
            with self.ledger.lock:
                self.ledger.live.discard(ext)
            self.ledger.count("sf.delete", ext)


def sfid_in_salesforce(sf, ext: str) -> str | None:
    rows = sf.query(f"SELECT Id FROM Invoice__c WHERE External_Id__c = '{ext}'")["records"]
    return rows[0]["Id"] if rows else None


class PostgresApp(Actor):
    """An app writing the mapped table: inserts, updates, deletes, one short transaction each. A
    connection killed by a fault is opened again."""

    def __init__(self, *args):
        super().__init__(*args)
        self.conn: psycopg.Connection | None = None

    def execute(self, statement: sql.Composable, params) -> int:
        if self.conn is None or self.conn.closed:
            self.conn = psycopg.connect(self.system.database_url, autocommit=True, connect_timeout=5)
        try:
            return self.conn.execute(statement, params).rowcount
        except psycopg.OperationalError:
            self.conn.close()
            raise

    def step(self) -> None:
        roll = self.rng.random()
        if roll < 0.4 or not self.ledger.live:
            self.serial += 1
            ext = f"P-{self.serial}"
            self.execute(sql.SQL("INSERT INTO {} (name, external_id__c, amount__c, status__c) VALUES (%s, %s, %s, %s)").format(TABLE),
                         (f"pg {self.serial}", ext, self.rng.randrange(1, 10_000), self.rng.choice(STATUSES)))
            with self.ledger.lock:
                self.ledger.live.add(ext)
            self.ledger.count("pg.insert", ext)
            return
        ext = self.ledger.pick(self.rng)
        if roll < 0.85:
            if self.execute(sql.SQL("UPDATE {} SET name = %s, amount__c = %s WHERE external_id__c = %s").format(TABLE),
                            (f"pg edit {self.rng.randrange(10**6)}", self.rng.randrange(1, 10_000), ext)):
                self.ledger.count("pg.update", ext)
        else:
            if self.execute(sql.SQL("DELETE FROM {} WHERE external_id__c = %s").format(TABLE), (ext,)):
                with self.ledger.lock:
                    self.ledger.live.discard(ext)
                self.ledger.count("pg.delete", ext)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


class BothSides(Actor):
    """The same record's Name changed in Postgres and in Salesforce within milliseconds: a conflict
    when the Salesforce change reaches Postgres before the Postgres change reached Salesforce."""

    def __init__(self, *args):
        super().__init__(*args)
        self.pg = PostgresApp(self.name + "-pg", self.system, self.ledger, 1, 0, self.stop)
        self.sf = None

    def step(self) -> None:
        if self.sf is None:
            self.sf = self.system.emulator.salesforce(client=CLIENT_PEOPLE)
        ext = self.ledger.pick(self.rng)
        if ext is None:
            return
        record_id = sfid_in_salesforce(self.sf, ext)
        if record_id is None:
            return
        self.serial += 1
        pg_name, sf_name = f"both pg {self.serial}", f"both sf {self.serial}"
        if self.pg.execute(sql.SQL("UPDATE {} SET name = %s WHERE external_id__c = %s").format(TABLE), (pg_name, ext)):
            self.ledger.count("pg.both", ext)
        self.sf.Invoice__c.update(record_id, {"Name": sf_name})
        self.ledger.count("sf.both", ext)
        with self.ledger.lock:
            self.ledger.both_sides.append((ext, record_id, pg_name, sf_name))


def run_load(system: System, seconds: float, rate: float, seed: int, sf_deletes: bool) -> Ledger:
    """Run every actor for `seconds`; `rate` is operations per second per side."""
    ledger, stop = Ledger(), threading.Event()
    actors = [SalesforceUsers("sf", system, ledger, rate, seed, stop, deletes=sf_deletes),
              PostgresApp("pg", system, ledger, rate, seed, stop),
              BothSides("both", system, ledger, max(0.2, rate / 10), seed, stop)]
    for a in actors:
        a.start()
    stop.wait(seconds)
    stop.set()
    for a in actors:
        a.join(60)
    return ledger
