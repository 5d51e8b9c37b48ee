"""How the write path survives an org's refusals (issue #15), against the emulator over HTTPS and a real
Postgres: a whole-call refusal is split until the bad record is alone, values go in describe's JSON type,
validation/duplicate/trigger failures land on the row, locked rows are retried, no delete is lost."""
from __future__ import annotations

import dataclasses

import pytest

from gateway import mapping_store
from gateway.salesforce import PermanentError, TransientError
from jobs import api_usage, push
from jobs.drain import drain
from tests.conftest import testing_app as app_with
from tests.integration.test_capture import sql, writing_mapping
from tests.integration.test_write_path import (FAST, FIELDS, collection_calls, db, invoices, sf, sf_api,  # noqa: F401
                                               sf_app, sf_settings)
from tests.support.console import BASE, PASSWORD, sign_in

@pytest.fixture
def rules(emulator):
    def put(config):
        emulator.admin("PUT", "/_emulator/rules", config)
    yield put
    emulator.admin("DELETE", "/_emulator/rules")


def drifted_mapping(sf_api, url):
    """Quantity__c is a double in Salesforce; the mapping keeps it as text (the type it had once)."""
    writing_mapping(sf_api, fields={**FIELDS, "Quantity__c": {"type": "string", "length": 40}},
                    upsert_field="External_Id__c")
    assert sql(url, "SELECT data_type FROM information_schema.columns WHERE table_name = 'invoice__c' "
                    "AND column_name = 'quantity__c'") == [("character varying",)]


def row_error(url, name):
    lastop, err = sql(url, "SELECT _hc_lastop, _hc_err FROM salesforce.invoice__c WHERE name = %s", (name,))[0]
    return lastop, err


def test_a_drifted_column_fails_one_record_before_the_call_and_199_are_written(sf_api, sf_settings, db, sf, emulator):
    url = sf_settings.database_url
    drifted_mapping(sf_api, url)
    sql(url, "INSERT INTO salesforce.invoice__c (name, quantity__c) "
             "SELECT 'q' || g, CASE WHEN g = 77 THEN 'seventy' ELSE g::text END FROM generate_series(1, 200) g")
    result = drain(db, sf, FAST)
    assert result.outcomes == {"SUCCESS": 199, "FAILED": 1}
    assert collection_calls(emulator) == 1 and sf.split_calls == 0       # refused before the call
    lastop, err = row_error(url, "q77")
    assert lastop == "FAILED" and "INVALID_TYPE_ON_FIELD_IN_RECORD" in err and "seventy" in err
    remote = sf.query("SELECT Quantity__c FROM Invoice__c")
    assert sorted(r["Quantity__c"] for r in remote) == sorted(set(range(1, 201)) - {77})   # sent as numbers


def test_a_whole_call_refusal_is_split_until_the_bad_record_is_alone(sf_api, sf_settings, db, sf, emulator,
                                                                      monkeypatch):
    """Without describe (unreachable), the bad value reaches Salesforce, which refuses the whole call."""
    url = sf_settings.database_url
    drifted_mapping(sf_api, url)
    sql(url, "INSERT INTO salesforce.invoice__c (name, quantity__c) "
             "SELECT 'q' || g, CASE WHEN g = 150 THEN 'oops' ELSE g::text END FROM generate_series(1, 200) g")

    def no_describe(sobject, max_age=600.0):
        raise TransientError(503, "SERVER_UNAVAILABLE", "describe unavailable")
    monkeypatch.setattr(sf, "describe", no_describe)
    result = drain(db, sf, FAST)
    assert result.outcomes == {"SUCCESS": 199, "FAILED": 1}
    lastop, err = row_error(url, "q150")
    assert lastop == "FAILED" and "JSON_PARSER_ERROR" in err and "oops" in err
    assert len(invoices(sf)) == 199
    # halving 200 down to one record: two calls per level, 8 levels at most
    assert 0 < sf.split_calls <= 16 and collection_calls(emulator) == 1 + sf.split_calls
    api_usage.flush(db, sf)                           # what /metrics exports (forcebridge_api_split_calls_24h)
    assert sql(url, "SELECT sum(split_calls) FROM forcebridge.api_usage_hourly WHERE kind = 'writes'") == [
        (sf.split_calls,)]


def test_splitting_is_bounded_and_leaves_the_rest_for_later(sf):
    sf.max_split_calls = 4
    calls = []

    def one_call(part):
        calls.append(len(part))
        if any(r.get("bad") for r in part):
            raise PermanentError(400, "JSON_PARSER_ERROR", "Cannot deserialize",
                                 [{"errorCode": "JSON_PARSER_ERROR", "message": "Cannot deserialize"}])
        return [{"success": True, "id": r["n"]} for r in part]
    records = [{"n": i, "bad": i in (3, 100)} for i in range(200)]
    results = sf.split_records(records, one_call)
    assert len(calls) == 1 + 4 and sf.split_calls == 4
    assert len(results) == 200
    codes = {r["errors"][0]["statusCode"] for r in results if not r["success"]}
    assert codes <= {"SERVER_UNAVAILABLE", "JSON_PARSER_ERROR"}       # never a good record failed for good
    assert all(r["success"] or r["errors"][0]["statusCode"] == "SERVER_UNAVAILABLE"
               for i, r in enumerate(results) if i not in (3, 100))


def test_an_unknown_field_fails_only_the_records_that_carry_it(sf):
    calls = []

    def one_call(part):
        calls.append(len(part))
        if any("Nope__c" in r for r in part):
            raise PermanentError(400, "INVALID_FIELD", "No such column 'Nope__c' on sobject of type Invoice__c",
                                 [{"errorCode": "INVALID_FIELD",
                                   "message": "No such column 'Nope__c' on sobject of type Invoice__c"}])
        return [{"success": True} for _ in part]
    results = sf.split_records([{"Name": "a"}, {"Name": "b", "Nope__c": 1}, {"Name": "c"}], one_call)
    assert calls == [3, 2]
    assert [r["success"] for r in results] == [True, False, True]
    assert results[1]["errors"][0]["statusCode"] == "INVALID_FIELD"


def test_validation_rule_added_while_changes_are_queued(sf_api, sf_settings, db, sf, rules, enqueued):
    url = sf_settings.database_url
    writing_mapping(sf_api, fields=FIELDS, upsert_field="External_Id__c")
    sql(url, "INSERT INTO salesforce.invoice__c (name, amount__c) VALUES ('fine', 5), ('negative', -5)")
    rules({"Invoice__c": {"validationRules": [{"name": "No_Negative", "condition": "Amount__c < 0",
                                               "message": "Amount must not be negative", "field": "Amount__c"}]}})
    assert drain(db, sf, FAST).outcomes == {"SUCCESS": 1, "FAILED": 1}
    lastop, err = row_error(url, "negative")
    assert lastop == "FAILED"
    assert err == "Amount must not be negative (FIELD_CUSTOM_VALIDATION_EXCEPTION)"      # Heroku Connect's shape
    listed = sf_api.get("/api/v1/errors").get_json()["errors"]
    assert [e["error"][0]["message"] for e in listed] == ["Amount must not be negative"]
    with app_with(dataclasses.replace(sf_settings, admin_password=PASSWORD), enqueued) as console:
        client = console.test_client()
        sign_in(client)
        assert "Amount must not be negative" in client.get("/errors", base_url=BASE).text
    sql(url, "UPDATE salesforce.invoice__c SET amount__c = 1 WHERE name = 'negative'")      # the data is fixed
    assert drain(db, sf, FAST).outcomes == {"SUCCESS": 1}
    assert row_error(url, "negative") == ("INSERTED", None)
    assert sf_api.get("/api/v1/errors").get_json()["errors"] == []


def test_trigger_failure_lands_on_the_row_and_locked_rows_are_retried(sf_api, sf_settings, db, sf, rules):
    url = sf_settings.database_url
    writing_mapping(sf_api, fields=FIELDS, upsert_field="External_Id__c")
    rules({"Invoice__c": {"triggers": [{"name": "InvoiceTrigger", "condition": "Name = 'boom'",
                                        "message": "System.DmlException: no booms"}], "lockRate": 1}})
    sql(url, "INSERT INTO salesforce.invoice__c (name) VALUES ('boom'), ('calm')")
    backoff = dataclasses.replace(FAST, retry_base_seconds=30)
    outcomes = drain(db, sf, backoff).outcomes
    assert outcomes == {"FAILED": 1, "REQUEUED": 1}            # the trigger runs before the lock is taken
    assert "InvoiceTrigger: execution of BeforeInsert caused by: System.DmlException: no booms" in \
        row_error(url, "boom")[1]
    waiting = sql(url, "SELECT attempts, next_attempt_at > now() + interval '20 seconds' "
                       "FROM forcebridge.change_log WHERE state = 'REQUEUED'")
    assert waiting == [(1, True)]                              # retried later, with backoff
    assert drain(db, sf, backoff).claimed == 0                 # not before its time
    sql(url, "UPDATE forcebridge.change_log SET next_attempt_at = now() WHERE state = 'REQUEUED'")
    rules({"Invoice__c": {"triggers": [{"name": "InvoiceTrigger", "condition": "Name = 'boom'",
                                        "message": "System.DmlException: no booms"}]}})
    assert drain(db, sf, FAST).outcomes == {"SUCCESS": 1}
    assert set(invoices(sf)) and {r["Name"] for r in invoices(sf).values()} == {"calm"}


def test_duplicate_rule_hit_by_the_initial_push(sf_api, sf_settings, db, sf, emulator, rules):
    url = sf_settings.database_url
    emulator.salesforce(client="user").Invoice__c.create({"Name": "twin"})
    rules({"Invoice__c": {"duplicateRules": [{"name": "Invoice_Name", "fields": ["Name"]}]}})
    writing_mapping(sf_api, fields=FIELDS, upsert_field="External_Id__c")
    sql(url, "INSERT INTO salesforce.invoice__c (name) SELECT 'p' || g FROM generate_series(1, 30) g",
        origin="salesforce")
    sql(url, "INSERT INTO salesforce.invoice__c (name) VALUES ('TWIN')", origin="salesforce")
    m = mapping_store.get(db, sql(url, "SELECT id FROM forcebridge.mappings")[0][0])
    result = push.initial_push(db, sf, m, push.PushOptions(bulk_threshold=10))
    assert result["bulk_jobs"] == 1 and result["outcomes"] == {"SUCCESS": 30, "FAILED": 1}
    lastop, err = row_error(url, "TWIN")
    assert lastop == "FAILED" and "DUPLICATES_DETECTED" in err and "Use one of these records?" in err


def test_an_ingest_job_failing_wholesale_goes_record_by_record(sf_api, sf_settings, db, sf, monkeypatch):
    url = sf_settings.database_url
    drifted_mapping(sf_api, url)
    sql(url, "INSERT INTO salesforce.invoice__c (name, quantity__c) SELECT 'b' || g, "
             "CASE WHEN g = 5 THEN 'five' ELSE g::text END FROM generate_series(1, 20) g", origin="salesforce")
    real_job = sf.bulk_ingest_job
    monkeypatch.setattr(sf, "bulk_ingest_job", lambda job_id: {**real_job(job_id), "state": "Failed",
                                                               "errorMessage": "InvalidBatch : refused"})
    m = mapping_store.get(db, sql(url, "SELECT id FROM forcebridge.mappings")[0][0])
    result = push.initial_push(db, sf, m, push.PushOptions(bulk_threshold=10))
    assert result["outcomes"] == {"SUCCESS": 19, "FAILED": 1}
    assert "five" in row_error(url, "b5")[1]
