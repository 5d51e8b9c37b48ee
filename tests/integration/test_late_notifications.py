"""Found by the chaos suite: a notification queued before the app deleted the record (delayed by a web
outage, duplicated or reordered by Salesforce) must not bring the deleted row back."""
from __future__ import annotations

import time

import pytest

from gateway import mapping_store
from jobs import load, poll
from jobs.drain import drain
from jobs.inbound import apply_pending
from tests.conftest import OUTBOUND_TOKEN
from tests.integration.test_capture import sql, writing_mapping
from tests.integration.test_echo_and_conflicts import om
from tests.integration.test_loading import create_mapping, open_load, salesforce_accounts, seed
from tests.support.messages import envelope
from tests.integration.test_write_path import (FAST, FIELDS, db, invoices, sf, sf_api, sf_app,  # noqa: F401
                                               sf_settings)


@pytest.mark.parametrize("delete_sent", [True, False], ids=["delete in Salesforce", "delete still queued"])
def test_a_late_notification_does_not_resurrect_a_row_the_app_deleted(sf_api, sf_app, sf_settings, db, sf,
                                                                        emulator, delete_sent):
    writing_mapping(sf_api, fields=FIELDS, direction="bidirectional", upsert_field="External_Id__c")
    url = sf_settings.database_url
    sql(url, "INSERT INTO salesforce.invoice__c (name, amount__c, external_id__c) VALUES ('doomed', 1, 'D1')")
    drain(db, sf, FAST)
    sfid = sql(url, "SELECT sfid FROM salesforce.invoice__c")[0][0]
    modstamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    late = om(emulator.org_id, sfid, "doomed", 1, modstamp, "D1")          # our insert's echo, held up
    sql(url, "DELETE FROM salesforce.invoice__c")
    if delete_sent:
        drain(db, sf, FAST)
        assert "D1" not in invoices(sf)
    client = sf_app.test_client()
    for _ in range(2):                                                       # and once more, duplicated
        assert client.post(f"/outbound/{OUTBOUND_TOKEN}", data=late, content_type="text/xml").status_code == 200
    apply_pending(db)
    drain(db, sf, FAST)
    assert sql(url, "SELECT count(*) FROM salesforce.invoice__c") == [(0,)]
    assert sql(url, "SELECT state FROM forcebridge.inbox") == [("applied",)]
    assert "D1" not in invoices(sf)



def test_a_notification_built_before_a_salesforce_delete_does_not_bring_the_row_back(sf_api, sf_app, sf_settings,
                                                                                      db, sf, emulator):
    """The poll saw the delete; Outbound Messages built before it (with data) and after it (only the Id)
    arrive later, as after a web outage. Neither may re-insert the row."""
    seed(emulator, 3)
    mapping = create_mapping(sf_api)
    load.run(db, sf, open_load(db, mapping["id"])["id"])
    victim = sorted(salesforce_accounts(sf))[0]
    users = emulator.salesforce(client="user")
    users.Account.update(victim, {"Name": "renamed"})
    stamp = sf.query(f"SELECT SystemModstamp FROM Account WHERE Id = '{victim}'")[0]["SystemModstamp"]
    built_before = envelope(emulator.org_id, "Account", [{"Id": victim, "Name": "renamed",
                                                          "SystemModstamp": stamp.replace("+0000", "Z")}])
    built_after = envelope(emulator.org_id, "Account", [{"Id": victim}])
    users.Account.delete(victim)
    poll.poll(db, sf, mapping_store.get(db, mapping["id"]), force=True)
    url = sf_settings.database_url
    assert sql(url, "SELECT count(*) FROM salesforce.account WHERE sfid = %s", (victim,)) == [(0,)]
    client = sf_app.test_client()
    for body in (built_before, built_after):
        assert client.post(f"/outbound/{OUTBOUND_TOKEN}", data=body, content_type="text/xml").status_code == 200
    apply_pending(db)
    assert sql(url, "SELECT count(*) FROM salesforce.account WHERE sfid = %s", (victim,)) == [(0,)]
    assert sql(url, "SELECT count(*) FROM salesforce.account") == [(2,)]
    assert sql(url, "SELECT DISTINCT state FROM forcebridge.inbox") == [("applied",)]


def test_a_record_deleted_before_the_first_load_leaves_postgres_at_the_next_poll(sf_api, sf_app, sf_settings,
                                                                                db, sf, emulator):
    """Found by the chaos suite: the first load ran late, after an Outbound Message had brought a record
    that was deleted before the load's snapshot; the poll started after that delete and never saw it."""
    seed(emulator, 3)
    mapping = create_mapping(sf_api)
    users = emulator.salesforce(client="user")
    doomed = users.Account.create({"Name": "short-lived"})["id"]
    stamp = sf.query(f"SELECT SystemModstamp FROM Account WHERE Id = '{doomed}'")[0]["SystemModstamp"]
    body = envelope(emulator.org_id, "Account", [{"Id": doomed, "Name": "short-lived",
                                                  "SystemModstamp": stamp.replace("+0000", "Z")}])
    assert sf_app.test_client().post(f"/outbound/{OUTBOUND_TOKEN}", data=body,
                                     content_type="text/xml").status_code == 200
    apply_pending(db)
    users.Account.delete(doomed)
    emulator.admin("POST", "/_emulator/clock", {"advance": 120})        # the load's records are newer
    users.Account.update(sorted(salesforce_accounts(sf))[0], {"Name": "touched after the delete"})
    load.run(db, sf, open_load(db, mapping["id"])["id"])
    url = sf_settings.database_url
    assert sql(url, "SELECT count(*) FROM salesforce.account WHERE sfid = %s", (doomed,)) == [(1,)]
    poll.poll(db, sf, mapping_store.get(db, mapping["id"]), force=True)
    assert sql(url, "SELECT count(*) FROM salesforce.account WHERE sfid = %s", (doomed,)) == [(0,)]
