"""jobs/cdc.py against Postgres and the emulator's Pub/Sub API: the position is stored with what the events
brought (a failed batch comes again, a restart resumes after the last stored event, nothing twice), one
subscriber per topic with failover, a refused replay id recorded and survived."""
import threading
import time

import psycopg
import pytest

from emulator.process import start_emulator
from gateway.db import Database
from gateway.pubsub import PubSubClient
from gateway.salesforce import Salesforce
from jobs.cdc import Subscriber
from settings import Settings

TOPIC = "/data/AccountChangeEvent"


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    with start_emulator(tmp_path_factory.mktemp("cdcsub") / "org", "--pubsub-keepalive", "0.2") as running:
        yield running


@pytest.fixture
def db(clean_db):
    with psycopg.connect(clean_db, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS public.cdc_sink_test")
        conn.execute("CREATE TABLE public.cdc_sink_test (n serial, replay bytea, record_id text, op text, "
                     "subscriber text)")
    database = Database(clean_db)
    yield database
    database.close()


def client_factory(emu):
    settings = Settings.from_env(database_url="", sf_instance_url=emu.url, sf_username=emu.username,
                                 sf_password=emu.password, sf_security_token=emu.security_token,
                                 sf_ca_bundle=str(emu.ca_path), sf_pubsub_url=emu.pubsub, salesforce_org_id="")
    rest = Salesforce(settings)
    return lambda: PubSubClient(settings, rest)


class Recorder:
    """The test's sink: one row per change, in the subscriber's transaction; can fail on purpose."""

    def __init__(self, name="s", fail_on=None):
        self.name, self.fail_on, self.failed = name, fail_on, 0

    def __call__(self, conn, fetched):
        for change in fetched.changes:
            conn.execute("INSERT INTO public.cdc_sink_test (replay, record_id, op, subscriber) VALUES (%s,%s,%s,%s)",
                         (change.replay_id, change.record_ids[0], change.operation, self.name))
            if self.fail_on and self.fail_on in [c.fields.get("Name") for c in fetched.changes] and not self.failed:
                self.failed += 1
                raise RuntimeError("the sink failed mid-batch")


RUNNING: list = []


@pytest.fixture(autouse=True)
def stop_leftovers(db):
    """A failed test must not leave its subscriber running against the next test's database."""
    yield
    while RUNNING:
        subscriber, thread = RUNNING.pop()
        subscriber.stop()
        thread.join(10)


def start(subscriber):
    thread = threading.Thread(target=subscriber.run, daemon=True)
    thread.start()
    RUNNING.append((subscriber, thread))
    return thread


def wait_for(check, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


def rows(db):
    """(record id, operation) the sink stored, in order."""
    with db.transaction() as conn:
        return [(r["record_id"], r["op"]) for r in conn.execute(
            "SELECT record_id, op FROM public.cdc_sink_test ORDER BY n").fetchall()]


def position(db):
    return db.fetchone("cdc_position", {"topic": TOPIC})


def connected(db):
    return wait_for(lambda: position(db)["replay_id"] is not None and position(db)["state"] == "connected")


@pytest.mark.parametrize("prefetch", [False, True])      # True: read ahead in a thread, batches merged
def test_each_event_lands_once_across_a_failed_batch_a_stream_reset_and_a_restart(emu, db, prefetch):
    user = emu.salesforce(client="someone")
    sink = Recorder(fail_on="Second")
    subscriber = Subscriber(db, client_factory(emu), TOPIC, sink, backoff_base=0.05, standby_seconds=0.1,
                            prefetch=prefetch)
    thread = start(subscriber)
    connected(db)
    ids = [user.Account.create({"Name": name})["id"] for name in ("First", "Second", "Third")]
    wait_for(lambda: len(rows(db)) == 3)
    assert sink.failed == 1                           # "Second" failed once, came again, landed once
    emu.admin("POST", "/_emulator/pubsub/faults", {"resetStreams": "UNAVAILABLE"})
    ids.append(user.Account.create({"Name": "After reset"})["id"])
    wait_for(lambda: len(rows(db)) == 4)
    subscriber.stop()
    thread.join(10)
    assert not thread.is_alive() and position(db)["state"] == "stopped"
    user.Account.update(ids[0], {"Phone": "1"})       # while no subscriber runs
    user.Account.delete(ids[1])
    again = Subscriber(db, client_factory(emu), TOPIC, Recorder(), backoff_base=0.05, standby_seconds=0.1,
                       prefetch=prefetch)
    thread = start(again)
    wait_for(lambda: len(rows(db)) == 6)
    time.sleep(0.5)                                   # a few keepalives: nothing more arrives
    again.stop()
    thread.join(10)
    assert rows(db) == [(ids[0], "create"), (ids[1], "create"), (ids[2], "create"), (ids[3], "create"),
                         (ids[0], "update"), (ids[1], "delete")]
    assert position(db)["events"] == 6


def test_one_subscriber_per_topic_and_failover_when_its_connection_dies(emu, db):
    user = emu.salesforce(client="someone")
    subscribers = [Subscriber(db, client_factory(emu), TOPIC, Recorder(name), backoff_base=0.05,
                              standby_seconds=0.1) for name in ("a", "b")]
    threads = [start(s) for s in subscribers]
    connected(db)
    time.sleep(0.3)
    assert sum(s.elected.is_set() for s in subscribers) == 1
    first = user.Account.create({"Name": "Before failover"})["id"]
    wait_for(lambda: len(rows(db)) == 1)
    with psycopg.connect(db.url, autocommit=True) as conn:      # the holder's connection dies (its host crashed)
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' "
                     "AND classid = 1128547139 AND objid::int = hashtext(%s)", (TOPIC,))
    second = user.Account.create({"Name": "During failover"})["id"]
    wait_for(lambda: sum(s.terms for s in subscribers) == 2)   # the holder noticed; someone was elected again
    wait_for(lambda: sum(s.elected.is_set() for s in subscribers) == 1)
    wait_for(lambda: len(rows(db)) == 2)
    time.sleep(0.3)
    for s in subscribers:
        s.stop()
    for t in threads:
        t.join(10)
    assert [r[0] for r in rows(db)] == [first, second]        # nothing lost, nothing twice


def test_a_refused_replay_id_is_recorded_and_the_subscription_starts_again(tmp_path, db):
    with start_emulator(tmp_path / "org", "--pubsub-keepalive", "0.2") as emu:
        user = emu.salesforce(client="someone")
        refused = []
        subscriber = Subscriber(db, client_factory(emu), TOPIC, Recorder(), backoff_base=0.05,
                                standby_seconds=0.1, on_refused=lambda conn, exc: refused.append(exc.error_code))
        thread = start(subscriber)
        connected(db)
        user.Account.create({"Name": "Old"})
        wait_for(lambda: len(rows(db)) == 1)
        subscriber.stop()
        thread.join(10)
        emu.admin("POST", "/_emulator/clock", {"advance": 73 * 3600})
        again = Subscriber(db, client_factory(emu), TOPIC, Recorder(), backoff_base=0.05, standby_seconds=0.1,
                           on_refused=lambda conn, exc: refused.append(exc.error_code))
        thread = start(again)
        wait_for(lambda: refused)
        assert refused == ["sfdc.platform.eventbus.grpc.subscription.fetch.replayid.corrupted"]
        assert position(db)["refused_at"] is not None
        connected(db)                                          # from LATEST again
        user = emu.salesforce(client="someone")
        new = user.Account.create({"Name": "New"})["id"]
        wait_for(lambda: len(rows(db)) == 2)
        again.stop()
        thread.join(10)
        assert rows(db)[-1] == (new, "create")


def test_while_the_allocation_is_exceeded_only_the_first_turn_is_first_and_a_lost_lock_ends_the_pause(db):
    """Each turn of the pause covers the objects; only the first moves the poll back to the last event (else every
    turn would read again everything since the pause began); a worker whose lock connection died queues nothing
    (another worker may be the subscriber now)."""
    from gateway.pubsub import AllocationExceeded
    from jobs.cdc import LostElection

    turns = []
    subscriber = Subscriber(db, lambda: None, TOPIC, Recorder(), allocation_pause=0.3, cover_seconds=0.02,
                            on_exceeded=lambda conn, exc, first: turns.append(first))
    exceeded = AllocationExceeded("RESOURCE_EXHAUSTED", "sfdc.platform.eventbus.grpc.subscription.limit.exceeded",
                                  "used up")
    with psycopg.connect(db.url, autocommit=True) as lock_conn:
        subscriber._pause(exceeded, lock_conn)
    assert turns[0] is True and len(turns) > 1 and not any(turns[1:])
    turns.clear()
    lock_conn = psycopg.connect(db.url, autocommit=True)
    lock_conn.close()                                  # the connection that held the lock is gone
    with pytest.raises(LostElection):
        subscriber._pause(exceeded, lock_conn)
    assert turns == []
