"""API usage accounting (issue 16): every call the gateway makes is counted per hour, kind of work and
object, stored in Postgres; Salesforce's own count (Sforce-Limit-Info, /limits) is kept beside ours."""
from __future__ import annotations

import dataclasses

import pytest

from gateway.db import Database
from gateway.salesforce import PermanentError, Salesforce, TransientError
from jobs import api_usage
from tests.integration.test_write_path import sf_settings  # noqa: F401


@pytest.fixture
def db(sf_settings):
    database = Database(sf_settings.database_url)
    yield database
    database.close()


def usage_rows(db) -> dict:
    with db.transaction() as conn:
        rows = conn.execute("SELECT kind, object_name, calls, saved FROM forcebridge.api_usage_hourly").fetchall()
    return {(r["kind"], r["object_name"]): (r["calls"], r["saved"]) for r in rows}


def test_calls_are_counted_by_kind_and_object_and_stored(sf_settings, emulator, db):
    sf = Salesforce(sf_settings, backoff=0.01)
    try:
        with sf.work("polls"):
            sf.query("SELECT Id FROM Invoice__c")
        sf.upsert_records("Invoice__c", "External_Id__c", [{"External_Id__c": "acc-1", "Name": "one"}])
        with sf.work("drift"):
            sf.describe("Account")
        sf.call("GET", "/limits", kind="other")
        assert api_usage.flush(db, sf) == 6       # the write's describe (values typed by it) is a call too
        assert api_usage.flush(db, sf) == 0          # taken once
    finally:
        sf.close()
    rows = usage_rows(db)
    assert rows[("logins", "")] == (1, 0)
    assert rows[("polls", "Invoice__c")] == (1, 0)
    assert rows[("writes", "Invoice__c")] == (2, 0)   # the path says it is a write; its describe goes with it
    assert rows[("drift", "Account")] == (1, 0)
    assert rows[("other", "")] == (1, 0)
    stats = emulator.admin("GET", "/_emulator/stats")
    daily = api_usage.limits(db)["DailyApiRequests"]
    assert daily["max"] == stats["dailyLimit"] and daily["max"] - daily["remaining"] == stats["used"]
    assert api_usage.health(db)["state"] == "ok"


def test_a_bulk_query_counts_what_it_saved_against_rest_pages(sf_settings, emulator, db):
    emulator.admin("POST", "/_emulator/seed", {"sobject": "Invoice__c", "count": 5000})
    sf = Salesforce(sf_settings, backoff=0.01)
    try:
        with sf.work("loads"):
            job = sf.bulk_query_create("SELECT Id, Name FROM Invoice__c")
            while sf.bulk_query_job(job["id"])["state"] != "JobComplete":
                pass
            sf.bulk_query_results(job["id"], None, None).close()
            sf.bulk_query_delete(job["id"])
        api_usage.flush(db, sf)
    finally:
        sf.close()
    calls, saved = usage_rows(db)[("loads", "Invoice__c")]
    # REST would have taken ceil(5000 / 2000) = 3 pages: the job's calls are weighed against them
    assert calls >= 4 and saved == 3 - calls


def test_refused_credentials_and_an_unreachable_salesforce_are_recorded(sf_settings, emulator, db):
    refused = Salesforce(dataclasses.replace(sf_settings, sf_password="wrong"))
    with pytest.raises(PermanentError):
        refused.query("SELECT Id FROM Invoice__c")
    api_usage.flush(db, refused)
    assert api_usage.health(db)["state"] == "refused"
    assert usage_rows(db)[("logins", "")] == (1, 0)
    away = Salesforce(dataclasses.replace(sf_settings, sf_instance_url="https://127.0.0.1:9"), retries=0)
    with pytest.raises(TransientError):
        away.query("SELECT Id FROM Invoice__c")
    api_usage.flush(db, away)
    assert api_usage.health(db)["state"] == "unreachable"


def test_limits_are_read_at_most_every_so_often(sf_settings, emulator, db):
    sf = Salesforce(sf_settings)
    try:
        assert api_usage.refresh_limits(db, sf, force=True)
        assert not api_usage.refresh_limits(db, sf, every=3600)
        assert not api_usage.refresh_limits(db, sf, every=0)       # idle since: no call at all
        sf.query("SELECT Id FROM Account LIMIT 1")
        assert api_usage.refresh_limits(db, sf, every=0)
    finally:
        sf.close()
    limits = api_usage.limits(db)
    assert {"DailyApiRequests", "DailyBulkV2QueryJobs"} <= set(limits)
