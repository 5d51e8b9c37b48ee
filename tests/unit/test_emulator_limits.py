"""emulator/limits.py: the delivered-events allocation is checked and counted at once."""
import datetime as dt
import threading
from concurrent.futures import ThreadPoolExecutor

from emulator.limits import ApiUsage


class Clock:
    def now(self):
        return dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def test_streams_delivering_together_never_go_past_the_allocation():
    usage = ApiUsage(1000, Clock(), delivered_limit=1000)
    together = threading.Barrier(8)

    def stream(_):
        together.wait()
        delivered = 0
        while n := usage.take_delivered(3):
            delivered += n
        return delivered

    with ThreadPoolExecutor(8) as pool:
        assert sum(pool.map(stream, range(8))) == 1000
    assert usage.deliverable() == 0 and usage.snapshot()["deliveredEvents"] == 1000


def test_the_last_events_of_the_allocation_are_fewer_than_asked():
    usage = ApiUsage(1000, Clock(), delivered_limit=5)
    assert (usage.take_delivered(3), usage.take_delivered(3), usage.take_delivered(3)) == (3, 2, 0)
