"""SOQL parser and compiler: what Salesforce accepts, how it words rejections, date literals."""
import datetime as dt

import pytest

from emulator import soql
from emulator.schema import load_types

TYPES = load_types()
TODAY = dt.date(2026, 11, 27)     # a Friday


def compile_(text, **kw):
    return soql.compile_query(text, TYPES, today=TODAY, **kw)


def error_of(text):
    with pytest.raises(soql.SoqlError) as caught:
        compile_(text)
    return caught.value


def test_parses_fields_relationships_conditions_order_limit_offset():
    query = soql.parse("SELECT Id, Account.Name FROM Contact WHERE (LastName = 'a' OR Email != null) "
                       "AND NOT Title LIKE 'x%' ORDER BY LastName DESC NULLS FIRST, Id LIMIT 10 OFFSET 5")
    assert [f.path for f in query.select] == [["Id"], ["Account", "Name"]]
    assert query.sobject == "Contact"
    assert isinstance(query.where, soql.BoolOp) and query.where.op == "and"
    assert [(o.field.path, o.descending, o.nulls_last) for o in query.order_by] == [
        (["LastName"], True, False), (["Id"], False, False)]
    assert (query.limit, query.offset) == (10, 5)


def test_keywords_are_case_insensitive_and_output_uses_canonical_names():
    plan = compile_("select name, ACCOUNT.name from contact where lastname in ('A', 'B')")
    assert [c.path for c in plan.columns] == [["Name"], ["Account", "Name"]]
    assert plan.sobject.name == "Contact"


def test_unknown_column_is_invalid_field_with_salesforce_caret_message():
    error = error_of("SELECT Id, Nope__c FROM Account")
    assert error.error_code == "INVALID_FIELD"
    assert error.message.startswith("\nSELECT Id, Nope__c FROM Account\n           ^\nERROR at Row:1:Column:12\n"
                                    "No such column 'Nope__c' on entity 'Account'. If you are attempting to use a "
                                    "custom field, be sure to append the '__c'")


def test_unknown_object_is_invalid_type():
    error = error_of("SELECT Id FROM Nope__c")
    assert error.error_code == "INVALID_TYPE"
    assert "sObject type 'Nope__c' is not supported." in error.message


def test_unknown_relationship():
    error = error_of("SELECT Owner__r.Name FROM Contact")
    assert error.error_code == "INVALID_FIELD"
    assert "Didn't understand relationship 'Owner__r' in field path." in error.message


@pytest.mark.parametrize("text, token", [
    ("SELECT Id FROM Account WHERE", "<EOF>"),
    ("SELECT Id Account", "Account"),
    ("SELECT FROM Account", "FROM"),
    ("SELECT Id FROM Account WHERE Name = 'a' AND Name = 'b' OR Name = 'c'", "OR"),
    ("SELECT Id FROM Account LIMIT x", "x"),
])
def test_syntax_errors_are_malformed_query(text, token):
    error = error_of(text)
    assert error.error_code == "MALFORMED_QUERY"
    assert error.message.endswith(f"unexpected token: '{token}'")


def test_empty_query():
    assert error_of("  ").message == "SOQL statements cannot be empty or null"


@pytest.mark.parametrize("text, expected", [
    ("SELECT Id FROM Account WHERE Name = 5", "must be of type string and should be enclosed in quotes"),
    ("SELECT Id FROM Account WHERE NumberOfEmployees = '5'",
     "must be of type integer and should not be enclosed in quotes"),
    ("SELECT Id FROM Account WHERE IsDeleted = 'true'", "must be of type boolean and should not be enclosed"),
    ("SELECT Id FROM Account WHERE CreatedDate > 2020-01-01", "must be of type dateTime"),
])
def test_literal_type_mismatch_is_invalid_field(text, expected):
    error = error_of(text)
    assert error.error_code == "INVALID_FIELD"
    assert expected in error.message


def test_invalid_id_literal():
    assert error_of("SELECT Id FROM Account WHERE Id = 'abc'").error_code == "INVALID_QUERY_FILTER_OPERATOR"


def test_fifteen_char_id_literal_is_compared_as_18():
    plan = compile_("SELECT Id FROM Account WHERE Id = '001D000000IRFma'")
    assert "001D000000IRFmaIAH" in plan.params


def test_datetime_literals_are_normalised_to_utc():
    plan = compile_("SELECT Id FROM Account WHERE SystemModstamp > 2026-01-02T03:04:05+01:00")
    assert plan.params == ["2026-01-02T02:04:05.000+0000"]


def test_relative_date_literal_on_datetime_becomes_a_range():
    plan = compile_("SELECT Id FROM Account WHERE CreatedDate = LAST_N_DAYS:7")
    assert plan.params == ["2026-11-20T00:00:00.000+0000", "2026-11-28T00:00:00.000+0000"]


@pytest.mark.parametrize("name, n, start, end", [
    ("TODAY", None, "2026-11-27", "2026-11-28"),
    ("YESTERDAY", None, "2026-11-26", "2026-11-27"),
    ("THIS_WEEK", None, "2026-11-22", "2026-11-29"),
    ("THIS_MONTH", None, "2026-11-01", "2026-12-01"),
    ("LAST_MONTH", None, "2026-10-01", "2026-11-01"),
    ("NEXT_N_DAYS", 2, "2026-11-28", "2026-11-30"),
    ("N_DAYS_AGO", 3, "2026-11-24", "2026-11-25"),
])
def test_date_ranges(name, n, start, end):
    got = soql.date_range(name, n, TODAY)
    assert (got[0].isoformat(), got[1].isoformat()) == (start, end)


def test_count_forms():
    assert compile_("SELECT COUNT() FROM Account").kind == "count"
    plan = compile_("SELECT COUNT(Id) total FROM Account")
    assert (plan.kind, plan.aggregate_names) == ("aggregate", ["total"])


def test_offset_above_2000_is_refused():
    assert error_of("SELECT Id FROM Account LIMIT 10 OFFSET 2001").error_code == "NUMBER_OUTSIDE_VALID_RANGE"


def test_query_all_keeps_deleted_rows():
    assert '"IsDeleted" = 0' in compile_("SELECT Id FROM Account").sql
    assert '"IsDeleted" = 0' not in compile_("SELECT Id FROM Account", include_deleted=True).sql


def test_record_builds_nested_parent_and_null_parent():
    plan = compile_("SELECT Id, Account.Name FROM Contact")
    row = ("003000000000001AAA", "Acme", "001000000000001AAA", "003000000000001AAA")
    assert plan.record(row) == {"Id": "003000000000001AAA", "Account": {"Name": "Acme"}}
    empty = ("003000000000001AAA", None, None, "003000000000001AAA")
    assert plan.record(empty) == {"Id": "003000000000001AAA", "Account": None}


def test_string_escapes():
    plan = compile_(r"SELECT Id FROM Account WHERE Name = 'O\'Brien \\ co'")
    assert plan.params == ["O'Brien \\ co"]


def test_fields_function():
    standard = compile_("SELECT FIELDS(STANDARD) FROM Invoice__c")
    assert "Id" in [c.path[0] for c in standard.columns]
    assert "Amount__c" not in [c.path[0] for c in standard.columns]
    custom = compile_("SELECT Id, FIELDS(CUSTOM) FROM Invoice__c LIMIT 200")
    assert [c.path[0] for c in custom.columns][:2] == ["Id", "External_Id__c"]
    assert "The SOQL FIELDS function must have a LIMIT of at most 200" in error_of(
        "SELECT FIELDS(ALL) FROM Account").message


def test_child_subquery_compiles_against_the_child_relationship():
    plan = compile_("SELECT Name, (SELECT LastName FROM contacts WHERE LastName != null ORDER BY LastName LIMIT 2) "
                    "FROM Account")
    child = plan.children[0]
    assert (child.name, child.limit, child.plan.sobject.name) == ("Contacts", 2, "Contact")
    assert child.sql(3).count("?") == 3 + len(child.plan.params)
    assert plan.record(("Acme", "001000000000001AAA"), children={"Contacts": {}}) == {
        "Name": "Acme", "Contacts": None}


def test_unknown_child_relationship_and_nesting_are_refused():
    assert "Didn't understand relationship 'Nope' in FROM part of query call." in error_of(
        "SELECT Id, (SELECT Id FROM Nope) FROM Account").message
    assert error_of("SELECT Id, (SELECT Id, (SELECT Id FROM Opportunities) FROM Contacts) FROM Account"
                    ).error_code == "MALFORMED_QUERY"


def test_semi_join_compiles_to_a_subselect():
    plan = compile_("SELECT Id FROM Account WHERE Id IN (SELECT AccountId FROM Contact WHERE LastName = 'x') "
                    "AND Name != 'y'")
    assert "IN (SELECT t.\"AccountId\" FROM \"so_Contact\" t" in plan.sql
    assert plan.params == ["x", "y"]
    assert error_of("SELECT Id FROM Account WHERE Id IN (SELECT Name FROM Contact)").error_code == "MALFORMED_QUERY"


def test_group_by_with_aggregates_and_implied_aliases():
    plan = compile_("SELECT StageName, COUNT(Id) n, SUM(Amount), MAX(CloseDate) FROM Opportunity "
                    "GROUP BY StageName ORDER BY StageName")
    assert plan.kind == "aggregate"
    assert plan.aggregate_names == ["StageName", "n", "expr0", "expr1"]
    assert "GROUP BY t.\"StageName\"" in plan.sql
    assert plan.aggregate_record(("Won", 2, 30.0, "2026-01-01")) == {
        "attributes": {"type": "AggregateResult"}, "StageName": "Won", "n": 2, "expr0": 30.0, "expr1": "2026-01-01"}
    assert "Field must be grouped or aggregated: Name" in error_of(
        "SELECT Name, COUNT(Id) FROM Opportunity GROUP BY StageName").message
