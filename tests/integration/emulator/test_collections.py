"""sObject Collections writes in process (Flask test client on an Org in a temp dir): a Collections upsert looks
up all its external ids in one query, and must answer exactly as one lookup per record, in request order."""
import json

import pytest

from emulator.app import create_app
from emulator.store import Org

V = "/services/data/v59.0"
WIDGET = {"name": "Widget__c", "keyPrefix": "a0W", "fields": [
    {"name": "Name"},
    {"name": "Num__c", "type": "double", "externalId": True, "unique": True, "precision": 18, "scale": 2},
    {"name": "Code__c", "externalId": True, "unique": True, "length": 20}]}


@pytest.fixture
def api(tmp_path):
    (tmp_path / "objects").mkdir()
    (tmp_path / "objects" / "Widget__c.json").write_text(json.dumps(WIDGET))
    org = Org(tmp_path, "00D5g000004EMUL")
    app = create_app(org)
    session, _ = org.open_session(org.default_user_id)
    client = app.test_client()
    headers = {"Authorization": f"Bearer {session.token}"}

    def call(method, path, body=None):
        response = client.open(V + path, method=method, json=body, headers=headers)
        return response.status_code, response.get_json()
    call.org = org
    yield call
    for hook in app.config.get("SHUTDOWN_HOOKS", []):
        hook()
    org.close()


def rec(sobject, **fields):
    return {"attributes": {"type": sobject}, **fields}


def upsert(api, sobject, field, records, all_or_none=False):
    status, body = api("PATCH", f"/composite/sobjects/{sobject}/{field}", {"allOrNone": all_or_none,
                                                                          "records": records})
    assert status == 200
    return body


def test_one_call_stamps_all_its_records_and_changes_with_one_time(api):
    status, body = api("POST", "/composite/sobjects", {"records": [rec("Invoice__c", Name=f"t{i}") for i in range(200)]})
    assert status == 200 and all(r["success"] for r in body)
    rows = api.org.query("SELECT CreatedDate, LastModifiedDate, SystemModstamp FROM Invoice__c")
    stamps = {value for row in rows for value in row.values()}
    assert len(stamps) == 1
    changes = api.org.changes()
    assert {c["at"] for c in changes if c["sobject"] == "Invoice__c"} == stamps


def test_upsert_matches_text_case_insensitively_for_ascii_only(api):
    upsert(api, "Invoice__c", "External_Id__c", [rec("Invoice__c", Name="a", External_Id__c="ABC"),
                                                 rec("Invoice__c", Name="e", External_Id__c="É1")])
    body = upsert(api, "Invoice__c", "External_Id__c", [
        rec("Invoice__c", Name="a2", External_Id__c="abc"),      # matches ABC, as SOQL/SQLite NOCASE does
        rec("Invoice__c", Name="e2", External_Id__c="é1"),       # NOCASE folds ASCII only: a new record
        rec("Invoice__c", Name="n", External_Id__c="new")])
    assert [(r["success"], r["created"]) for r in body] == [(True, False), (True, True), (True, True)]
    names = {r["External_Id__c"]: r["Name"] for r in api.org.query("SELECT External_Id__c, Name FROM Invoice__c")}
    assert names == {"ABC": "a2", "É1": "e", "é1": "e2", "new": "n"}


def test_upsert_values_equal_once_converted_behave_as_one_record_after_another(api):
    """1 and "1.0" are different JSON values but one number: the second record updates what the first created."""
    body = upsert(api, "Widget__c", "Num__c", [rec("Widget__c", Num__c=1, Name="first"),
                                               rec("Widget__c", Num__c="1.0", Name="second")])
    assert [r.get("created") for r in body] == [True, False]
    assert body[0]["id"] == body[1]["id"]
    # "x" cannot be read as a number at all: the whole call fails (tests/integration/emulator/test_refusals.py)
    assert [r["Name"] for r in api.org.query("SELECT Name FROM Widget__c")] == ["second"]


def test_upsert_with_several_matches_is_a_multiple_choices_item(api):
    status, body = api("POST", "/composite/sobjects", {"records": [rec("Contact", LastName=n, Legacy_Id__c="L1")
                                                                   for n in ("a", "b")]})
    assert status == 200
    body = upsert(api, "Contact", "Legacy_Id__c", [rec("Contact", Legacy_Id__c="l1", Title="x"),
                                                   rec("Contact", Legacy_Id__c="L2", LastName="c")])
    assert body[0]["success"] is False and body[0]["errors"][0]["statusCode"] == "MULTIPLE_CHOICES"
    assert body[1]["created"] is True


def test_upsert_ignores_deleted_records_and_checks_other_unique_fields_within_the_call(api):
    first = upsert(api, "Widget__c", "Code__c", [rec("Widget__c", Code__c="k1", Num__c=7)])[0]["id"]
    assert api("DELETE", f"/sobjects/Widget__c/{first}")[0] == 204
    body = upsert(api, "Widget__c", "Code__c", [rec("Widget__c", Code__c="k1", Num__c=7),     # k1 is in the bin
                                                rec("Widget__c", Code__c="k2", Num__c=8),
                                                rec("Widget__c", Code__c="k3", Num__c=8)])    # 8 taken by k2
    assert [r.get("created") for r in body[:2]] == [True, True] and body[0]["id"] != first
    assert body[2]["errors"][0] == {"statusCode": "DUPLICATE_VALUE", "fields": [], "message": (
        f"duplicate value found: Num__c duplicates value on record with id: {body[1]['id'][:15]}")}


def test_upsert_update_recomputes_a_compound_name(api):
    upsert(api, "Contact", "External_Id__c", [rec("Contact", External_Id__c="C1", FirstName="Ann", LastName="Lee")])
    body = upsert(api, "Contact", "External_Id__c", [rec("Contact", External_Id__c="c1", FirstName="Bo")])
    assert body[0]["created"] is False
    assert api.org.get("Contact", body[0]["id"], fields=["Name"])["Name"] == "Bo Lee"


def test_all_or_none_upsert_writes_nothing_when_one_record_fails(api):
    body = upsert(api, "Invoice__c", "External_Id__c", [rec("Invoice__c", Name="ok", External_Id__c="A1"),
                                                        rec("Invoice__c", Name="bad", External_Id__c="A2",
                                                            Status__c="Lost")], all_or_none=True)
    assert [r["errors"][0]["statusCode"] for r in body] == ["ALL_OR_NONE_OPERATION_ROLLED_BACK",
                                                           "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"]
    assert list(api.org.query("SELECT Id FROM Invoice__c")) == []
    assert not [c for c in api.org.changes() if c["sobject"] == "Invoice__c"]


def test_composite_carries_collections_requests_at_most_five(api):
    def sub(n, count):
        return {"method": "POST", "url": "/services/data/v59.0/composite/sobjects", "referenceId": f"c{n}",
                "body": {"allOrNone": False, "records": [rec("Invoice__c", Name=f"b{n}-{i}") for i in range(count)]}}
    status, body = api("POST", "/composite", {"compositeRequest": [sub(n, 200) for n in range(5)]})
    assert status == 200
    answers = body["compositeResponse"]
    assert [a["httpStatusCode"] for a in answers] == [200] * 5 and all(len(a["body"]) == 200 for a in answers)
    assert all(item["success"] for a in answers for item in a["body"])
    status, body = api("POST", "/composite", {"compositeRequest": [sub(n, 1) for n in range(6)]})
    assert status == 400 and body[0]["errorCode"] == "INVALID_API_INPUT"
    status, body = api("GET", "/query?q=SELECT+count()+FROM+Invoice__c")
    assert body["totalSize"] == 1000                                  # the refused call wrote nothing
