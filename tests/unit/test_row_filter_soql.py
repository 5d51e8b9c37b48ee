"""Row filters in the one SOQL builder (core.soql) and their validation (pure)."""
import datetime as dt

import pytest

from core import soql
from core.mapping import MappingError, from_entry, to_entry


def mapping(**config):
    return from_entry({"object_name": "Account", "config": {"fields": {"Name": {"type": "string"}}, **config}})


def test_every_read_keeps_to_the_filter_in_parentheses():
    m = mapping(row_filter="Industry = 'Banking' OR Rating = 'Hot'")
    since = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    for query in (soql.records(m), soql.keys(m), soql.changed_since(m, since), soql.by_ids(m, ["001000000000001AAA"]),
                  soql.matching(m)):
        assert "WHERE (Industry = 'Banking' OR Rating = 'Hot')" in query, query
    assert "(Industry = 'Banking' OR Rating = 'Hot') AND SystemModstamp >" in soql.changed_since(m, since)
    assert soql.filter_probe("Account", "Industry = 'Banking'").endswith("WHERE (Industry = 'Banking') LIMIT 0")
    assert "WHERE" not in soql.records(mapping())
    assert to_entry(m)["config"]["row_filter"] == "Industry = 'Banking' OR Rating = 'Hot'"


@pytest.mark.parametrize("bad", ["  ", 5, "Name = 'x') OR (Id != null", "(Name = 'x'", "Name = 'x",
                                 "Name = 'a'\nLIMIT 1", "x" * 4001])
def test_a_filter_that_could_leave_its_parentheses_is_refused(bad):
    with pytest.raises(MappingError) as refused:
        mapping(row_filter=bad)
    assert refused.value.field == "config.row_filter"


def test_quoted_parentheses_and_escaped_quotes_are_fine_and_null_removes_the_filter():
    assert mapping(row_filter="Name = 'a (b' AND Name != 'it\\'s)'").extra["row_filter"]
    assert "row_filter" not in mapping(row_filter=None).extra


def test_the_complement_and_the_unfiltered_stamps_a_filter_check_asks_for():
    m = mapping(row_filter="Industry = 'Banking' OR Rating = 'Hot'")
    since = dt.datetime(2026, 1, 1, 0, 1, tzinfo=dt.timezone.utc)
    leavers = soql.left_filter_since(m, since)
    assert leavers == ("SELECT Id, SystemModstamp FROM Account WHERE SystemModstamp > 2026-01-01T00:00:00+00:00 "
                       "AND (NOT (Industry = 'Banking' OR Rating = 'Hot')) ORDER BY SystemModstamp")
    assert soql.left_filter_since(m, None).startswith(
        "SELECT Id, SystemModstamp FROM Account WHERE (NOT (Industry = 'Banking' OR Rating = 'Hot'))")
    stamps = soql.stamps_by_ids(m, ["001000000000001AAA"])
    assert stamps == "SELECT Id, SystemModstamp, IsDeleted FROM Account WHERE Id IN ('001000000000001AAA')"
    outside = soql.outside_by_ids(m, ["001000000000001AAA"])
    assert outside == ("SELECT Id, SystemModstamp, IsDeleted FROM Account WHERE Id IN ('001000000000001AAA') "
                       "AND (NOT (Industry = 'Banking' OR Rating = 'Hot'))")


def test_records_read_by_a_query_are_within_the_filter_and_messages_are_not():
    from core.sources import from_fields, from_rest_record

    assert from_rest_record("Account", {"Id": "001A", "Name": "x"}, "poll").within_filter
    assert not from_fields("Account", "001A", {"Name": "x"}, "outbound").within_filter
