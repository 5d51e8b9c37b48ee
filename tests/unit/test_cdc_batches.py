"""The subscriber's read-ahead (jobs/cdc.py `_Reader`): FetchResponses that already wait are stored as one batch,
in order, never more than the cap, and the stream's end or error comes only after what preceded it."""
import pytest

from gateway.pubsub import Fetched
from jobs.cdc import _Reader, merge


def fetched(n: int, events: int) -> Fetched:
    return Fetched([f"change {n}.{i}" for i in range(events)], bytes([n]), 0, f"rpc {n}",
                   [(bytes([n]), "unreadable")] if n == 2 else [])


def reader_over(items, ahead=10) -> _Reader:
    def stream():
        for item in items:
            if isinstance(item, Exception):
                raise item
            yield item
    reader = _Reader(stream(), ahead=ahead)
    reader.join()                # everything read ahead before the subscriber comes for it
    return reader


def test_waiting_batches_are_merged_up_to_the_cap_in_order():
    reader = reader_over([fetched(n, 3) for n in range(1, 6)])
    merged = list(reader.batches(max_events=7))
    # 3 + 4 (three changes and one unreadable event) reach the cap of 7; then 3 + 3; then the last 3
    assert [len(m.changes) for m in merged] == [6, 6, 3]
    assert [m.latest_replay_id for m in merged] == [bytes([2]), bytes([4]), bytes([5])]   # the last one's position
    assert merged[0].failed == [(bytes([2]), "unreadable")]
    assert [c for m in merged for c in m.changes] == [f"change {n}.{i}" for n in range(1, 6) for i in range(3)]


def test_an_error_comes_after_the_batches_before_it_were_handed_over():
    reader = reader_over([fetched(1, 2), fetched(3, 2), RuntimeError("stream reset")])
    batches = reader.batches(max_events=100)
    assert len(next(batches).changes) == 4                      # stored before the error is raised
    with pytest.raises(RuntimeError, match="stream reset"):
        next(batches)


def test_a_keepalive_alone_moves_the_position():
    keepalive = Fetched([], b"\x09", 100, "rpc")
    assert merge([keepalive]) is keepalive
    assert merge([fetched(1, 1), keepalive]).latest_replay_id == b"\x09"
