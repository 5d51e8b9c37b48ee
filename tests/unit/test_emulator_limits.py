"""emulator/limits.py: the delivered-events allocation is checked and counted at once."""
import datetime as dt
import threading

from emulator.limits import ApiUsage


class Clock:
    def now(self):
        return dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def test_streams_delivering_together_never_go_past_the_allocation():
    usage = ApiUsage(1000, Clock(), delivered_limit=1000)
    taken = []
    barrier = threading.Barrier(8)

    def stream():
        barrier.wait()
        while n := usage.take_delivered(3):
            taken.append(n)

    threads = [threading.Thread(target=stream) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(taken) == 1000 and usage.deliverable() == 0
    assert usage.snapshot()["deliveredEvents"] == 1000


def test_the_last_events_of_the_allocation_are_fewer_than_asked():
    usage = ApiUsage(1000, Clock(), delivered_limit=5)
    assert (usage.take_delivered(3), usage.take_delivered(3), usage.take_delivered(3)) == (3, 2, 0)
