"""Outbound Messages over real HTTP (Flask test client) into a real Postgres, applied by the job."""
import datetime as dt

import psycopg
import pytest

from jobs.inbound import apply_pending
from tests.conftest import API_TOKEN, ORG_ID, OUTBOUND_TOKEN, SAMPLES
from tests.support.messages import envelope, with_org

URL = f"/outbound/{OUTBOUND_TOKEN}"
OPP_FIELDS = {
    "Name": {"type": "string", "length": 120}, "Amount": {"type": "currency"}, "CloseDate": {"type": "date"},
    "StageName": {"type": "picklist", "length": 40}, "Probability": {"type": "percent"},
    "IsWon": {"type": "boolean"}, "FiscalYear": {"type": "int"}, "AccountId": {"type": "reference"},
    "CreatedDate": {"type": "datetime"},
}


def mapping(api, object_name, fields, **extra):
    r = api.post("/api/v1/mappings", json={"object_name": object_name,
                                           "config": {"access": "read_only", "fields": fields}, **extra})
    assert r.status_code == 201, r.get_json()
    return r.get_json()


def post(client, body):
    return client.post(URL, data=body, content_type="text/xml; charset=utf-8")


def rows(url, sql):
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()


def apply(app):
    return apply_pending(app.extensions["forcebridge"].db)


def test_real_capture_lands_as_typed_row(client, api, app, settings, enqueued):
    mapping(api, "Opportunity", OPP_FIELDS)
    body = (SAMPLES / "sample_opportunity_sandbox_real.xml").read_bytes()
    r = post(client, body)
    assert r.status_code == 200
    assert b"<Ack>true</Ack>" in r.data and b"notificationsResponse" in r.data
    assert [c for c in enqueued.calls if c[0] == "apply_inbound"] == [("apply_inbound", ()), ("apply_inbound", ())]
    assert apply(app).applied == 1
    (row,) = rows(settings.database_url, "SELECT sfid, name, amount, closedate, probability, iswon, fiscalyear, "
                  "accountid, createddate, systemmodstamp, isdeleted, _hc_lastop FROM salesforce.opportunity")
    # Heroku Connect's types: currency as double precision, datetimes as UTC without a zone
    assert row == ("0065w000023STAmAAO", "Backpackers, Inc. (Sample)", 45000.0, dt.date(2020, 7, 11),
                   80.0, False, 2020, "0015w00002BFDeLAAX",
                   dt.datetime(2020, 5, 8, 13, 40, 22), dt.datetime(2020, 5, 9, 3, 4, 32), False, "SYNCED")


@pytest.mark.parametrize("sample,object_name,fields", [
    ("sample_opportunity_dev_ed_real.xml", "Opportunity",
     {"Name": {"type": "string"}, "StageName": {"type": "picklist"}, "PREMIUM_CHARGES__c": {"type": "currency"},
      "UNIT__c": {"type": "double"}, "Modelo_Residencial__c": {"type": "reference"}}),
    ("sample_contact_guardian_fixture.xml", "Contact", {"LastName": {"type": "string"}}),
    ("sample_multiple_notifications_test_fixture.xml", "Contact", {"LastName": {"type": "string"}}),
])
def test_every_sample_is_accepted(client, api, app, settings, sample, object_name, fields):
    mapping(api, object_name, fields)
    body = with_org((SAMPLES / sample).read_bytes(), ORG_ID)
    assert post(client, body).status_code == 200
    result = apply(app)
    assert result.failed == 0 and result.applied >= 1
    count = rows(settings.database_url, f"SELECT count(*) FROM salesforce.{object_name.lower()}")[0][0]
    assert count == result.applied


def test_redelivery_is_a_noop_and_older_state_never_wins(client, api, app, settings):
    mapping(api, "Account", {"Name": {"type": "string"}})
    sfid = "0015w00002BFDeLAAX"
    new = envelope(ORG_ID, "Account", [{"Id": sfid, "Name": "new", "SystemModstamp": "2024-01-02T00:00:00.000Z"}])
    old = envelope(ORG_ID, "Account", [{"Id": sfid, "Name": "old", "SystemModstamp": "2024-01-01T00:00:00.000Z"}])
    assert post(client, new).status_code == 200
    assert post(client, new).status_code == 200          # Salesforce retried: same notification Id
    assert rows(settings.database_url, "SELECT count(*) FROM forcebridge.inbox")[0][0] == 1
    apply(app)
    assert post(client, old).status_code == 200           # delivered late, out of order
    apply(app)
    assert rows(settings.database_url, "SELECT name FROM salesforce.account") == [("new",)]


def test_hundred_notifications_in_one_message_mixed_objects(client, api, app, settings):
    mapping(api, "Account", {"Name": {"type": "string"}})
    mapping(api, "Contact", {"LastName": {"type": "string"}})
    accounts = [{"Id": f"001000000000{i:03d}AAA", "Name": f"A{i}", "SystemModstamp": "2024-01-01T00:00:00Z"}
                for i in range(100)]
    contacts = [{"Id": f"003000000000{i:03d}AAA", "LastName": f"C{i}"} for i in range(40)]
    assert post(client, envelope(ORG_ID, "Account", accounts)).status_code == 200
    assert post(client, envelope(ORG_ID, "Contact", contacts)).status_code == 200
    assert apply(app).applied == 140
    assert rows(settings.database_url, "SELECT count(*) FROM salesforce.account")[0][0] == 100
    assert rows(settings.database_url, "SELECT count(*) FROM salesforce.contact")[0][0] == 40


def test_unmapped_is_kept_then_replayed_when_mapping_appears(client, api, app, settings, enqueued):
    body = envelope(ORG_ID, "Lead", [{"Id": "00Q000000000001AAA", "Company": "Acme"}])
    assert post(client, body).status_code == 200
    apply(app)
    assert rows(settings.database_url, "SELECT state FROM forcebridge.inbox") == [("unmapped",)]
    mapping(api, "Lead", {"Company": {"type": "string"}})
    assert ("apply_inbound", ()) in enqueued.calls
    apply(app)
    assert rows(settings.database_url, "SELECT company FROM salesforce.lead") == [("Acme",)]


def test_bad_value_fails_alone_and_says_why(client, api, app, settings):
    mapping(api, "Account", {"NumberOfEmployees": {"type": "int"}, "Name": {"type": "string", "length": 5}})
    body = envelope(ORG_ID, "Account", [
        {"Id": "001000000000001AAA", "NumberOfEmployees": "abc"},
        {"Id": "001000000000002AAA", "NumberOfEmployees": "12"},
        {"Id": "001000000000003AAA", "Name": "far too long for five"},
    ])
    assert post(client, body).status_code == 200
    result = apply(app)
    assert (result.applied, result.failed) == (1, 2)
    failed = dict(rows(settings.database_url, "SELECT sfid, error FROM forcebridge.inbox WHERE state = 'failed'"))
    assert "NumberOfEmployees" in failed["001000000000001AAA"] and "abc" in failed["001000000000001AAA"]
    assert "too long" in failed["001000000000003AAA"]
    assert rows(settings.database_url, "SELECT numberofemployees FROM salesforce.account") == [(12,)]


@pytest.mark.parametrize("body,status", [
    (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol1 "&lol;&lol;&lol;&lol;">'
     b'<!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;">]><lolz>&lol2;</lolz>', 400),
    (b'<?xml version="1.0"?><!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><foo>&xxe;</foo>', 400),
    (b"this is not xml", 400),
    (envelope(ORG_ID, "Account", [{"Id": "001000000000001AAA"}])[:-40], 400),
    (b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>'
     b'<login xmlns="urn:partner.soap.sforce.com"/></soapenv:Body></soapenv:Envelope>', 400),
    (envelope("00D000000000001AAA", "Account", [{"Id": "001000000000001AAA"}]), 403),
    (b"<a>" + b"x" * (20 * 1024 * 1024) + b"</a>", 413),
])
def test_hostile_or_broken_input_is_refused_and_nothing_stored(client, settings, body, status):
    r = post(client, body)
    assert r.status_code == status
    assert b"Fault" in r.data
    assert rows(settings.database_url, "SELECT count(*) FROM forcebridge.inbox")[0][0] == 0
    ok = post(client, envelope(ORG_ID, "Account", [{"Id": "001000000000009AAA"}]))
    assert ok.status_code == 200   # and the server keeps serving


def test_wrong_token_is_404(client):
    assert client.post("/outbound/nope", data=b"x").status_code == 404


def test_hourly_stats_count_per_mapping(client, api, app):
    m = mapping(api, "Account", {"Name": {"type": "string"}})
    post(client, envelope(ORG_ID, "Account", [{"Id": f"001000000000{i:03d}AAA"} for i in range(7)]))
    apply(app)
    r = api.get("/api/v1/stats/hourly?hours=3")
    buckets = r.get_json()["buckets"]
    assert len({b["hour"] for b in buckets}) == 3
    synced = [b for b in buckets if b["outcome"] == "synced"]
    assert synced == [{"hour": synced[0]["hour"], "mapping_id": m["id"], "direction": "sf_to_pg",
                       "outcome": "synced", "count": 7}]


def test_api_requires_the_token(client):
    assert client.get("/api/v1/mappings").status_code == 401
    assert client.get("/api/v1/mappings", headers={"Authorization": f"Bearer {API_TOKEN}x"}).status_code == 401


def test_healthz(client):
    assert client.get("/healthz").get_json() == {"status": "ok", "postgres": True}


def test_row_breaking_the_users_own_constraint_fails_alone(client, api, app, settings):
    # constraints a user adds to a mapped table (UNIQUE external id, CHECK) must not stall the whole batch
    mapping(api, "Account", {"AccountNumber": {"type": "string"}, "NumberOfEmployees": {"type": "int"}})
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute("CREATE UNIQUE INDEX account_number_unique ON salesforce.account (accountnumber)")
        conn.execute("ALTER TABLE salesforce.account ADD CONSTRAINT staff_not_negative "
                     "CHECK (numberofemployees >= 0)")
    body = envelope(ORG_ID, "Account", [
        {"Id": "001000000000001AAA", "AccountNumber": "A-1", "NumberOfEmployees": "1"},
        {"Id": "001000000000002AAA", "AccountNumber": "A-1", "NumberOfEmployees": "2"},
        {"Id": "001000000000003AAA", "AccountNumber": "A-3", "NumberOfEmployees": "-5"},
        {"Id": "001000000000004AAA", "AccountNumber": "A-4", "NumberOfEmployees": "4"},
    ])
    assert post(client, body).status_code == 200
    result = apply(app)
    assert (result.applied, result.failed) == (2, 2)
    failed = dict(rows(settings.database_url, "SELECT sfid, error FROM forcebridge.inbox WHERE state = 'failed'"))
    assert "account_number_unique" in failed["001000000000002AAA"]
    assert "staff_not_negative" in failed["001000000000003AAA"]
    assert rows(settings.database_url, "SELECT sfid FROM salesforce.account ORDER BY sfid") == [
        ("001000000000001AAA",), ("001000000000004AAA",)]
    assert rows(settings.database_url, "SELECT count(*) FROM forcebridge.inbox WHERE state = 'pending'") == [(0,)]
