"""Conformance: unmodified simple-salesforce against the emulator process over real HTTPS."""
import datetime as dt
import json
import uuid

import pytest
import requests
from simple_salesforce import Salesforce, SalesforceLogin
from simple_salesforce.exceptions import (SalesforceAuthenticationFailed, SalesforceExpiredSession,
                                          SalesforceMalformedRequest, SalesforceMoreThanOneRecord,
                                          SalesforceRefusedRequest, SalesforceResourceNotFound)


def unique(prefix="T"):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def sf(emulator):
    return emulator.salesforce(client="conformance")


# ------------------------------------------------------------ login

def test_soap_login_returns_session_and_instance(emulator):
    session_id, instance = SalesforceLogin(username=emulator.username, password=emulator.password,
                                           security_token=emulator.security_token, session=emulator.http())
    assert session_id.startswith(emulator.org_id[:15] + "!")
    assert f"https://{instance}" == emulator.url


def test_soap_login_failure_raises_with_salesforce_fault(emulator):
    with pytest.raises(SalesforceAuthenticationFailed) as caught:
        emulator.salesforce(password="wrong")
    assert caught.value.code == "INVALID_LOGIN"
    assert b"Invalid username, password, security token; or user locked out." == caught.value.content


@pytest.mark.parametrize("auth", ["soap", "password", "client_credentials"])
def test_every_login_flow_reaches_the_api(emulator, auth):
    sf = emulator.salesforce(auth=auth)
    assert sf.query("SELECT COUNT() FROM Account")["done"] is True


def test_oauth_refresh_token_grant(emulator):
    http = emulator.http()
    token = http.post(f"{emulator.url}/services/oauth2/token", data={
        "grant_type": "password", "client_id": emulator.consumer_key, "client_secret": emulator.consumer_secret,
        "username": emulator.username, "password": emulator.password, "scope": "api refresh_token"}).json()
    refreshed = http.post(f"{emulator.url}/services/oauth2/token", data={
        "grant_type": "refresh_token", "refresh_token": token["refresh_token"],
        "client_id": emulator.consumer_key, "client_secret": emulator.consumer_secret}).json()
    assert refreshed["access_token"] != token["access_token"]
    assert refreshed["instance_url"] == emulator.url
    sf = Salesforce(session_id=refreshed["access_token"], instance_url=refreshed["instance_url"], session=http)
    assert sf.query("SELECT COUNT() FROM Contact")["done"] is True


def test_oauth_bad_password_is_invalid_grant(emulator):
    with pytest.raises(SalesforceAuthenticationFailed) as caught:
        emulator.salesforce(auth="password", password="nope")
    assert caught.value.code == "invalid_grant"


@pytest.mark.parametrize("auth", ["soap", "password", "client_credentials"])
def test_expired_session_is_renewed_by_simple_salesforce(emulator, auth):
    sf = emulator.salesforce(auth=auth)
    before = sf.session_id
    emulator.admin("POST", "/_emulator/sessions/expire")
    assert sf.query("SELECT COUNT() FROM Account")["done"] is True
    assert sf.session_id != before


def test_invalid_session_body_and_exception(emulator):
    sf = Salesforce(session_id="00D000000000000!bogus", instance_url=emulator.url, session=emulator.http())
    with pytest.raises(SalesforceExpiredSession) as caught:
        sf.query("SELECT Id FROM Account")
    assert caught.value.content == [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]


# ------------------------------------------------------------ describe

def test_describe_lists_shipped_objects_and_fields(sf):
    names = {o["name"]: o for o in sf.describe()["sobjects"]}
    assert {"Account", "Contact", "Opportunity", "Lead", "Invoice__c"} <= set(names)
    assert names["Invoice__c"]["keyPrefix"] == "a0X" and names["Invoice__c"]["custom"] is True
    fields = {f["name"]: f for f in sf.Invoice__c.describe()["fields"]}
    assert fields["External_Id__c"]["externalId"] is True
    assert fields["Id"]["type"] == "id" and fields["SystemModstamp"]["type"] == "datetime"
    assert sf.Account.metadata()["objectDescribe"]["name"] == "Account"


# ------------------------------------------------------------ CRUD

def test_create_get_update_delete(sf):
    created = sf.Account.create({"Name": "Acme", "NumberOfEmployees": 12, "AnnualRevenue": 1500.5})
    assert created["success"] is True and created["errors"] == []
    record_id = created["id"]
    assert len(record_id) == 18 and record_id.startswith("001")
    got = sf.Account.get(record_id)
    assert got["attributes"] == {"type": "Account", "url": f"/services/data/v59.0/sobjects/Account/{record_id}"}
    assert (got["Name"], got["NumberOfEmployees"], got["IsDeleted"]) == ("Acme", 12, False)
    assert got["CreatedDate"].endswith(".000+0000")
    assert sf.Account.update(record_id, {"Name": "Acme 2", "Phone": ""}) == 204
    updated = sf.Account.get(record_id)
    assert updated["Name"] == "Acme 2" and updated["Phone"] is None
    assert updated["SystemModstamp"] >= got["SystemModstamp"]
    assert sf.Account.delete(record_id) == 204
    with pytest.raises(SalesforceResourceNotFound) as caught:
        sf.Account.get(record_id)
    assert caught.value.content[0]["errorCode"] == "ENTITY_IS_DELETED"


def test_get_with_fields_param_and_15_char_id(sf):
    record_id = sf.Contact.create({"LastName": "Lovelace", "FirstName": "Ada"})["id"]
    got = sf.Contact.get(record_id[:15], params={"fields": "Name,LastName"})
    assert {k for k in got if k != "attributes"} == {"Name", "LastName"}
    assert got["Name"] == "Ada Lovelace"


def test_unknown_id_is_not_found(sf):
    with pytest.raises(SalesforceResourceNotFound) as caught:
        sf.Account.get("001" + "5g" + "0" * 9 + "ZZ")
    assert caught.value.content[0]["errorCode"] == "NOT_FOUND"


# ------------------------------------------------------------ upsert by external id

def test_upsert_statuses_from_v46(sf):
    ext = unique("INV")
    assert sf.Invoice__c.upsert(f"External_Id__c/{ext}", {"Name": "first", "Amount__c": 10}) == 201
    assert sf.Invoice__c.upsert(f"External_Id__c/{ext}", {"Amount__c": 20}) == 200
    response = sf.Invoice__c.upsert(f"External_Id__c/{ext}", {"Amount__c": 30}, raw_response=True)
    assert response.json()["created"] is False
    record = sf.Invoice__c.get_by_custom_id("External_Id__c", ext)
    assert (record["Amount__c"], record["Status__c"]) == (30, "Draft")


def test_upsert_update_is_204_up_to_v45(emulator):
    sf = emulator.salesforce(version="45.0")
    ext = unique("OLD")
    created = sf.Invoice__c.upsert(f"External_Id__c/{ext}", {"Name": "x"}, raw_response=True)
    assert created.status_code == 201 and "created" not in created.json()
    assert sf.Invoice__c.upsert(f"External_Id__c/{ext}", {"Name": "y"}) == 204


def test_upsert_on_unknown_field_is_404(sf):
    with pytest.raises(SalesforceResourceNotFound):
        sf.Account.upsert("Nope__c/1", {"Name": "x"})


def test_upsert_with_several_matches_is_300(sf):
    legacy = unique("L")       # Contact.Legacy_Id__c is an external id that is not unique
    first = sf.Contact.create({"LastName": "a", "Legacy_Id__c": legacy})["id"]
    second = sf.Contact.create({"LastName": "b", "Legacy_Id__c": legacy})["id"]
    with pytest.raises(SalesforceMoreThanOneRecord) as caught:
        sf.Contact.upsert(f"Legacy_Id__c/{legacy}", {"Title": "x"})
    assert sorted(caught.value.content) == sorted(f"/services/data/v59.0/sobjects/Contact/{i}" for i in (first, second))


def test_a_parent_named_by_its_external_id_resolves_or_is_refused_as_an_org_does(sf):
    """Heroku Connect's relationship external-id columns become such references (REST and Collections)."""
    parent = unique("P")
    account = sf.Account.create({"Name": parent, "External_Id__c": parent})["id"]
    contact = sf.Contact.create({"LastName": "child", "Account": {"External_Id__c": parent}})["id"]
    assert sf.Contact.get(contact)["AccountId"] == account
    invoice = sf.Invoice__c.create({"Name": "i", "Account__r": {"External_Id__c": parent}})["id"]
    assert sf.Invoice__c.get(invoice)["Account__c"] == account
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.Contact.update(contact, {"Account": {"External_Id__c": "NO-SUCH-PARENT"}})
    assert caught.value.content == [{"errorCode": "INVALID_FIELD", "fields": [], "message": (
        "Foreign key external ID: NO-SUCH-PARENT not found for field External_Id__c in entity Account")}]
    items = sf.restful("composite/sobjects", method="POST", data=json.dumps({"allOrNone": False, "records": [
        {"attributes": {"type": "Contact"}, "LastName": "a", "Account": {"External_Id__c": parent}},
        {"attributes": {"type": "Contact"}, "LastName": "b", "Account": {"External_Id__c": "NO-SUCH-PARENT"}}]}))
    assert items[0]["success"] and not items[1]["success"]
    assert items[1]["errors"][0]["statusCode"] == "INVALID_FIELD"
    assert "Foreign key external ID: NO-SUCH-PARENT not found" in items[1]["errors"][0]["message"]


def test_duplicate_unique_external_id_is_refused(sf):
    name = unique("DUP")
    first = sf.Account.create({"Name": name, "External_Id__c": name})["id"]
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.Account.create({"Name": name, "External_Id__c": name})
    error = caught.value.content[0]
    assert error["errorCode"] == "DUPLICATE_VALUE"
    assert error["message"] == (f"duplicate value found: External_Id__c duplicates value on record with id: "
                                f"{first[:15]}")


# ------------------------------------------------------------ validation errors

@pytest.mark.parametrize("sobject, body, code, fields", [
    ("Account", {}, "REQUIRED_FIELD_MISSING", ["Name"]),
    ("Account", {"Name": "x" * 256}, "STRING_TOO_LONG", ["Name"]),
    ("Account", {"Name": "x", "Bogus__c": 1}, "INVALID_FIELD", None),    # read with the body: no "fields"
    ("Account", {"Name": "x", "CreatedDate": "2020-01-01T00:00:00Z"}, "INVALID_FIELD_FOR_INSERT_UPDATE",
     ["CreatedDate"]),
    ("Account", {"Name": "x", "NumberOfEmployees": "many"}, "JSON_PARSER_ERROR", None),
    ("Account", {"Name": "x", "NumberOfEmployees": 1.5}, "INVALID_TYPE_ON_FIELD_IN_RECORD", ["NumberOfEmployees"]),
    ("Invoice__c", {"Status__c": "Lost"}, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", ["Status__c"]),
    ("Contact", {"LastName": "x", "AccountId": "003000000000001"}, "MALFORMED_ID", ["AccountId"]),
])
def test_validation_errors(sf, sobject, body, code, fields):
    with pytest.raises(SalesforceMalformedRequest) as caught:
        getattr(sf, sobject).create(body)
    error = caught.value.content[0]
    assert error["errorCode"] == code
    assert error.get("fields") == fields


def test_required_field_message(sf):
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.Opportunity.create({"Name": "x"})
    assert caught.value.content[0]["message"] == "Required fields are missing: [StageName, CloseDate]"


# ------------------------------------------------------------ query

def test_query_paging_with_batch_size(emulator, sf):
    tag = unique("PAGE")
    emulator.admin("POST", "/_emulator/seed", {"sobject": "Lead", "count": 450,
                                               "fields": {"LastName": tag + " {n}", "Company": tag}})
    first = sf.query(f"SELECT Id, LastName FROM Lead WHERE Company = '{tag}'",
                     headers={"Sforce-Query-Options": "batchSize=200"})
    assert (first["totalSize"], first["done"], len(first["records"])) == (450, False, 200)
    assert first["nextRecordsUrl"].startswith("/services/data/v59.0/query/01g")
    second = sf.query_more(first["nextRecordsUrl"], identifier_is_url=True)
    assert (second["totalSize"], second["done"], len(second["records"])) == (450, False, 200)
    everything = sf.query_all(f"SELECT Id FROM Lead WHERE Company = '{tag}'")
    assert everything["totalSize"] == 450
    assert len({r["Id"] for r in everything["records"]}) == 450


def test_query_filters_order_limit_offset(sf):
    tag = unique("Q")
    for n, (name, employees) in enumerate([("b", 5), ("a", 50), ("c", None), ("d", 500)]):
        sf.Account.create({"Name": f"{tag}-{name}", "NumberOfEmployees": employees, "AccountNumber": tag})
    base = f"SELECT Name FROM Account WHERE AccountNumber = '{tag}'"
    names = lambda q: [r["Name"][-1] for r in sf.query(q)["records"]]  # noqa: E731
    assert names(base + " ORDER BY Name") == ["a", "b", "c", "d"]
    assert names(base + " ORDER BY NumberOfEmployees DESC NULLS LAST") == ["d", "a", "b", "c"]
    assert names(base + " AND (NumberOfEmployees > 10 OR NumberOfEmployees = null) ORDER BY Name") == [
        "a", "c", "d"]
    assert names(base + " AND NOT NumberOfEmployees IN (5, 50) ORDER BY Name") == ["c", "d"]
    assert names(base + f" AND Name LIKE '{tag}-_' ORDER BY Name LIMIT 2 OFFSET 1") == ["b", "c"]
    assert names(base + f" AND Name != '{tag}-A' ORDER BY Name") == ["b", "c", "d"]     # case-insensitive
    assert sf.query(f"SELECT COUNT() FROM Account WHERE AccountNumber = '{tag}'")["totalSize"] == 4
    aggregate = sf.query(f"SELECT COUNT(Id) FROM Account WHERE AccountNumber = '{tag}'")["records"][0]
    assert aggregate == {"attributes": {"type": "AggregateResult"}, "expr0": 4}


def test_query_relationship_fields(sf):
    account = sf.Account.create({"Name": unique("Parent")})["id"]
    with_parent = sf.Contact.create({"LastName": unique("Child"), "AccountId": account})["id"]
    orphan = sf.Contact.create({"LastName": unique("Orphan")})["id"]
    rows = sf.query(f"SELECT Id, Account.Name FROM Contact WHERE Id IN ('{with_parent}', '{orphan}') "
                    "ORDER BY CreatedDate, Id")["records"]
    by_id = {r["Id"]: r for r in rows}
    assert by_id[with_parent]["Account"]["attributes"]["type"] == "Account"
    assert by_id[with_parent]["Account"]["Name"].startswith("Parent")
    assert by_id[orphan]["Account"] is None


def test_query_datetime_literal(sf):
    since = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    result = sf.query(f"SELECT Id FROM Account WHERE SystemModstamp > {since} LIMIT 1")
    assert result["done"] is True


def test_include_deleted(sf):
    record_id = sf.Account.create({"Name": unique("Gone")})["id"]
    sf.Account.delete(record_id)
    query = f"SELECT Id, IsDeleted FROM Account WHERE Id = '{record_id}'"
    assert sf.query(query)["totalSize"] == 0
    rows = sf.query_all(query, include_deleted=True)["records"]
    assert [(r["Id"], r["IsDeleted"]) for r in rows] == [(record_id, True)]


def test_malformed_query_raises(sf):
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.query("SELECT Id FROM Account WHERE")
    assert caught.value.content[0]["errorCode"] == "MALFORMED_QUERY"


def test_deleted_and_updated_endpoints(sf):
    start = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    kept = sf.Account.create({"Name": unique("Kept")})["id"]
    gone = sf.Account.create({"Name": unique("Gone")})["id"]
    sf.Account.delete(gone)
    end = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=1)
    assert kept in sf.Account.updated(start, end)["ids"]
    deleted = sf.Account.deleted(start, end)
    assert gone in [d["id"] for d in deleted["deletedRecords"]]
    assert "latestDateCovered" in deleted and "earliestDateAvailable" in deleted


# ------------------------------------------------------------ collections and composite

def test_collections_create_update_delete(sf):
    records = [{"attributes": {"type": "Account"}, "Name": unique("Coll")} for _ in range(200)]
    created = sf.restful("composite/sobjects", method="POST", json={"allOrNone": False, "records": records})
    assert len(created) == 200 and all(r["success"] for r in created)
    ids_ = [r["id"] for r in created]
    updates = [{"attributes": {"type": "Account"}, "id": i, "Rating": "Hot"} for i in ids_[:3]]
    updates.append({"attributes": {"type": "Account"}, "id": "001xx000003DGb2999", "Rating": "Hot"})
    updated = sf.restful("composite/sobjects", method="PATCH", json={"records": updates})
    assert [r["success"] for r in updated] == [True, True, True, False]
    assert updated[3]["errors"][0]["statusCode"] == "MALFORMED_ID"
    deleted = sf.restful("composite/sobjects", method="DELETE", params={"ids": ",".join(ids_[:5])})
    assert all(r["success"] for r in deleted)


def test_collections_all_or_none_rolls_back(sf):
    name = unique("AON")
    records = [{"attributes": {"type": "Account"}, "Name": name}, {"attributes": {"type": "Account"}}]
    result = sf.restful("composite/sobjects", method="POST", json={"allOrNone": True, "records": records})
    assert result[0] == {"success": False, "errors": [{
        "statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
        "message": "Record rolled back because not all records were valid and the request was using AllOrNone "
                   "header", "fields": []}]}
    assert result[1]["errors"][0]["statusCode"] == "REQUIRED_FIELD_MISSING"
    assert sf.query(f"SELECT COUNT() FROM Account WHERE Name = '{name}'")["totalSize"] == 0


def test_collections_upsert_reports_created(sf):
    ext = unique("CU")
    sf.Invoice__c.create({"Name": "old", "External_Id__c": ext})
    records = [{"attributes": {"type": "Invoice__c"}, "External_Id__c": ext, "Name": "changed"},
               {"attributes": {"type": "Invoice__c"}, "External_Id__c": ext + "-new", "Name": "new"}]
    result = sf.restful("composite/sobjects/Invoice__c/External_Id__c", method="PATCH",
                        json={"allOrNone": False, "records": records})
    assert [(r["success"], r["created"]) for r in result] == [(True, False), (True, True)]


def test_collections_refuse_more_than_200(sf):
    records = [{"attributes": {"type": "Account"}, "Name": "x"}] * 201
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.restful("composite/sobjects", method="POST", json={"records": records})
    assert caught.value.content[0]["errorCode"] == "EXCEEDED_ID_LIMIT"


def test_composite_with_references(sf):
    name = unique("Comp")
    body = {"compositeRequest": [
        {"method": "POST", "url": "/services/data/v59.0/sobjects/Account", "referenceId": "refAccount",
         "body": {"Name": name}},
        {"method": "POST", "url": "/services/data/v59.0/sobjects/Contact", "referenceId": "refContact",
         "body": {"LastName": "Wong", "AccountId": "@{refAccount.id}"}},
        {"method": "GET", "url": "/services/data/v59.0/sobjects/Contact/@{refContact.id}?fields=AccountId",
         "referenceId": "getContact"},
    ]}
    result = sf.restful("composite", method="POST", json=body)["compositeResponse"]
    assert [r["httpStatusCode"] for r in result] == [201, 201, 200]
    assert result[2]["body"]["AccountId"] == result[0]["body"]["id"]
    assert result[0]["httpHeaders"]["Location"].endswith(result[0]["body"]["id"])


def test_composite_all_or_none_halts_and_rolls_back(sf):
    name = unique("Halt")
    body = {"allOrNone": True, "compositeRequest": [
        {"method": "POST", "url": "/services/data/v59.0/sobjects/Account", "referenceId": "ok",
         "body": {"Name": name}},
        {"method": "POST", "url": "/services/data/v59.0/sobjects/Account", "referenceId": "bad", "body": {}},
    ]}
    result = sf.restful("composite", method="POST", json=body)["compositeResponse"]
    assert result[0]["body"][0]["errorCode"] == "PROCESSING_HALTED"
    assert result[1]["body"][0]["errorCode"] == "REQUIRED_FIELD_MISSING"
    assert sf.query(f"SELECT COUNT() FROM Account WHERE Name = '{name}'")["totalSize"] == 0


# ------------------------------------------------------------ limits, client tracking, faults

def test_limit_info_header_and_limits_resource(sf):
    sf.query("SELECT COUNT() FROM Account")
    usage = sf.api_usage["api-usage"]
    assert usage.used >= 1 and usage.total == 100000
    assert sf.limits()["DailyApiRequests"]["Max"] == 100000


def test_allocation_is_configurable_reported_and_refused_when_spent(emulator):
    """Issue 16: the allocation set through the admin API is what Sforce-Limit-Info and /limits say; past it,
    every call is REQUEST_LIMIT_EXCEEDED (and still carries the header); Bulk query jobs are counted."""
    import requests

    emulator.admin("POST", "/_emulator/limits", {"dailyLimit": 15000, "used": 0})
    try:
        sf = emulator.salesforce(client="forcebridge")
        before = sf.limits()["DailyBulkV2QueryJobs"]["Remaining"]
        sf.query("SELECT Id FROM Account LIMIT 1")
        assert sf.api_usage["api-usage"].total == 15000
        job = sf.restful("jobs/query", method="POST", json={"operation": "query", "query": "SELECT Id FROM Account"})
        limits = sf.limits()
        assert limits["DailyApiRequests"]["Max"] == 15000
        assert limits["DailyApiRequests"]["Remaining"] == 15000 - emulator.admin("GET", "/_emulator/stats")["used"]
        assert limits["DailyBulkV2QueryJobs"]["Remaining"] == before - 1 and job["id"]
        assert "DailyDeliveredPlatformEvents" in limits
        emulator.admin("POST", "/_emulator/limits", {"used": 15000})
        r = requests.get(f"{emulator.url}/services/data/v62.0/limits", verify=str(emulator.ca_path),
                         headers={"Authorization": f"Bearer {sf.session_id}"})
        assert r.status_code == 403 and r.json()[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"
        assert r.headers["Sforce-Limit-Info"] == "api-usage=15000/15000"
    finally:
        emulator.admin("POST", "/_emulator/limits", {"dailyLimit": 100000, "used": 0})


def test_change_remembers_client_and_user(emulator):
    sf = emulator.salesforce(client="forcebridge")
    since = emulator.admin("GET", "/_emulator/changes?since=0&limit=10000")["changes"]
    last = since[-1]["seq"] if since else 0
    record_id = sf.Account.create({"Name": unique("Echo")})["id"]
    changes = emulator.admin("GET", f"/_emulator/changes?since={last}")["changes"]
    mine = [c for c in changes if c["record_id"] == record_id]
    assert mine[0]["client"] == "forcebridge" and mine[0]["kind"] == "created"
    assert mine[0]["user_id"].startswith("005")
    stats = emulator.admin("GET", "/_emulator/stats")
    assert stats["perClient"]["forcebridge"] >= 1


def test_faults_are_injected_by_route(emulator, sf):
    emulator.admin("POST", "/_emulator/faults", {"seed": 7, "rules": {"rest.query": {"errors": {"503": 1.0}}}})
    try:
        with pytest.raises(Exception) as caught:
            sf.query("SELECT Id FROM Account LIMIT 1")
        assert caught.value.status == 503
        emulator.admin("POST", "/_emulator/faults", {"rules": {"rest.sobject_create": {
            "errors": {"UNABLE_TO_LOCK_ROW": 1.0}}}})
        with pytest.raises(SalesforceMalformedRequest) as locked:
            sf.Account.create({"Name": "x"})
        assert locked.value.content[0]["errorCode"] == "UNABLE_TO_LOCK_ROW"
    finally:
        emulator.admin("DELETE", "/_emulator/faults")


def test_daily_limit_refuses_with_403(emulator, sf):
    stats = emulator.admin("GET", "/_emulator/stats")
    emulator.admin("POST", "/_emulator/limits", {"used": stats["dailyLimit"]})
    try:
        with pytest.raises(SalesforceRefusedRequest) as caught:
            sf.query("SELECT Id FROM Account LIMIT 1")
        assert caught.value.content == [{"message": "TotalRequests Limit exceeded.",
                                         "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
    finally:
        emulator.admin("POST", "/_emulator/limits", {"used": 0})


def test_versions_list_needs_no_session(emulator):
    versions = requests.get(f"{emulator.url}/services/data", verify=str(emulator.ca_path)).json()
    assert {"label": "Winter '24", "url": "/services/data/v59.0", "version": "59.0"} in versions


def test_deleting_an_account_deletes_its_contacts_and_clears_other_lookups(sf):
    account = sf.Account.create({"Name": unique("Parent")})["id"]
    contact = sf.Contact.create({"LastName": "Child", "AccountId": account})["id"]
    invoice = sf.Invoice__c.create({"Name": "Looked up", "Account__c": account})["id"]
    sf.Account.delete(account)
    rows = sf.query_all(f"SELECT Id, IsDeleted FROM Contact WHERE Id = '{contact}'", include_deleted=True)
    assert rows["records"][0]["IsDeleted"] is True
    assert sf.Invoice__c.get(invoice)["Account__c"] is None


def test_collections_retrieve(sf):
    first = sf.Account.create({"Name": unique("R1")})["id"]
    missing = "001" + first[3:14] + "Z" + first[15:]
    records = sf.restful("composite/sobjects/Account", params={"ids": f"{first},{missing}", "fields": "Name"})
    assert records[0]["Name"].startswith("R1") and records[0]["attributes"]["type"] == "Account"
    assert records[1] is None


def test_composite_query_subrequest_feeds_a_reference(sf):
    name = unique("CQ")
    sf.Account.create({"Name": name})
    body = {"compositeRequest": [
        {"method": "GET", "url": f"/services/data/v59.0/query?q=SELECT+Id+FROM+Account+WHERE+Name='{name}'",
         "referenceId": "found"},
        {"method": "PATCH", "url": "/services/data/v59.0/sobjects/Account/@{found.records[0].Id}",
         "referenceId": "renamed", "body": {"Rating": "Warm"}},
        {"method": "GET", "url": "/services/data/v59.0/sobjects/Account/@{nothing.id}", "referenceId": "broken"},
    ]}
    result = sf.restful("composite", method="POST", json=body)["compositeResponse"]
    assert [r["httpStatusCode"] for r in result] == [200, 204, 400]
    assert result[1]["body"] is None
    assert result[2]["body"][0]["errorCode"] == "PROCESSING_HALTED"
    assert sf.query(f"SELECT Rating FROM Account WHERE Name = '{name}'")["records"][0]["Rating"] == "Warm"


def test_child_relationship_subquery(sf):
    with_children = sf.Account.create({"Name": unique("Kids")})["id"]
    without = sf.Account.create({"Name": unique("NoKids")})["id"]
    for name in ("b", "a", "c"):
        sf.Contact.create({"LastName": name, "AccountId": with_children})
    rows = sf.query(f"SELECT Id, (SELECT LastName FROM Contacts ORDER BY LastName LIMIT 2) FROM Account "
                    f"WHERE Id IN ('{with_children}', '{without}') ORDER BY CreatedDate, Id")["records"]
    by_id = {r["Id"]: r for r in rows}
    contacts = by_id[with_children]["Contacts"]
    assert (contacts["totalSize"], contacts["done"]) == (2, True)
    assert [c["LastName"] for c in contacts["records"]] == ["a", "b"]
    assert contacts["records"][0]["attributes"]["type"] == "Contact"
    assert by_id[without]["Contacts"] is None


def test_semi_join(sf):
    tag = unique("SJ")
    with_contact = sf.Account.create({"Name": tag + "-with"})["id"]
    sf.Account.create({"Name": tag + "-without"})
    sf.Contact.create({"LastName": tag, "AccountId": with_contact})
    rows = sf.query(f"SELECT Id FROM Account WHERE Name LIKE '{tag}%' AND Id IN "
                    f"(SELECT AccountId FROM Contact WHERE LastName = '{tag}')")["records"]
    assert [r["Id"] for r in rows] == [with_contact]
    others = sf.query(f"SELECT Name FROM Account WHERE Name LIKE '{tag}%' AND Id NOT IN "
                      f"(SELECT AccountId FROM Contact WHERE LastName = '{tag}')")["records"]
    assert [r["Name"] for r in others] == [tag + "-without"]


def test_group_by_aggregate_query(sf):
    tag = unique("GB")
    for stage, amount in [("Prospecting", 10), ("Prospecting", 5), ("Closed Won", 100)]:
        sf.Opportunity.create({"Name": tag, "StageName": stage, "CloseDate": "2026-12-01", "Amount": amount})
    result = sf.query(f"SELECT StageName, COUNT(Id), SUM(Amount) total FROM Opportunity WHERE Name = '{tag}' "
                      "GROUP BY StageName ORDER BY StageName")
    assert result["totalSize"] == 2
    assert [(r["StageName"], r["expr0"], r["total"]) for r in result["records"]] == [
        ("Closed Won", 1, 100), ("Prospecting", 2, 15)]


def test_describe_if_modified_since(emulator, sf):
    headers = {"Authorization": f"Bearer {sf.session_id}"}
    url = f"{emulator.url}/services/data/v59.0/sobjects/Account/describe"
    http = emulator.http()
    assert http.get(url, headers={**headers, "If-Modified-Since": "Tue, 31 May 2016 18:00:00 GMT"}).status_code == 200
    assert http.get(url, headers={**headers, "If-Modified-Since": "Fri, 31 Dec 2100 18:00:00 GMT"}).status_code == 304


def test_a_web_page_cannot_drive_the_admin_api(emulator):
    # a cross-site "simple" request (text/plain, no preflight) from a page the developer happens to visit
    http = emulator.http()
    for path, body in (("/_emulator/clock", '{"advance": 0}'), ("/_emulator/reset", "")):
        response = http.post(emulator.url + path, data=body,
                             headers={"Content-Type": "text/plain", "Origin": "https://evil.example"})
        assert response.status_code == 403, path
    # a body that does not say it is JSON is not read as JSON
    user = {"username": f"plain-{uuid.uuid4().hex[:8]}@example.com", "password": "x"}
    response = http.post(emulator.url + "/_emulator/users", data=json.dumps(user),
                         headers={"Content-Type": "text/plain"})
    assert response.status_code != 201
    assert emulator.admin("POST", "/_emulator/clock", {"advance": 0})["now"]
