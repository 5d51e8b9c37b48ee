"""Conflict rules and echo recognition (pure)."""
import datetime as dt

import pytest

from core.conflicts import is_echo, sent_values, winner
from core.convert import FieldSpec

T = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
SPECS = (FieldSpec("Name", "string", 80), FieldSpec("Amount__c", "currency"), FieldSpec("Paid__c", "boolean"),
         FieldSpec("Due__c", "date"))


@pytest.mark.parametrize("rule,pg,sf,expected", [
    ("last_writer_wins", T, T + dt.timedelta(seconds=1), "salesforce"),
    ("last_writer_wins", T + dt.timedelta(seconds=1), T, "postgres"),
    ("last_writer_wins", T, T, "postgres"),              # a tie keeps the local change
    ("last_writer_wins", T, None, "postgres"),
    ("salesforce_wins", T + dt.timedelta(days=1), T, "salesforce"),
    ("postgres_wins", T, T + dt.timedelta(days=1), "postgres"),
])
def test_rules(rule, pg, sf, expected):
    assert winner(rule, pg, sf) == expected


def test_sent_json_comes_back_as_the_values_an_outbound_message_converts_to():
    sent = sent_values(SPECS, {"Name": "A", "Amount__c": 0.1, "Paid__c": True, "Due__c": "2026-02-03"})
    assert sent == {"name": "A", "amount__c": 0.1, "paid__c": True, "due__c": dt.date(2026, 2, 3)}   # double precision


def test_echo_is_what_we_sent_or_what_the_row_holds():
    sent = {"name": "v1", "amount__c": 5.0}
    row = {"name": "v2", "amount__c": 5.0, "paid__c": False}
    assert is_echo({"name": "v1", "amount__c": 5.0}, sent, row)                     # our older write
    assert is_echo({"name": "v1", "paid__c": False}, sent, row)                     # unsent field as in the row
    assert not is_echo({"name": "someone else"}, sent, row)
    assert not is_echo({"name": "v1", "paid__c": True}, sent, row)                  # a Salesforce change beside ours
    assert is_echo({"name": "v2"}, {}, row)                                         # nothing differs
    assert not is_echo({"name": "v1"}, {}, row)
