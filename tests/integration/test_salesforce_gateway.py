"""The Salesforce gateway against the emulator over HTTPS: both logins, the client name, errors, describe."""
from __future__ import annotations

import dataclasses

import pytest

from gateway.salesforce import PermanentError, Salesforce, TransientError
from tests.integration.test_write_path import sf_api, sf_app, sf_settings  # noqa: F401


@pytest.mark.parametrize("auth", ["soap", "client_credentials"])
def test_logs_in_both_ways_names_itself_and_reads_api_usage(sf_settings, emulator, auth):
    settings = sf_settings if auth == "soap" else dataclasses.replace(
        sf_settings, sf_username="", sf_password="", sf_security_token="",
        sf_client_id=emulator.consumer_key, sf_client_secret=emulator.consumer_secret)
    sf = Salesforce(settings)
    try:
        fields = {f["name"]: f for f in sf.describe("Invoice__c")["fields"]}
        assert fields["External_Id__c"]["externalId"] is True
        sf.query("SELECT Id FROM Invoice__c LIMIT 1")
    finally:
        sf.close()
    stats = emulator.admin("GET", "/_emulator/stats")
    assert stats["perRouteClient"]["rest.sobject_describe"] == {"forcebridge": 1}
    assert stats["perRouteClient"]["rest.query"] == {"forcebridge": 1}
    assert sf.api_usage is not None and sf.api_usage.limit == stats["dailyLimit"] and sf.api_usage.used >= 2


def test_errors_are_mapped_to_permanent_or_transient(sf_settings, emulator):
    sf = Salesforce(sf_settings, backoff=0.01)
    try:
        with pytest.raises(PermanentError) as missing:
            sf.describe("No_Such_Object__c")
        assert missing.value.status == 404
        with pytest.raises(PermanentError) as malformed:
            sf.query("SELEKT Id FROM Invoice__c")
        assert malformed.value.error_code == "MALFORMED_QUERY"
        emulator.admin("POST", "/_emulator/faults", {"rules": {"rest.*": {"errors": {"503": 1}}}})
        with pytest.raises(TransientError) as unavailable:
            sf.query("SELECT Id FROM Invoice__c")
        assert unavailable.value.status == 503
        assert emulator.admin("GET", "/_emulator/faults")["injected"]["503"] == 4   # tried, then 3 retries
        emulator.admin("DELETE", "/_emulator/faults")
        emulator.admin("POST", "/_emulator/sessions/expire")
        assert sf.query("SELECT Id FROM Invoice__c") == []                         # logged in again
    finally:
        sf.close()


def test_mapping_reads_field_types_from_describe(sf_api):
    r = sf_api.post("/api/v1/mappings", json={"object_name": "Invoice__c", "direction": "bidirectional",
                                              "config": {"fields": {"Name": {}, "Amount__c": {}, "Paid__c": {}},
                                                         "upsert_field": None}})
    assert r.status_code == 201, r.get_json()
    fields = r.get_json()["config"]["fields"]
    assert (fields["Name"], fields["Amount__c"], fields["Paid__c"]) == (
        {"type": "string", "length": 80}, {"type": "currency"}, {"type": "boolean"})
    r = sf_api.post("/api/v1/mappings", json={"object_name": "Nothing__c", "config": {"fields": {"Name": {}}}})
    assert r.status_code == 400 and "no object Nothing__c" in r.get_json()["message"]


def test_a_create_without_external_id_is_not_retried_in_the_call(sf_settings, emulator):
    """A create that failed with a 5xx may have created the records: a second try could make twins."""
    sf = Salesforce(sf_settings, backoff=0.01)
    try:
        sf.describe("Invoice__c")                                     # logged in
        emulator.admin("POST", "/_emulator/faults", {"rules": {"composite.*": {"errors": {"503": 1}}}})
        before = sf.calls
        with pytest.raises(TransientError):
            sf.create_records("Invoice__c", [{"Name": "once"}])
        creates, before = sf.calls - before, sf.calls
        with pytest.raises(TransientError):
            sf.upsert_records("Invoice__c", "External_Id__c", [{"Name": "u", "External_Id__c": "U"}])
        upserts = sf.calls - before
    finally:
        emulator.admin("DELETE", "/_emulator/faults")
        sf.close()
    assert (creates, upserts) == (1, 1 + sf.retries)                  # the create once; the upsert retried
