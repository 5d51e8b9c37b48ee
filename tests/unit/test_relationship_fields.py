"""Heroku Connect's relationship external-id fields (`Account__r__External_Id__c`): validation, the column,
and the write that names the parent by its external id (pure)."""
import pytest

from core.changes import (ChangeLogEntry, coalesce, plan_writes, references_parents, sent_columns,
                          writable_fields)
from core.loading import staging_columns
from core.soql import records as load_soql
from core.mapping import MappingError, from_entry, relationship_parents

CONTACT = {"name": "Contact", "fields": [
    {"name": "LastName", "type": "string", "length": 80},
    {"name": "External_Id__c", "type": "string", "length": 64, "externalId": True},
    {"name": "AccountId", "type": "reference", "referenceTo": ["Account"], "relationshipName": "Account"},
    {"name": "Invoice__c", "type": "reference", "referenceTo": ["Invoice__c"], "relationshipName": "Invoice__r"}]}
ACCOUNT = {"name": "Account", "fields": [
    {"name": "Name", "type": "string", "length": 255},
    {"name": "External_Id__c", "type": "string", "length": 64, "externalId": True}]}
INVOICE = {"name": "Invoice__c", "fields": [{"name": "Code__c", "type": "string", "length": 20, "externalId": True}]}
PARENTS = {"account": ACCOUNT, "invoice__c": INVOICE}


def contact(fields, describe=CONTACT, parents=PARENTS):
    typed = {"type": "string"} if describe is None else {}
    return from_entry({"object_name": "Contact", "config": {
        "access": "read_write", "upsert_field": "External_Id__c",
        "fields": {"LastName": typed, "External_Id__c": typed, **fields}}}, describe=describe, parents=parents)


def test_a_relationship_field_is_a_text_column_named_as_heroku_connect_names_it():
    m = contact({"account__r__external_id__c": {}, "Invoice__r__Code__c": {}})
    specs = {f.name: f for f in m.fields}
    assert specs["Account__r__External_Id__c"].column == "account__r__external_id__c"
    assert (specs["Account__r__External_Id__c"].sf_type, specs["Account__r__External_Id__c"].length) == ("string", 64)
    assert specs["Invoice__r__Code__c"].length == 20
    assert relationship_parents({"Account__r__External_Id__c": {}, "Invoice__r__Code__c": {}}, CONTACT) == [
        "Account", "Invoice__c"]


def test_unknown_relationships_and_non_external_parent_fields_are_refused():
    with pytest.raises(MappingError, match="Owner__r__External_Id__c.*no lookup"):
        contact({"Owner__r__External_Id__c": {}})
    with pytest.raises(MappingError, match="Name is not an external id field of Account"):
        contact({"Account__r__Name": {}})


def test_without_describe_the_field_is_taken_as_given():
    m = contact({"Account__r__External_Id__c": {}}, describe=None, parents=None)
    assert m.field("Account__r__External_Id__c").length == 255


def test_salesforce_to_postgres_never_reads_or_writes_the_column():
    m = contact({"Account__r__External_Id__c": {}})
    assert "Account__r" not in load_soql(m) and "account__r__external_id__c" not in staging_columns(m)
    assert [f.name for f in m.read_fields] == ["LastName", "External_Id__c"]


def entry(op, record, fields=(), sfid=None):
    return ChangeLogEntry(id=record, mapping_id=1, op=op, record_id=record, sfid=sfid, fields=tuple(fields))


def test_the_write_names_the_parent_by_its_relationship_and_external_id():
    m = contact({"Account__r__External_Id__c": {}, "Invoice__r__Code__c": {}})
    rows = {1: {"lastname": "Smith", "external_id__c": "C-1", "account__r__external_id__c": "A-1",
                "invoice__r__code__c": None},
            2: {"sfid": "003000000000002AAA", "account__r__external_id__c": "A-2", "lastname": "Jones"}}
    writes, _ = plan_writes(coalesce([entry("insert", 1), entry("update", 2, ["account__r__external_id__c"],
                                                                       sfid="003000000000002AAA")]),
                            rows, m, writable_fields(m, CONTACT))
    insert, update = writes
    assert insert.body == {"LastName": "Smith", "External_Id__c": "C-1", "Account": {"External_Id__c": "A-1"}}
    assert update.body == {"Id": "003000000000002AAA", "Account": {"External_Id__c": "A-2"}}
    assert references_parents([update]) and sent_columns(m, update.body) == ["account__r__external_id__c"]


def test_custom_relationships_use_their_r_name_even_without_describe():
    m = contact({"Invoice__r__Code__c": {}, "Invoice__c": {"type": "reference"}}, describe=None, parents=None)
    writes, _ = plan_writes(coalesce([entry("insert", 1)]),
                            {1: {"lastname": "x", "external_id__c": "C", "invoice__r__code__c": "I-9"}}, m,
                            writable_fields(m, None))
    assert writes[0].body["Invoice__r"] == {"Code__c": "I-9"}


def test_the_echo_of_a_write_by_relationship_carries_the_resolved_lookup_and_is_still_ours():
    from core.conflicts import is_echo, sent_values
    from core.convert import FieldSpec

    specs = (FieldSpec("LastName", "string", 80), FieldSpec("AccountId", "reference", 18),
             FieldSpec("Account__r__External_Id__c", "string", 64))
    sent = sent_values(specs, {"LastName": "Smith", "Account": {"External_Id__c": "A-1"}})
    row = {"lastname": "Smith", "accountid": None}
    assert is_echo({"lastname": "Smith", "accountid": "001000000000001AAA"}, sent, row)
    assert not is_echo({"lastname": "Jones", "accountid": "001000000000001AAA"}, sent, row)
    assert not is_echo({"accountid": "001000000000001AAA"}, sent_values(specs, {"LastName": "Smith"}), row)
