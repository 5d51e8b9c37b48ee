"""Field checks on insert/update with Salesforce's exact error codes, messages and fields (pure)."""
import pytest

from emulator import validation
from emulator.errors import SalesforceError
from emulator.schema import load_types

TYPES = load_types()
ACCOUNT, CONTACT, INVOICE = TYPES["account"], TYPES["contact"], TYPES["invoice__c"]


def error(sobject, values, creating=True):
    with pytest.raises(SalesforceError) as caught:
        validation.check(sobject, values, creating=creating, types=TYPES)
    return caught.value


def test_values_are_converted_to_stored_form():
    stored, _ = validation.check(INVOICE, {"Name": "I-1", "Paid__c": "true", "Amount__c": "12.345",
                                           "Invoice_Date__c": "2026-01-31", "Paid_At__c": "2026-01-31T10:00:00+02:00",
                                           "attributes": {"type": "Invoice__c"}}, creating=True, types=TYPES)
    assert stored == {"Name": "I-1", "Paid__c": 1, "Amount__c": 12.35, "Invoice_Date__c": "2026-01-31",
                      "Paid_At__c": "2026-01-31T08:00:00.000+0000"}


def test_field_names_are_case_insensitive_and_empty_text_is_null():
    stored, _ = validation.check(ACCOUNT, {"name": "Acme", "PHONE": ""}, creating=True, types=TYPES)
    assert stored == {"Name": "Acme", "Phone": None}


def test_required_fields_on_insert_but_not_on_partial_update():
    missing = error(CONTACT, {"FirstName": "Ada"})
    assert (missing.error_code, missing.message, missing.fields) == (
        "REQUIRED_FIELD_MISSING", "Required fields are missing: [LastName]", ["LastName"])
    validation.check(CONTACT, {"FirstName": "Ada"}, creating=False, types=TYPES)
    assert error(CONTACT, {"LastName": None}, creating=False).error_code == "REQUIRED_FIELD_MISSING"


def test_unknown_field():
    found = error(ACCOUNT, {"Name": "x", "Nope__c": 1})
    assert (found.status_code, found.error_code, found.message) == (
        400, "INVALID_FIELD", "No such column 'Nope__c' on sobject of type Account")


def test_read_only_fields_and_id_on_insert():
    locked = error(ACCOUNT, {"Name": "x", "SystemModstamp": "2026-01-01T00:00:00Z", "CreatedById": None})
    assert locked.error_code == "INVALID_FIELD_FOR_INSERT_UPDATE"
    assert locked.fields == ["SystemModstamp", "CreatedById"]
    assert locked.message.startswith("Unable to create/update fields: SystemModstamp, CreatedById. Please check")
    assert error(ACCOUNT, {"Name": "x", "Id": "001000000000001AAA"}).message == "cannot specify Id in an insert call"


@pytest.mark.parametrize("values, message", [
    ({"Name": "x", "NumberOfEmployees": 1.5}, "Employees: value not of required type: 1.5"),
    ({"Name": "x", "AnnualRevenue": "lots"}, "Annual Revenue: value not of required type: lots"),
    ({"Name": "x", "Website": {"a": 1}}, "Website: value not of required type: {'a': 1}"),
])
def test_wrong_types(values, message):
    found = error(ACCOUNT, values)
    assert (found.error_code, found.message) == ("INVALID_TYPE_ON_FIELD_IN_RECORD", message)


def test_string_too_long_and_restricted_picklist():
    long = error(ACCOUNT, {"Name": "x", "BillingCity": "y" * 41})
    assert (long.error_code, long.fields) == ("STRING_TOO_LONG", ["BillingCity"])
    assert long.message == f"Billing City: data value too large: {'y' * 41} (max length=40)"
    picklist = error(INVOICE, {"Status__c": "Lost"})
    assert (picklist.error_code, picklist.message) == (
        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", "Status: bad value for restricted picklist field: Lost")
    # Unrestricted picklists take any value, as in Salesforce.
    validation.check(ACCOUNT, {"Name": "x", "Industry": "Space"}, creating=True, types=TYPES)


def test_reference_ids_must_be_well_formed_and_of_the_right_type():
    assert error(CONTACT, {"LastName": "x", "AccountId": "nonsense"}).message == (
        "Account ID: id value of incorrect type: nonsense")
    wrong_type = error(CONTACT, {"LastName": "x", "AccountId": "003D000000IRFma"})
    assert (wrong_type.error_code, wrong_type.fields) == ("MALFORMED_ID", ["AccountId"])
    stored, _ = validation.check(CONTACT, {"LastName": "x", "AccountId": "001D000000IRFma"}, creating=True,
                                 types=TYPES)
    assert stored["AccountId"] == "001D000000IRFmaIAH"


def test_parent_by_external_id_is_returned_as_a_lookup():
    _, lookups = validation.check(CONTACT, {"LastName": "x", "Account": {"External_Id__c": "A-1"}},
                                  creating=True, types=TYPES)
    assert lookups == {"AccountId": ("Account", "External_Id__c", "A-1")}
    assert error(CONTACT, {"LastName": "x", "Account": {"Name": "A"}}).error_code == "INVALID_FIELD"


def test_number_outside_precision():
    assert error(INVOICE, {"Amount__c": 1e14}).error_code == "NUMBER_OUTSIDE_VALID_RANGE"


def test_insert_defaults():
    assert validation.defaults(INVOICE) == {"Status__c": "Draft", "Paid__c": 0}
