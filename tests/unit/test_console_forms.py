"""Fields typed by hand on the mapping form when Salesforce is not connected."""
import pytest

from core.mapping import MappingError
from webapp.mappings import parse_typed_fields


def test_typed_fields_read_name_type_and_length():
    assert parse_typed_fields("Name:string:80\nAmount:currency, CloseDate:date\n\n") == {
        "Name": {"type": "string", "length": 80}, "Amount": {"type": "currency"}, "CloseDate": {"type": "date"}}


@pytest.mark.parametrize("text, reason", [("Name", "give a type"), ("Name:string:long", "number")])
def test_typed_fields_without_a_type_or_with_a_bad_length_are_refused(text, reason):
    with pytest.raises(MappingError, match=reason):
        parse_typed_fields(text)


def test_a_typed_field_may_name_its_owner():
    assert parse_typed_fields("Name:string:80:salesforce\nAmount:currency::postgres") == {
        "Name": {"type": "string", "length": 80, "owner": "salesforce"},
        "Amount": {"type": "currency", "owner": "postgres"}}
