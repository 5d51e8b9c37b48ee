"""One contract for every Huey storage HUEY_URL can name (SQLite, Postgres, Redis), as huey's own
tests/test_storage.py does: the jobs must behave the same whichever one a deployment picks."""
from __future__ import annotations

import datetime as dt
import os
import threading
import uuid

import psycopg
import pytest
import redis
from huey.exceptions import TaskLockedException

from jobs.queue import make_huey
from tests.support.deployment import REDIS_URL, require_redis
from tests.support.processes import postgres_url



@pytest.fixture(params=["sqlite", "postgres", "redis"])
def huey_url(request, tmp_path):
    """A storage URL and a queue name of this test's own; Redis keys are removed afterwards."""
    name = f"contract_{uuid.uuid4().hex[:10]}"
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'huey.db'}", name
    elif request.param == "postgres":
        yield postgres_url(request.getfixturevalue("pg_url")), name
    else:
        require_redis()
        yield REDIS_URL, name
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(f"*{name}*"):
            client.delete(key)


@pytest.fixture
def huey(huey_url):
    url, name = huey_url
    instance = make_huey(url, name=name)
    yield instance
    instance.storage.flush_all()
    instance.storage.close()


@pytest.fixture
def storage(huey):
    return huey.storage


def now():
    return dt.datetime.now()


class TestStorageContract:
    def test_queue_is_first_in_first_out_and_each_item_leaves_once(self, storage):
        assert storage.dequeue() is None
        for i in range(5):
            storage.enqueue(f"task-{i}".encode())
        assert storage.queue_size() == 5
        assert storage.enqueued_items() == [f"task-{i}".encode() for i in range(5)]
        assert storage.enqueued_items(limit=2) == [b"task-0", b"task-1"]
        assert [storage.dequeue() for _ in range(5)] == [f"task-{i}".encode() for i in range(5)]
        assert storage.dequeue() is None
        assert storage.queue_size() == 0

    def test_higher_priority_first_when_supported(self, storage):
        if not storage.priority:
            with pytest.raises(NotImplementedError):
                storage.enqueue(b"urgent", priority=10)
            return
        storage.enqueue(b"low", priority=1)
        storage.enqueue(b"normal")
        storage.enqueue(b"urgent", priority=10)
        storage.enqueue(b"low-2", priority=1)
        assert [storage.dequeue() for _ in range(4)] == [b"urgent", b"low", b"low-2", b"normal"]

    def test_flush_queue(self, storage):
        storage.enqueue(b"a")
        storage.enqueue(b"b")
        storage.flush_queue()
        assert storage.queue_size() == 0
        assert storage.dequeue() is None

    def test_schedule_gives_back_due_items_once_in_time_order(self, storage):
        t0 = now()
        storage.add_to_schedule(b"later", t0 + dt.timedelta(seconds=30))
        storage.add_to_schedule(b"first", t0 + dt.timedelta(seconds=10))
        storage.add_to_schedule(b"much-later", t0 + dt.timedelta(hours=1))
        assert storage.schedule_size() == 3
        assert storage.scheduled_items() == [b"first", b"later", b"much-later"]
        assert storage.scheduled_items(limit=1) == [b"first"]
        assert storage.read_schedule(t0) == []
        assert storage.read_schedule(t0 + dt.timedelta(minutes=1)) == [b"first", b"later"]
        assert storage.read_schedule(t0 + dt.timedelta(minutes=1)) == []
        assert storage.schedule_size() == 1
        storage.flush_schedule()
        assert storage.read_schedule(t0 + dt.timedelta(days=1)) == []

    def test_results_put_peek_pop(self, storage):
        from huey.constants import EmptyData

        assert storage.peek_data("k1") is EmptyData
        assert not storage.has_data_for_key("k1")
        storage.put_data("k1", b"v1")
        storage.put_data("k2", b"v2", is_result=True)
        storage.put_data("k1", b"v1-new")
        assert storage.peek_data("k1") == b"v1-new"
        assert storage.has_data_for_key("k1")
        assert storage.peek_many(["k1", "k2", "missing"]) == {"k1": b"v1-new", "k2": b"v2"}
        assert storage.result_store_size() == 2
        assert storage.result_items() == {"k1": b"v1-new", "k2": b"v2"}
        assert storage.pop_data("k1") == b"v1-new"
        assert storage.pop_data("k1") is EmptyData
        assert storage.delete_data("k2") is True
        assert storage.delete_data("k2") is False
        storage.put_data("k3", b"v3")
        storage.flush_results()
        assert storage.result_store_size() == 0

    def test_put_if_empty_sets_only_once(self, storage):
        assert storage.put_if_empty("lock", b"first") is True
        assert storage.put_if_empty("lock", b"second") is False
        assert storage.peek_data("lock") == b"first"
        storage.delete_data("lock")
        assert storage.put_if_empty("lock", b"third") is True

    def test_counters(self, storage):
        assert storage.incr("c") == 1
        assert storage.incr("c", 5) == 6
        storage.delete_counter("c")
        assert storage.incr("c") == 1
        storage.flush_counters()
        assert storage.incr("c") == 1

    def test_flush_all_empties_everything(self, storage):
        storage.enqueue(b"a")
        storage.add_to_schedule(b"s", now())
        storage.put_data("k", b"v")
        storage.flush_all()
        assert (storage.queue_size(), storage.schedule_size(), storage.result_store_size()) == (0, 0, 0)

    def test_queue_survives_a_new_process_view_of_the_storage(self, huey_url):
        """What a restarted consumer sees: a fresh instance on the same URL and name finds the tasks."""
        url, name = huey_url
        first = make_huey(url, name=name)
        first.storage.enqueue(b"left-behind")
        first.storage.close()
        second = make_huey(url, name=name)
        try:
            assert second.storage.dequeue() == b"left-behind"
        finally:
            second.storage.flush_all()
            second.storage.close()

    def test_concurrent_consumers_each_take_different_tasks(self, storage):
        items = {f"t{i}".encode() for i in range(200)}
        for item in sorted(items):
            storage.enqueue(item)
        taken, lock = [], threading.Lock()

        def consume():
            while (data := storage.dequeue()) is not None:
                with lock:
                    taken.append(data)

        threads = [threading.Thread(target=consume) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(taken) == sorted(items)

    def test_task_round_trip_by_hand(self, huey):
        @huey.task()
        def add(a, b):
            return a + b

        result = add(2, 3)
        assert len(huey.pending()) == 1
        huey.execute(huey.dequeue())
        assert result.get() == 5
        assert huey.dequeue() is None

    def test_scheduled_task_waits_in_the_schedule_then_runs(self, huey):
        @huey.task()
        def shout(word):
            return word.upper()

        result = shout.schedule(("later",), delay=3600)
        huey.execute(huey.dequeue())  # not due: the consumer parks it in the schedule
        assert len(huey.scheduled()) == 1 and result.get() is None
        later = huey._get_timestamp() + dt.timedelta(hours=2)
        due = huey.read_schedule(later)
        assert len(due) == 1
        huey.execute(due[0], timestamp=later)
        assert result.get() == "LATER"

    def test_revoked_task_does_not_run(self, huey):
        ran = []

        @huey.task()
        def record(x):
            ran.append(x)

        result = record(1)
        result.revoke()
        huey.execute(huey.dequeue())
        assert ran == []

    def test_task_lock_is_exclusive(self, huey):
        with huey.lock_task("only-one"):
            with pytest.raises(TaskLockedException):
                with huey.lock_task("only-one"):
                    pass
        with huey.lock_task("only-one"):
            pass


def test_postgres_tables_live_in_the_connector_schema(pg_url):
    instance = make_huey(postgres_url(pg_url), name=f"schema_{uuid.uuid4().hex[:8]}")
    instance.storage.enqueue(b"x")
    with psycopg.connect(pg_url) as conn:
        tables = {r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'forcebridge' AND tablename LIKE 'huey%'")}
    assert tables == {"huey_task", "huey_schedule", "huey_kv", "huey_counter"}
    instance.storage.flush_all()
    instance.storage.close()


def test_postgres_consumer_waiting_wakes_up_when_a_task_arrives(pg_url):
    """A blocked dequeue returns the task enqueued by another process instead of waiting out its
    timeout; the timeout is long so that a missing wake-up fails the test instead of passing slowly."""
    name = f"wake_{uuid.uuid4().hex[:8]}"
    waiter = make_huey(postgres_url(pg_url), name=name, read_timeout=60)
    producer = make_huey(postgres_url(pg_url), name=name)
    got = []
    listening = threading.Event()
    original = waiter.storage._listener

    def listener_then_signal():
        conn = original()
        listening.set()
        return conn

    waiter.storage._listener = listener_then_signal
    t = threading.Thread(target=lambda: got.append(waiter.storage.dequeue()))
    t.start()
    assert listening.wait(30)
    producer.storage.enqueue(b"wake-up")
    t.join(90)
    assert got == [b"wake-up"]
    producer.storage.close()
    waiter.storage.close()


@pytest.mark.timeout(60)  # shared sockets would rather hang than fail
def test_postgres_storage_survives_a_fork(pg_url):
    """gunicorn forks web workers from a master that may have used the storage: parent and child then
    work at the same time, each on connections of its own (shared sockets would garble both)."""
    instance = make_huey(postgres_url(pg_url), name=f"fork_{uuid.uuid4().hex[:8]}", blocking=False)
    storage = instance.storage
    storage.enqueue(b"warm-up")  # the parent's pool is open before the fork
    assert storage.dequeue() == b"warm-up"

    def busy(tag: bytes) -> int:
        for i in range(200):
            storage.enqueue(tag + str(i).encode())
            storage.put_data(tag + str(i).encode(), b"x")
        return storage.incr(tag)

    pid = os.fork()
    if pid == 0:  # the child: its exit status says whether it could work
        try:
            os._exit(0 if busy(b"child-") == 1 else 1)
        except BaseException:  # noqa: BLE001 - any failure is a non-zero exit
            os._exit(2)
    parent = busy(b"parent-")
    _, status = os.waitpid(pid, 0)
    assert (os.waitstatus_to_exitcode(status), parent) == (0, 1)
    assert storage.queue_size() == 400 and storage.result_store_size() == 400
    storage.flush_all()
    storage.close()
