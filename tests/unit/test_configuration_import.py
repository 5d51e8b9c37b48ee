"""Planning a configuration import (pure): Heroku Connect's export as it is, all checked before any write."""
import json
import pathlib

import pytest

from core import configuration
from core.mapping import MappingError

EXPORT = json.loads((pathlib.Path(__file__).parents[1] / "fixtures" / "heroku_connect_export.json").read_text())
DESCRIBES = {
    "account": {"name": "Account", "fields": [
        {"name": n, "type": t, "length": l} for n, t, l in [
            ("AccountNumber", "string", 40), ("AnnualRevenue", "currency", 0), ("BillingCity", "string", 40),
            ("CreatedDate", "datetime", 0), ("Description", "textarea", 32000), ("Name", "string", 255),
            ("NumberOfEmployees", "int", 0)]] + [
        {"name": "External_Id__c", "type": "string", "length": 255, "externalId": True}]},
    "contact": {"name": "Contact", "fields": [
        {"name": "AccountId", "type": "reference", "referenceTo": ["Account"], "relationshipName": "Account"},
        {"name": "Email", "type": "email", "length": 80}, {"name": "FirstName", "type": "string", "length": 40},
        {"name": "LastName", "type": "string", "length": 80},
        {"name": "External_Id__c", "type": "string", "length": 255, "externalId": True}]},
    "invoice__c": {"name": "Invoice__c", "fields": [
        {"name": n, "type": t} for n, t in [
            ("Account__c", "reference"), ("Amount__c", "currency"), ("Invoice_Date__c", "date"), ("Name", "string"),
            ("Notes__c", "textarea"), ("Paid_At__c", "datetime"), ("Quantity__c", "double"),
            ("Status__c", "picklist")]]},
}


def plan(doc=EXPORT, existing=None, describes=DESCRIBES):
    connection, entries = configuration.read_document(doc)
    return configuration.plan_import(entries, existing or {}, configuration.default_schema(connection), describes,
                                     {"account": DESCRIBES["account"]})


def test_the_schema_comes_from_the_connection_name():
    assert configuration.default_schema({"name": "acme-orders-prod:DATABASE_URL:crm"}) == "crm"
    assert configuration.default_schema({"name": "CHANGE-ME:HEROKU_POSTGRESQL_RED_URL:gus"}) == "gus"
    assert configuration.default_schema({"name": "forcebridge"}) == "salesforce"      # a plain label
    assert configuration.default_schema({"schema_name": "ours", "name": "a:DATABASE_URL:crm"}) == "ours"
    with pytest.raises(MappingError, match="connection.name"):
        configuration.default_schema({"name": "a:b:c:d"})


def test_a_heroku_export_plans_every_mapping_with_its_settings_kept():
    steps = plan()
    assert [(s.action, s.mapping.object_name, s.mapping.table_schema) for s in steps] == [
        ("create", "Account", "crm"), ("create", "Contact", "crm"), ("create", "Invoice__c", "crm")]
    account = steps[0].mapping
    assert account.extra["indexes"]["Name"] == {"unique": False}
    assert account.extra["applied_at"] == "2024-03-07T09:14:52.118204Z" and account.extra["sf_notify_enabled"]
    assert steps[1].mapping.field("Account__r__External_Id__c").column == "account__r__external_id__c"
    assert steps[2].mapping.direction == "sf_to_pg"


def test_our_own_export_planned_again_changes_nothing_even_without_salesforce():
    existing = {s.mapping.object_name.lower(): s.mapping for s in plan()}
    doc = configuration.export_document(list(existing.values()), EXPORT["connection"], "heroku")
    assert [s.action for s in plan(doc, existing, describes={})] == ["unchanged"] * 3
    changed = json.loads(json.dumps(doc))
    changed["mappings"][0]["config"]["sf_polling_seconds"] = 300
    assert [s.action for s in plan(changed, existing, describes={})] == ["update", "unchanged", "unchanged"]


def test_an_error_names_the_mapping_and_the_field():
    doc = json.loads(json.dumps(EXPORT))
    doc["mappings"][1]["config"]["fields"]["Shoe_Size__c"] = {}
    with pytest.raises(MappingError, match="mapping Contact: field Shoe_Size__c does not exist"):
        plan(doc)
    with pytest.raises(MappingError, match="version"):
        plan({**EXPORT, "version": 2})
    with pytest.raises(MappingError, match="not a Salesforce API name"):
        plan({**EXPORT, "mappings": [{"object_name": "../limits#", "config": {"fields": {"Name": {}}}}]})
