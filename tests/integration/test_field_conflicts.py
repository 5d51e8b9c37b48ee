"""Conflicts settled per field: both sides' changes to different fields are kept (each side receives the merged
record); the rule decides only the fields both changed; the conflict log names the fields."""
from __future__ import annotations

import time

from jobs.drain import drain
from jobs.inbound import apply_pending
from tests.conftest import OUTBOUND_TOKEN
from tests.integration.test_capture import sql
from tests.integration.test_echo_and_conflicts import synced_record
from tests.integration.test_write_path import FAST, db, invoices, sf, sf_api, sf_app, sf_settings  # noqa: F401
from tests.support.messages import envelope


def deliver(sf_app, emulator, sfid, **values):
    later = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() + 60))
    body = envelope(emulator.org_id, "Invoice__c", [{"Id": sfid, "External_Id__c": "K", "SystemModstamp": later,
                                                     **values}])
    assert sf_app.test_client().post(f"/outbound/{OUTBOUND_TOKEN}", data=body,
                                     content_type="text/xml").status_code == 200


def test_changes_to_different_fields_are_merged_on_both_sides(sf_api, sf_app, sf_settings, db, sf, emulator):
    url, sfid = synced_record(sf_api, sf_settings, db, sf, "salesforce_wins", name="base", ext="K")
    sql(url, "UPDATE salesforce.invoice__c SET name = 'local'")                    # Postgres: Name
    deliver(sf_app, emulator, sfid, Name="base", Amount__c=5)  # Salesforce: Amount__c
    apply_pending(db)
    assert sql(url, "SELECT name, amount__c FROM salesforce.invoice__c") == [("local", 5)]
    drain(db, sf, FAST)
    assert (invoices(sf)["K"]["Name"], invoices(sf)["K"]["Amount__c"]) == ("local", 1)   # Name sent, not Amount
    (logged,) = sf_api.get("/api/v1/conflicts").get_json()["conflicts"]
    assert (logged["winner"], logged["fields"], logged["sf_fields"], logged["pg_fields"]) == (
        "merged", [], ["amount__c"], ["name"])
    assert (logged["pg_values"]["name"], logged["sf_values"]["amount__c"]) == ("local", 5)


def test_the_rule_decides_only_the_field_both_changed(sf_api, sf_app, sf_settings, db, sf, emulator):
    url, sfid = synced_record(sf_api, sf_settings, db, sf, "postgres_wins", name="base", ext="K")
    sql(url, "UPDATE salesforce.invoice__c SET name = 'local', status__c = 'Sent'")
    deliver(sf_app, emulator, sfid, Name="remote", Amount__c=5)
    apply_pending(db)
    assert sql(url, "SELECT name, amount__c, status__c FROM salesforce.invoice__c") == [("local", 5, "Sent")]
    drain(db, sf, FAST)
    assert (invoices(sf)["K"]["Name"], invoices(sf)["K"]["Status__c"]) == ("local", "Sent")
    (logged,) = sf_api.get("/api/v1/conflicts").get_json()["conflicts"]
    assert (logged["winner"], logged["fields"], logged["sf_fields"]) == ("postgres", ["name"], ["amount__c", "name"])
