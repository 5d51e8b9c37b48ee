"""Relationship external-id columns end to end: an app inserts a parent and its child in one transaction,
the child naming the parent by its external id (`account__r__external_id__c`), as Heroku Connect apps do."""
from __future__ import annotations

from dataclasses import replace

from jobs.drain import drain
from tests.conftest import testing_app as console
from tests.support.console import BASE, PASSWORD, sign_in
from tests.integration.test_capture import sql, writing_mapping
from tests.integration.test_write_path import FAST, db, sf, sf_api, sf_app, sf_settings  # noqa: F401 - fixtures

ACCOUNT = {"Name": {}, "External_Id__c": {}}
CONTACT = {"LastName": {}, "External_Id__c": {}, "Account__r__External_Id__c": {}}


def test_parent_and_child_inserted_together_arrive_linked(sf_api, sf_settings, db, sf):
    writing_mapping(sf_api, "Account", ACCOUNT, direction="bidirectional", upsert_field="External_Id__c")
    # the child's mapping first: its insert is logged before the parent's, and must still go after it
    writing_mapping(sf_api, "Contact", CONTACT, direction="bidirectional", upsert_field="External_Id__c")
    url = sf_settings.database_url
    columns = {r[0]: (r[1], r[2]) for r in sql(url, "SELECT column_name, data_type, character_maximum_length "
                                                    "FROM information_schema.columns WHERE table_name = 'contact'")}
    assert columns["account__r__external_id__c"][0] == "character varying"
    sql(url, "INSERT INTO salesforce.contact (lastname, external_id__c, account__r__external_id__c) "
             "VALUES ('Smith', 'C-1', 'A-1'); "
             "INSERT INTO salesforce.account (name, external_id__c) VALUES ('Acme', 'A-1')")
    result = drain(db, sf, FAST)
    assert result.outcomes == {"SUCCESS": 2}, sql(url, "SELECT state, error FROM forcebridge.change_log")
    (account,) = sf.query("SELECT Id FROM Account WHERE External_Id__c = 'A-1'")
    (contact,) = sf.query("SELECT Id, AccountId FROM Contact WHERE External_Id__c = 'C-1'")
    assert contact["AccountId"] == account["Id"]
    # Salesforce -> Postgres leaves the column to the app: the write-back keeps it, a poll never reads it
    assert sql(url, "SELECT sfid, account__r__external_id__c FROM salesforce.contact") == [(contact["Id"], "A-1")]

    # re-pointing the child by its column sends an update naming the new parent
    sql(url, "INSERT INTO salesforce.account (name, external_id__c) VALUES ('Beta', 'A-2'); "
             "UPDATE salesforce.contact SET account__r__external_id__c = 'A-2'")
    assert drain(db, sf, FAST).outcomes == {"SUCCESS": 2}
    (beta,) = sf.query("SELECT Id FROM Account WHERE External_Id__c = 'A-2'")
    assert sf.query("SELECT AccountId FROM Contact")[0]["AccountId"] == beta["Id"]


def test_a_child_naming_an_unknown_parent_fails_with_salesforce_reason(sf_api, sf_settings, db, sf):
    writing_mapping(sf_api, "Contact", CONTACT, direction="bidirectional", upsert_field="External_Id__c")
    url = sf_settings.database_url
    sql(url, "INSERT INTO salesforce.contact (lastname, external_id__c, account__r__external_id__c) "
             "VALUES ('Orphan', 'C-9', 'NOPE')")
    assert drain(db, sf, FAST).outcomes == {"FAILED": 1}
    ((error,),) = sql(url, "SELECT error FROM forcebridge.change_log WHERE state = 'FAILED'")
    assert error[0]["statusCode"] == "INVALID_FIELD"
    assert "Foreign key external ID: NOPE not found for field External_Id__c in entity Account" in error[0]["message"]


def test_a_send_window_never_sends_children_before_the_parent_it_holds(sf_api, sf_settings, db, sf):
    writing_mapping(sf_api, "Account", ACCOUNT, direction="bidirectional", upsert_field="External_Id__c")
    writing_mapping(sf_api, "Contact", CONTACT, direction="bidirectional", upsert_field="External_Id__c")
    url = sf_settings.database_url
    sql(url, "INSERT INTO salesforce.account (name, external_id__c) VALUES ('Acme', 'A-1'); "
             "INSERT INTO salesforce.contact (lastname, external_id__c, account__r__external_id__c) "
             "SELECT 'S' || g, 'C-' || g, 'A-1' FROM generate_series(1, 200) g")
    options = replace(FAST, send_window_seconds=600)
    held = drain(db, sf, options)
    # the 200 Contacts fill a call, but the Account they name waits for its window: they wait with it
    assert held.claimed == 0 and held.held_until is not None
    sent = drain(db, sf, options, now=held.held_until)
    assert sent.outcomes == {"SUCCESS": 201}, sql(url, "SELECT state, error FROM forcebridge.change_log "
                                                       "WHERE state = 'FAILED' LIMIT 1")
    (account,) = sf.query("SELECT Id FROM Account WHERE External_Id__c = 'A-1'")
    assert {c["AccountId"] for c in sf.query("SELECT AccountId FROM Contact")} == {account["Id"]}


def test_the_mapping_form_offers_relationship_fields(sf_settings, enqueued):
    with console(replace(sf_settings, admin_password=PASSWORD), enqueued) as app:
        client = app.test_client()
        sign_in(client)
        page = client.get("/mappings/new?object=Contact", base_url=BASE).text
    assert 'value="Account__r__External_Id__c"' in page          # AccountId -> Account.External_Id__c
    assert 'value="Parent__r__External_Id__c"' not in page       # Contact has no ParentId


def test_an_initial_push_through_bulk_sends_rows_naming_parents_after_the_job(sf_api, sf_settings, db, sf):
    from gateway import mapping_store
    from jobs import push

    url = sf_settings.database_url
    sf.upsert_records("Account", "External_Id__c", [{"External_Id__c": "P-1", "Name": "Parent"}])
    sql(url, "CREATE SCHEMA salesforce; CREATE TABLE salesforce.contact (id serial PRIMARY KEY, "
             "sfid varchar(18) UNIQUE, systemmodstamp timestamptz, isdeleted boolean, _hc_lastop varchar(32), "
             "_hc_err text, lastname varchar(80), external_id__c varchar(255), account__r__external_id__c varchar(255))")
    sql(url, "INSERT INTO salesforce.contact (lastname, external_id__c, account__r__external_id__c) "
             "SELECT 'c' || g, 'C-' || g, CASE WHEN g % 10 = 0 THEN 'P-1' END FROM generate_series(1, 150) g")
    mapping = writing_mapping(sf_api, "Contact", CONTACT, direction="pg_to_sf", upsert_field="External_Id__c")
    result = push.initial_push(db, sf, mapping_store.get(db, mapping["id"]), push.PushOptions(bulk_threshold=100))
    assert result["bulk_jobs"] == 1 and result["outcomes"] == {"SUCCESS": 150}
    (parent,) = sf.query("SELECT Id FROM Account WHERE External_Id__c = 'P-1'")
    linked = sf.query("SELECT External_Id__c FROM Contact WHERE AccountId = '%s'" % parent["Id"])
    assert sorted(r["External_Id__c"] for r in linked) == sorted(f"C-{g}" for g in range(10, 151, 10))
