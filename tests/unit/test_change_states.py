"""The change log's state machine (core/change_states.py), without Postgres."""
import json

import pytest

from core.change_states import (FINISHED, OPEN, Action, Backoff, RecordResult, State, from_states, requested,
                                settle)
from core.changes import ChangeLogEntry, Outcome, Write, coalesce
from core.convert import FieldSpec
from core.mapping import Mapping

MAPPING = Mapping(object_name="Invoice__c", table_schema="salesforce", table_name="invoice__c",
                  direction="bidirectional", id=1, upsert_field="External_Id__c",
                  fields=(FieldSpec("Name", "string", 80), FieldSpec("Amount__c", "currency"),
                          FieldSpec("External_Id__c", "string", 64)))


def change(*ops, record=1, attempts=0):
    entries = [ChangeLogEntry(id=record * 100 + i, mapping_id=1, op=op, record_id=record, attempts=attempts,
                              fields=("name",) if op == "update" else ()) for i, op in enumerate(ops)]
    (c,) = coalesce(entries)
    return c


def upsert(c, body=None):
    return Write(c, "upsert", "Invoice__c", body or {"Name": "n", "External_Id__c": "E1"}, "External_Id__c")


def test_a_success_merges_earlier_entries_into_the_carrier_and_marks_the_row_inserted():
    c = change("insert", "update")
    s = settle(MAPPING, [RecordResult(c, Outcome(State.SUCCESS, "a0X1"), upsert(c))])
    assert [(e.id, e.state) for e in s.entries] == [(100, State.MERGED), (101, State.SUCCESS)]
    carrier = s.entries[-1]
    assert carrier.sfid == "a0X1" and carrier.sent == {"Name": "n", "External_Id__c": "E1"}
    assert carrier.fields == ("name", "external_id__c") and carrier.finished
    assert [(m.record_id, m.sfid, m.failed, m.lastop) for m in s.marks] == [(1, "a0X1", False, "INSERTED")]
    assert [(r.record_id, r.carrier_id, r.fields) for r in s.resolved] == [(1, 101, ("name", "external_id__c"))]
    assert s.counts == {State.SUCCESS: 1}


def test_an_update_that_fails_marks_the_row_failed_with_salesforce_error_and_keeps_nothing_sent():
    c = change("update")
    errors = [{"statusCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION", "message": "no"}]
    s = settle(MAPPING, [RecordResult(c, Outcome(State.FAILED, error=errors),
                                      Write(c, "update", "Invoice__c", {"Id": "a0X1", "Name": "n"}))])
    (e,) = s.entries
    assert (e.state, e.error, e.sent, e.delay) == (State.FAILED, errors, None, None)
    (mark,) = s.marks
    assert mark.failed and mark.lastop == "UPDATED" and mark.sfid is None
    assert json.loads(s.marks_params()["errs"][0]) == errors
    assert s.resolved == []


def test_a_requeue_keeps_every_entry_open_with_a_growing_delay():
    c = change("insert", "update", attempts=2)
    s = settle(MAPPING, [RecordResult(c, Outcome(State.REQUEUED, error=[{"statusCode": "UNABLE_TO_LOCK_ROW"}]),
                                      upsert(c))], Backoff(2.0, 900.0))
    assert [(e.state, e.delay, e.finished) for e in s.entries] == [(State.REQUEUED, 8.0, False)] * 2
    assert s.marks == [] and s.resolved == []


def test_backoff_doubles_and_stops_at_its_cap():
    b = Backoff(2.0, 900.0)
    assert [b.delay(n) for n in (1, 2, 3, 4)] == [2.0, 4.0, 8.0, 16.0]
    assert b.delay(40) == 900.0


def test_nothing_to_send_and_a_delete_leave_the_row_alone():
    gone, deleted = change("update", record=1), change("delete", record=2)
    s = settle(MAPPING, [RecordResult(gone, Outcome(State.MERGED)),
                         RecordResult(deleted, Outcome(State.SUCCESS, "a0X2"),
                                      Write(deleted, "delete", "Invoice__c", {"Id": "a0X2"}))])
    assert [e.state for e in s.entries] == [State.MERGED, State.SUCCESS]
    assert s.entries[1].sent is None and s.marks == [] and s.resolved == []


def test_a_mapping_that_stopped_writing_ignores_its_changes_and_marks_nothing():
    c = change("update")
    s = settle(None, [RecordResult(c, Outcome(State.IGNORED, error={"reason": "mapping no longer writes"}))])
    assert [(e.state, e.finished) for e in s.entries] == [(State.IGNORED, True)]
    assert s.marks == []


def test_entries_json_is_what_finish_changes_reads():
    c = change("update")
    s = settle(MAPPING, [RecordResult(c, Outcome(State.REQUEUED), Write(c, "update", "Invoice__c", {"Id": "x"}))])
    assert json.loads(s.entries_json()) == [{"id": 100, "state": "REQUEUED", "sfid": None, "error": None,
                                             "sent": None, "fields": None, "delay": 2.0, "finished": False}]


@pytest.mark.parametrize("state", list(State))
def test_what_a_person_may_do_to_an_entry(state):
    retry, ignore = requested(state, Action.RETRY), requested(state, Action.IGNORE)
    assert retry == (State.REQUEUED if state in (State.FAILED, State.IGNORED) else None)
    assert requested(state, Action.RETRY, via_trigger_log=True) == (State.NEW if retry else None)
    # an entry in flight (PENDING) or done (SUCCESS, MERGED) cannot be ignored: it is, or was, sent
    assert ignore == (State.IGNORED if state in (State.NEW, State.REQUEUED, State.FAILED) else None)
    assert (state in from_states(Action.RETRY)) == (retry is not None)


def test_open_and_finished_states_do_not_overlap_and_failed_is_neither():
    assert not OPEN & FINISHED
    assert State.FAILED not in OPEN | FINISHED   # FAILED stays in the live log until retried or ignored
