"""Field ownership end to end: a Salesforce-owned field is never captured nor sent and takes Salesforce's values;
a Postgres-owned one is sent and never overwritten by Salesforce."""
from __future__ import annotations

import time

from jobs.drain import drain
from jobs.inbound import apply_pending
from tests.conftest import OUTBOUND_TOKEN
from tests.integration.test_capture import sql
from tests.integration.test_write_path import FAST, db, invoices, sf, sf_api, sf_app, sf_settings  # noqa: F401
from tests.support.messages import envelope

FIELDS = {"Name": {}, "Amount__c": {"owner": "postgres"}, "Status__c": {"owner": "salesforce"},
          "External_Id__c": {}}


def test_each_side_keeps_the_fields_it_owns(sf_api, sf_app, sf_settings, db, sf, emulator):
    r = sf_api.post("/api/v1/mappings", json={"object_name": "Invoice__c", "direction": "bidirectional",
                                              "config": {"fields": FIELDS, "upsert_field": "External_Id__c"}})
    assert r.status_code == 201, r.get_json()
    assert r.get_json()["config"]["fields"]["Status__c"]["owner"] == "salesforce"
    url = sf_settings.database_url
    sql(url, "INSERT INTO salesforce.invoice__c (name, amount__c, status__c, external_id__c) "
             "VALUES ('n', 1, 'Void', 'E')")
    drain(db, sf, FAST)
    # Void was not sent: Salesforce holds its picklist default
    assert (invoices(sf)["E"]["Amount__c"], invoices(sf)["E"]["Status__c"]) == (1, "Draft")
    sfid = sql(url, "SELECT sfid FROM salesforce.invoice__c")[0][0]

    logged = sql(url, "SELECT count(*) FROM forcebridge.change_log")[0][0]
    sql(url, "UPDATE salesforce.invoice__c SET status__c = 'Local'")     # a Salesforce-owned field alone
    assert sql(url, "SELECT count(*) FROM forcebridge.change_capture")[0][0] == 0
    assert sql(url, "SELECT _hc_lastop FROM salesforce.invoice__c") == [("INSERTED",)]   # not PENDING
    assert drain(db, sf, FAST).claimed == 0 and sql(url, "SELECT count(*) FROM forcebridge.change_log")[0][0] == logged

    later = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() + 60))
    body = envelope(emulator.org_id, "Invoice__c", [{"Id": sfid, "Name": "remote", "Amount__c": 99,
                                                     "Status__c": "Paid", "External_Id__c": "E",
                                                     "SystemModstamp": later}])
    assert sf_app.test_client().post(f"/outbound/{OUTBOUND_TOKEN}", data=body,
                                     content_type="text/xml").status_code == 200
    apply_pending(db)
    # Salesforce's Name and Status__c land; the Postgres-owned Amount__c keeps Postgres's value
    assert sql(url, "SELECT name, status__c, amount__c FROM salesforce.invoice__c") == [("remote", "Paid", 1)]

    sql(url, "UPDATE salesforce.invoice__c SET amount__c = 7")             # Postgres-owned edits are sent
    drain(db, sf, FAST)
    assert invoices(sf)["E"]["Amount__c"] == 7
