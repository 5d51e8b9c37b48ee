"""An org's refusals in the emulator (issue #15), in process (Flask test client on an Org in a temp dir):
validation rules, duplicate rules and trigger-like failures on every write path; whole-request
JSON_PARSER_ERROR; getDeleted windows; sessions ending after inactivity; Bulk 2.0 query limits."""
import datetime as dt
import json
import time
import urllib.parse

import pytest

from emulator.app import create_app
from emulator.store import Org

V = "/services/data/v59.0"
WIDGET = {"name": "Widget__c", "keyPrefix": "a0W", "fields": [
    {"name": "Name"},
    {"name": "Amount__c", "type": "double", "precision": 18, "scale": 2},
    {"name": "Due__c", "type": "date"},
    {"name": "Active__c", "type": "boolean"},
    {"name": "Email__c", "type": "email", "length": 80},
    {"name": "Code__c", "externalId": True, "unique": True, "length": 20}]}
RULES = {"Widget__c": {
    "validationRules": [
        {"name": "Amount_Not_Negative", "condition": "Amount__c < 0", "message": "Amount cannot be negative",
         "field": "Amount__c"},
        {"name": "Email_Shape", "condition": "NOT(ISBLANK(Email__c)) && NOT(REGEX(Email__c, '[^@]+@[^@]+'))",
         "message": "Email looks wrong"},
        {"name": "Name_Frozen", "condition": "ISCHANGED(Name) && Name = 'frozen'", "message": "no renaming to frozen"}],
    "duplicateRules": [{"name": "Widget_Email", "fields": ["Email__c"]}],
    "triggers": [{"name": "WidgetTrigger", "condition": "Name = 'boom'", "message": "System.DmlException: boom"}]}}


@pytest.fixture
def api(tmp_path):
    (tmp_path / "objects").mkdir()
    (tmp_path / "objects" / "Widget__c.json").write_text(json.dumps(WIDGET))
    org = Org(tmp_path, "00D5g000004EMUL", session_seconds=600)
    app = create_app(org)
    session, _ = org.open_session(org.default_user_id)
    client = app.test_client()
    headers = {"Authorization": f"Bearer {session.token}"}

    def call(method, path, body=None, extra=None, raw=None):
        kwargs = {"data": raw, "content_type": "application/json"} if raw is not None else {"json": body}
        response = client.open(path if path.startswith("/_emulator") else V + path, method=method,
                               headers={**headers, **(extra or {})}, **kwargs)
        return response.status_code, (response.get_json(silent=True) if response.data else None)
    call.org, call.client, call.headers = org, client, headers
    status, _ = call("PUT", "/_emulator/rules", RULES)
    assert status == 200
    yield call
    for hook in app.config.get("SHUTDOWN_HOOKS", []):
        hook()
    org.close()


def rec(**fields):
    return {"attributes": {"type": "Widget__c"}, **fields}


def codes(item):
    return [e["statusCode"] for e in item["errors"]]


# ---------------------------------------------------------------- validation rules, every write path

def test_validation_rule_on_rest_create_update_and_upsert(api):
    status, body = api("POST", "/sobjects/Widget__c", {"Name": "a", "Amount__c": -1})
    assert status == 400
    assert body == [{"message": "Amount cannot be negative", "errorCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION",
                     "fields": ["Amount__c"]}]
    status, created = api("POST", "/sobjects/Widget__c", {"Name": "a", "Amount__c": 1})
    assert status == 201
    status, body = api("PATCH", f"/sobjects/Widget__c/{created['id']}", {"Amount__c": -5})
    assert status == 400 and body[0]["errorCode"] == "FIELD_CUSTOM_VALIDATION_EXCEPTION"
    status, body = api("PATCH", "/sobjects/Widget__c/Code__c/C-1", {"Name": "c", "Email__c": "nope"})
    assert status == 400 and body[0]["message"] == "Email looks wrong"
    assert api.org.query("SELECT Id FROM Widget__c WHERE Amount__c < 0") is not None
    assert [r["Amount__c"] for r in api.org.query("SELECT Amount__c FROM Widget__c")] == [1]


def test_ischanged_rule_sees_the_stored_record(api):
    _, created = api("POST", "/sobjects/Widget__c", {"Name": "frozen"})      # an insert changes nothing
    _, other = api("POST", "/sobjects/Widget__c", {"Name": "b"})
    assert created["success"]
    status, body = api("PATCH", f"/sobjects/Widget__c/{other['id']}", {"Name": "frozen"})
    assert status == 400 and body[0]["message"] == "no renaming to frozen"
    status, _ = api("PATCH", f"/sobjects/Widget__c/{created['id']}", {"Amount__c": 3})   # Name unchanged
    assert status == 204


@pytest.mark.parametrize("all_or_none", [False, True])
def test_validation_rule_in_collections(api, all_or_none):
    status, body = api("POST", "/composite/sobjects", {"allOrNone": all_or_none, "records": [
        rec(Name="ok", Amount__c=1), rec(Name="bad", Amount__c=-1)]})
    assert status == 200
    assert codes(body[1]) == ["FIELD_CUSTOM_VALIDATION_EXCEPTION"]
    assert body[1]["errors"][0]["message"] == "Amount cannot be negative"
    if all_or_none:
        assert codes(body[0]) == ["ALL_OR_NONE_OPERATION_ROLLED_BACK"]
        assert list(api.org.query("SELECT Id FROM Widget__c")) == []
    else:
        assert body[0]["success"] is True
    status, body = api("PATCH", "/composite/sobjects/Widget__c/Code__c", {"allOrNone": all_or_none, "records": [
        rec(Code__c="U-1", Name="x", Amount__c=-2)]})
    assert codes(body[0]) == ["FIELD_CUSTOM_VALIDATION_EXCEPTION"]


def test_validation_rule_in_composite(api):
    status, body = api("POST", "/composite", {"allOrNone": False, "compositeRequest": [
        {"method": "POST", "url": f"{V}/sobjects/Widget__c", "referenceId": "bad", "body": {"Name": "x", "Amount__c": -3}},
        {"method": "POST", "url": f"{V}/sobjects/Widget__c", "referenceId": "good", "body": {"Name": "y"}}]})
    assert status == 200
    first, second = body["compositeResponse"]
    assert first["httpStatusCode"] == 400 and first["body"][0]["errorCode"] == "FIELD_CUSTOM_VALIDATION_EXCEPTION"
    assert second["httpStatusCode"] == 201


def _ingest(api, csv_text: str, operation="insert", external_id=None) -> dict:
    body = {"object": "Widget__c", "operation": operation, "contentType": "CSV", "lineEnding": "LF"}
    if external_id:
        body["externalIdFieldName"] = external_id
    status, job = api("POST", "/jobs/ingest", body)
    assert status == 200, job
    response = api.client.put(f"{V}/jobs/ingest/{job['id']}/batches", data=csv_text.encode(),
                              headers={**api.headers, "Content-Type": "text/csv"})
    assert response.status_code == 201
    api("PATCH", f"/jobs/ingest/{job['id']}", {"state": "UploadComplete"})
    for _ in range(200):
        _, job = api("GET", f"/jobs/ingest/{job['id']}")
        if job["state"] in ("JobComplete", "Failed", "Aborted"):
            break
        time.sleep(0.05)
    failed = api.client.get(f"{V}/jobs/ingest/{job['id']}/failedResults/", headers=api.headers)
    job["failed"] = failed.get_data(as_text=True)
    return job


def test_validation_duplicate_and_trigger_in_bulk_ingest_results(api):
    api("POST", "/sobjects/Widget__c", {"Name": "first", "Email__c": "dup@example.com"})
    job = _ingest(api, "Name,Amount__c,Email__c\nok,1,\nneg,-1,\ndup,2,DUP@example.com\nboom,3,\n")
    assert job["state"] == "JobComplete" and job["numberRecordsFailed"] == 3
    assert "FIELD_CUSTOM_VALIDATION_EXCEPTION:Amount cannot be negative" in job["failed"]
    assert "DUPLICATES_DETECTED:Use one of these records?" in job["failed"]
    assert "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY:WidgetTrigger" in job["failed"]


# ---------------------------------------------------------------- duplicate rules

def test_duplicate_rule_answers_with_the_duplicate_result(api):
    _, first = api("POST", "/sobjects/Widget__c", {"Name": "a", "Email__c": "one@example.com"})
    status, body = api("POST", "/sobjects/Widget__c", {"Name": "b", "Email__c": "ONE@example.com"})
    assert status == 400
    error = body[0]
    assert error["errorCode"] == "DUPLICATES_DETECTED" and error["message"] == "Use one of these records?"
    result = error["duplicateResult"]
    assert result["duplicateRule"] == "Widget_Email" and result["allowSave"] is False
    assert result["duplicateRuleEntityType"] == "Widget__c"
    match = result["matchResults"][0]
    assert match["size"] == 1 and match["matchRecords"][0]["record"]["Id"] == first["id"]
    # the header lets the call save it anyway
    status, body = api("POST", "/sobjects/Widget__c", {"Name": "b", "Email__c": "one@example.com"},
                       extra={"Sforce-Duplicate-Rule-Header": "allowSave=true"})
    assert status == 201


def test_duplicate_rule_in_collections_and_on_update(api):
    api("POST", "/sobjects/Widget__c", {"Name": "a", "Email__c": "two@example.com"})
    _, other = api("POST", "/sobjects/Widget__c", {"Name": "z"})
    status, body = api("POST", "/composite/sobjects", {"records": [rec(Name="b", Email__c="two@example.com"),
                                                                   rec(Name="c")]})
    assert codes(body[0]) == ["DUPLICATES_DETECTED"] and "duplicateResult" in body[0]["errors"][0]
    assert body[1]["success"]
    status, body = api("PATCH", "/composite/sobjects", {"records": [rec(id=other["id"], Email__c="two@example.com")]})
    assert codes(body[0]) == ["DUPLICATES_DETECTED"]
    status, body = api("PATCH", "/composite/sobjects", {"records": [rec(id=other["id"], Email__c="two@example.com")]},
                       extra={"Sforce-Duplicate-Rule-Header": "allowSave=true"})
    assert body[0]["success"]


# ---------------------------------------------------------------- trigger-like failures

def test_trigger_failure_and_lock_share(api):
    status, body = api("POST", "/sobjects/Widget__c", {"Name": "boom"})
    assert status == 400 and body[0]["errorCode"] == "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY"
    assert body[0]["message"] == "WidgetTrigger: execution of BeforeInsert caused by: System.DmlException: boom"
    status, _ = api("PUT", "/_emulator/rules", {"Widget__c": {"lockRate": 1}})
    status, body = api("POST", "/composite/sobjects", {"records": [rec(Name="x")]})
    assert codes(body[0]) == ["UNABLE_TO_LOCK_ROW"]
    status, _ = api("PUT", "/_emulator/rules", {"Widget__c": {"lockRate": 0.5}})
    _, body = api("POST", "/composite/sobjects", {"records": [rec(Name=f"n{i}") for i in range(200)]})
    locked = sum(1 for item in body if not item["success"])
    assert 40 < locked < 160 and all(codes(i) == ["UNABLE_TO_LOCK_ROW"] for i in body if not i["success"])


def test_bad_rules_are_refused_and_leave_the_old_ones(api):
    status, body = api("PUT", "/_emulator/rules", {"Widget__c": {"validationRules": [
        {"name": "x", "condition": "Nope__c > 1", "message": "m"}]}})
    assert status == 400 and "Nope__c".lower() in body["error"].lower()
    status, body = api("PUT", "/_emulator/rules", {"Gadget__c": {}})
    assert status == 400 and "no sObject Gadget__c" in body["error"]
    _, rules = api("GET", "/_emulator/rules")
    assert rules == RULES


def test_rules_come_from_the_data_dir(tmp_path):
    (tmp_path / "objects").mkdir()
    (tmp_path / "objects" / "Widget__c.json").write_text(json.dumps(WIDGET))
    (tmp_path / "rules.json").write_text(json.dumps(RULES))
    org = Org(tmp_path, "00D5g000004EMUL")
    try:
        with pytest.raises(Exception, match="FIELD_CUSTOM_VALIDATION_EXCEPTION"):
            org.create("Widget__c", {"Name": "a", "Amount__c": -1}, client=None, user_id=org.default_user_id)
    finally:
        org.close()


# ---------------------------------------------------------------- whole-request parse errors

@pytest.mark.parametrize("field, value, words", [
    ("Amount__c", "abc", "Cannot deserialize instance of double from VALUE_STRING value abc"),
    ("Due__c", "2024-13-45", "Cannot deserialize instance of date from VALUE_STRING value 2024-13-45"),
    ("Due__c", 5, "Cannot deserialize instance of date from VALUE_NUMBER_INT value 5"),
    ("Active__c", "yes", "Cannot deserialize instance of boolean from VALUE_STRING value yes"),
    ("Name", ["a"], "Cannot deserialize instance of string from START_ARRAY"),
])
def test_wrong_json_type_fails_the_whole_request(api, field, value, words):
    status, body = api("POST", "/sobjects/Widget__c", {"Name": "a", field: value})
    assert status == 400 and body[0]["errorCode"] == "JSON_PARSER_ERROR" and words in body[0]["message"]
    records = [rec(Name=f"r{i}") for i in range(5)]
    records[3][field] = value
    for method, path in (("POST", "/composite/sobjects"), ("PATCH", "/composite/sobjects/Widget__c/Code__c")):
        if method == "PATCH":
            records = [{**r, "Code__c": f"K{i}"} for i, r in enumerate(records)]
        status, body = api(method, path, {"allOrNone": False, "records": records})
        assert status == 400 and body[0]["errorCode"] == "JSON_PARSER_ERROR"
    assert list(api.org.query("SELECT Id FROM Widget__c")) == []      # nothing of the call was written


def test_wrong_json_type_in_collections_update_and_composite(api):
    _, created = api("POST", "/sobjects/Widget__c", {"Name": "a"})
    status, body = api("PATCH", "/composite/sobjects", {"records": [rec(id=created["id"], Name="b"),
                                                                    rec(id=created["id"], Amount__c="lots")]})
    assert status == 400 and body[0]["errorCode"] == "JSON_PARSER_ERROR"
    assert [r["Name"] for r in api.org.query("SELECT Name FROM Widget__c")] == ["a"]
    status, body = api("POST", "/composite", {"compositeRequest": [
        {"method": "PATCH", "url": f"{V}/sobjects/Widget__c/{created['id']}", "referenceId": "r1",
         "body": {"Due__c": "someday"}}]})
    sub = body["compositeResponse"][0]
    assert sub["httpStatusCode"] == 400 and sub["body"][0]["errorCode"] == "JSON_PARSER_ERROR"


def test_numeric_text_is_read_as_a_number(api):
    status, _ = api("POST", "/sobjects/Widget__c", {"Name": "a", "Amount__c": "12.5"})
    assert status == 201


def test_unknown_field_fails_the_whole_collections_request(api):
    status, body = api("POST", "/composite/sobjects", {"records": [rec(Name="a"), rec(Name="b", Nope__c=1)]})
    assert status == 400
    assert body == [{"message": "No such column 'Nope__c' on sobject of type Widget__c", "errorCode": "INVALID_FIELD"}]
    assert list(api.org.query("SELECT Id FROM Widget__c")) == []


# ---------------------------------------------------------------- getDeleted / getUpdated windows

def test_get_deleted_ignores_seconds_and_chains_without_a_gap(api):
    org = api.org
    now = org.clock.now()
    _, a = api("POST", "/sobjects/Widget__c", {"Name": "a"})
    _, b = api("POST", "/sobjects/Widget__c", {"Name": "b"})
    api("DELETE", f"/sobjects/Widget__c/{a['id']}")
    start = (now - dt.timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    end = org.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
    status, first = api("GET", "/sobjects/Widget__c/deleted/?" + urllib.parse.urlencode({"start": start, "end": end}))
    assert status == 200
    covered = dt.datetime.fromisoformat(first["latestDateCovered"].replace("Z", "+00:00"))
    assert covered.second == 0 and covered <= org.clock.now()
    # a delete in the minute the first window did not cover is in the next one
    api("DELETE", f"/sobjects/Widget__c/{b['id']}")
    org.clock.advance(61)
    seen = {r["id"] for r in first["deletedRecords"]}
    status, second = api("GET", "/sobjects/Widget__c/deleted/?" + urllib.parse.urlencode(
        {"start": first["latestDateCovered"], "end": org.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")}))
    seen |= {r["id"] for r in second["deletedRecords"]}
    assert seen == {a["id"], b["id"]}
    earliest = dt.datetime.fromisoformat(second["earliestDateAvailable"].replace("Z", "+00:00"))
    assert earliest.second == 0 and earliest < covered
    status, updated = api("GET", "/sobjects/Widget__c/updated/?" + urllib.parse.urlencode({"start": start, "end": end}))
    assert status == 200 and updated["latestDateCovered"][17:19] == "00"


# ---------------------------------------------------------------- sessions

def test_session_ends_after_inactivity_not_after_login(api):
    org = api.org
    for _ in range(3):                                   # busy for 3 x 400 s: longer than the 600 s timeout
        org.clock.advance(400)
        status, _ = api("GET", "/sobjects/Widget__c/describe")
        assert status == 200
    org.clock.advance(601)                               # then idle for longer than the timeout
    status, body = api("GET", "/sobjects/Widget__c/describe")
    assert status == 401 and body[0]["errorCode"] == "INVALID_SESSION_ID"


# ---------------------------------------------------------------- Bulk 2.0 query

def test_bulk_query_refuses_subqueries_and_reads_results_under_its_version(api):
    status, body = api("POST", "/jobs/query", {"operation": "query",
                                               "query": "SELECT Id, (SELECT Id FROM Contacts) FROM Account"})
    assert status == 400 and "subquer" in body[0]["message"].lower()
    api("POST", "/sobjects/Widget__c", {"Name": "a"})
    status, job = api("POST", "/jobs/query", {"operation": "query", "query": "SELECT Id FROM Widget__c"})
    for _ in range(200):
        _, job = api("GET", f"/jobs/query/{job['id']}")
        if job["state"] == "JobComplete":
            break
        time.sleep(0.05)
    other = api.client.get(f"/services/data/v58.0/jobs/query/{job['id']}/results", headers=api.headers)
    assert other.status_code == 409
    same = api.client.get(f"{V}/jobs/query/{job['id']}/results", headers=api.headers)
    assert same.status_code == 200
