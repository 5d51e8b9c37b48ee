"""Values typed by describe before a call (core/wire_values.py): what Salesforce would read, or one
record's clear error instead of a whole call's JSON_PARSER_ERROR."""
import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import given, strategies as st

from core.wire_values import fields_by_name, typed_record, typed_value

DESCRIBE = {"fields": [
    {"name": "Id", "type": "id"}, {"name": "Name", "type": "string", "label": "Name"},
    {"name": "Quantity__c", "type": "double", "label": "Quantity"}, {"name": "Count__c", "type": "int"},
    {"name": "Paid__c", "type": "boolean"}, {"name": "Due__c", "type": "date"},
    {"name": "Paid_At__c", "type": "datetime"}, {"name": "Tags__c", "type": "multipicklist"}]}
FIELDS = fields_by_name(DESCRIBE)


@pytest.mark.parametrize("name, value, expected", [
    ("Quantity__c", "12.5", 12.5), ("Quantity__c", " 7 ", 7), ("Quantity__c", Decimal("2.50"), 2.5),
    ("Quantity__c", 3, 3), ("Count__c", "4", 4), ("Count__c", 4.0, 4),
    ("Paid__c", "t", True), ("Paid__c", "FALSE", False), ("Paid__c", True, True),
    ("Due__c", "2024-02-29", "2024-02-29"), ("Due__c", dt.date(2024, 1, 2), "2024-01-02"),
    ("Paid_At__c", "2024-01-02 03:04:05+00", "2024-01-02T03:04:05.000Z"),
    ("Paid_At__c", dt.datetime(2024, 1, 2, 3, 4, 5, 678000), "2024-01-02T03:04:05.678Z"),
    ("Name", 42, "42"), ("Name", 2.0, "2"), ("Name", False, "false"), ("Tags__c", ["a", "b"], "a;b"),
    ("Name", None, None), ("Quantity__c", None, None),
])
def test_values_take_describes_json_type(name, value, expected):
    assert typed_value(FIELDS[name.lower()], value) == expected


@pytest.mark.parametrize("name, value", [
    ("Quantity__c", "seventy"), ("Quantity__c", "nan"), ("Quantity__c", True), ("Count__c", "1.5"),
    ("Paid__c", "maybe"), ("Due__c", "2024-02-30"), ("Due__c", 5), ("Paid_At__c", "yesterday"),
    ("Name", ["a"]),
])
def test_a_value_that_cannot_be_one_is_that_records_error(name, value):
    record, error = typed_record({"Name": "x", name: value}, FIELDS)
    assert record[name] == value                       # nothing was changed or sent
    item = error["errors"][0]
    assert error["success"] is False and item["statusCode"] == "INVALID_TYPE_ON_FIELD_IN_RECORD"
    assert item["fields"] == [name] and repr(value)[:20] in item["message"]


def test_unknown_keys_and_parent_references_pass_unchanged():
    record = {"Id": "a0W000000000001AAA", "Account": {"External_Id__c": "A-1"}, "Nope__c": "x", "quantity__c": "1"}
    typed, error = typed_record(record, FIELDS)
    assert error is None
    assert typed == {"Id": "a0W000000000001AAA", "Account": {"External_Id__c": "A-1"}, "Nope__c": "x",
                     "quantity__c": 1}


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_a_number_kept_as_text_round_trips(number):
    assert typed_value(FIELDS["quantity__c"], repr(number)) == number
