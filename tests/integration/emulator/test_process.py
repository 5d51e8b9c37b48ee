"""The emulator as a process: restarts keep state, plain HTTP, session lifetime, several calls in flight."""
import json
import threading

import pytest
from simple_salesforce import Salesforce, SalesforceLogin
from simple_salesforce.exceptions import SalesforceMalformedRequest

from tests.emulator_fixture import start_emulator


def test_state_org_id_and_certificate_survive_a_restart(tmp_path):
    with start_emulator(tmp_path) as first:
        record_id = first.salesforce().Account.create({"Name": "Persistent"})["id"]
        ca = first.ca_path.read_bytes()
        org_id = first.org_id
    with start_emulator(tmp_path) as second:
        sf = second.salesforce()
        assert sf.Account.get(record_id)["Name"] == "Persistent"
        assert second.org_id == org_id
        assert second.ca_path.read_bytes() == ca
        # Ids keep counting from where they were: no reuse after a restart.
        assert sf.Account.create({"Name": "Next"})["id"] > record_id


def test_plain_http_with_no_tls(tmp_path):
    with start_emulator(tmp_path, tls=False) as running:
        assert running.url.startswith("http://") and running.ca_path is None
        sf = running.salesforce()
        assert sf.Contact.create({"LastName": "Plain"})["success"] is True


def test_session_lifetime_follows_the_emulated_clock(tmp_path):
    with start_emulator(tmp_path, "--session-seconds", "600") as running:
        sf = running.salesforce()
        first = sf.session_id
        sf.query("SELECT COUNT() FROM Account")
        running.admin("POST", "/_emulator/clock", {"advance": 601})
        # simple-salesforce gets 401 INVALID_SESSION_ID, logs in again and retries.
        assert sf.query("SELECT COUNT() FROM Account")["done"] is True
        assert sf.session_id != first
        direct = Salesforce(session_id=first, instance_url=running.url, session=running.http())
        with pytest.raises(Exception) as caught:
            direct.query("SELECT COUNT() FROM Account")
        assert caught.value.status == 401


def test_calls_run_concurrently(tmp_path):
    with start_emulator(tmp_path) as running:
        sf = running.salesforce()
        slow_started = threading.Event()
        release = {}

        running.admin("POST", "/_emulator/faults", {"rules": {"rest.query": {"latency_ms": 3000}}})
        slow = threading.Thread(target=lambda: (slow_started.set(), release.setdefault(
            "result", running.salesforce().query("SELECT COUNT() FROM Account"))))
        slow.start()
        slow_started.wait()
        # While the slow query sleeps inside the server, other calls are served.
        assert sf.Account.create({"Name": "Meanwhile"})["success"] is True
        assert slow.is_alive()
        slow.join()
        assert release["result"]["done"] is True


def test_record_level_lock_errors_in_collections(tmp_path):
    with start_emulator(tmp_path, "--seed", "3") as running:
        sf = running.salesforce()
        running.admin("POST", "/_emulator/faults", {"seed": 3, "rules": {"composite.collection_create": {
            "record_errors": {"UNABLE_TO_LOCK_ROW": 0.5}}}})
        records = [{"attributes": {"type": "Account"}, "Name": f"L{n}"} for n in range(40)]
        results = sf.restful("composite/sobjects", method="POST", json={"records": records})
        codes = {r["errors"][0]["statusCode"] for r in results if not r["success"]}
        assert codes == {"UNABLE_TO_LOCK_ROW"}
        assert 0 < sum(r["success"] for r in results) < 40
        # Same seed, same faults: the run is reproducible.
        running.admin("POST", "/_emulator/faults", {"seed": 3, "rules": {"composite.collection_create": {
            "record_errors": {"UNABLE_TO_LOCK_ROW": 0.5}}}})
        again = sf.restful("composite/sobjects", method="POST", json={"records": records})
        assert [r["success"] for r in again] == [r["success"] for r in results]


def test_update_of_a_deleted_record_is_entity_is_deleted(emulator):
    sf = emulator.salesforce()
    record_id = sf.Lead.create({"LastName": "Gone", "Company": "X"})["id"]
    sf.Lead.delete(record_id)
    with pytest.raises(Exception) as caught:
        sf.Lead.update(record_id, {"Company": "Y"})
    assert caught.value.status == 404
    assert caught.value.content[0]["errorCode"] == "ENTITY_IS_DELETED"
    emulator.admin("POST", "/_emulator/undelete", {"sobject": "Lead", "id": record_id})
    assert sf.Lead.update(record_id, {"Company": "Y"}) == 204


def test_unknown_object_and_method_shapes(emulator):
    http = emulator.http()
    sf = emulator.salesforce()
    headers = {"Authorization": f"Bearer {sf.session_id}"}
    missing = http.get(f"{emulator.url}/services/data/v59.0/sobjects/Nope__c/describe", headers=headers)
    assert missing.status_code == 404
    assert missing.json() == [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}]
    wrong = http.put(f"{emulator.url}/services/data/v59.0/sobjects/Account/001000000000001AAA", headers=headers)
    assert wrong.status_code == 405 and wrong.json()[0]["errorCode"] == "METHOD_NOT_ALLOWED"
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.restful("sobjects/Account/", method="POST", data="{not json")
    assert caught.value.content[0]["errorCode"] == "JSON_PARSER_ERROR"


def test_users_can_add_their_own_objects(tmp_path):
    objects = tmp_path / "objects"
    objects.mkdir()
    (objects / "Widget__c.json").write_text(json.dumps({
        "name": "Widget__c", "keyPrefix": "a0W", "label": "Widget",
        "fields": [{"name": "Name", "nillable": False, "length": 80},
                   {"name": "Code__c", "length": 20, "externalId": True, "unique": True, "idLookup": True},
                   {"name": "Weight__c", "type": "double", "precision": 10, "scale": 2, "soapType": "xsd:double"},
                   {"name": "Account__c", "type": "reference", "referenceTo": ["Account"],
                    "relationshipName": "Account__r", "length": 18}]}))
    with start_emulator(tmp_path) as running:
        sf = running.salesforce()
        account = sf.Account.create({"Name": "Owner", "External_Id__c": "ACC-1"})["id"]
        # A parent given by its external id, as Salesforce allows in a create body.
        assert sf.Widget__c.upsert("Code__c/W-1", {"Name": "Bolt", "Weight__c": 1.255,
                                                   "Account__r": {"External_Id__c": "ACC-1"}}) == 201
        row = sf.query("SELECT Id, Name, Weight__c, Account__r.Name FROM Widget__c")["records"][0]
        assert row["Id"].startswith("a0W")
        assert (row["Name"], row["Weight__c"], row["Account__r"]["Name"]) == ("Bolt", 1.25, "Owner")
        assert sf.Widget__c.get(row["Id"])["Account__c"] == account
        fields = {f["name"] for f in sf.Widget__c.describe()["fields"]}
        assert {"Id", "SystemModstamp", "IsDeleted", "Code__c"} <= fields


def test_organization_id_login_variant(emulator):
    session_id, instance = SalesforceLogin(username=emulator.username, password=emulator.password,
                                           organizationId=emulator.org_id, session=emulator.http())
    sf = Salesforce(session_id=session_id, instance=instance, session=emulator.http())
    assert sf.query("SELECT COUNT() FROM Account")["done"] is True


def test_login_routes_take_503_faults(tmp_path):
    with start_emulator(tmp_path) as running:
        running.admin("POST", "/_emulator/faults", {"rules": {"auth.*": {"errors": {"503": 1.0}}}})
        with pytest.raises(Exception) as caught:
            running.salesforce()
        assert "503" in str(caught.value) or getattr(caught.value, "code", None) == 503
        running.admin("DELETE", "/_emulator/faults")
        assert running.salesforce().query("SELECT COUNT() FROM Account")["done"] is True
