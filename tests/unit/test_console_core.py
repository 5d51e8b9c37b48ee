"""The console's pure parts: trend series, configuration export/import, the Outbound Message WSDL."""
from __future__ import annotations

import datetime as dt
import json
import pathlib

import pytest

from core import configuration, trends
from core.mapping import Mapping, MappingError, from_entry
from core.convert import FieldSpec
from core.outbound_wsdl import WsdlError, read_wsdl
from core.setup_check import acknowledged

FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "fixtures"
H0 = dt.datetime(2026, 11, 27, 6, tzinfo=dt.timezone.utc)


def hour(n):
    return H0 + dt.timedelta(hours=n)


def test_quiet_hours_are_zero_not_skipped():
    rows = [{"hour": hour(0), "mapping_id": None, "direction": None, "outcome": None, "count": 0},
            {"hour": hour(1), "mapping_id": 1, "direction": "sf_to_pg", "outcome": "synced", "count": 5},
            {"hour": hour(1), "mapping_id": 2, "direction": "sf_to_pg", "outcome": "synced", "count": 2},
            {"hour": hour(1), "mapping_id": 1, "direction": "sf_to_pg", "outcome": "failed", "count": 1},
            {"hour": hour(2), "mapping_id": 1, "direction": "pg_to_sf", "outcome": "success", "count": 3},
            {"hour": hour(2), "mapping_id": 1, "direction": "pg_to_sf", "outcome": "merged", "count": 9},
            {"hour": hour(2), "mapping_id": 3, "direction": "sf_to_pg", "outcome": "cdc_events", "count": 4}]
    shaped = trends.hourly_series(rows)
    assert shaped["hours"] == [hour(0), hour(1), hour(2)]
    by_key = {s["key"]: s["counts"] for s in shaped["series"]}
    assert by_key["sf_to_pg:synced"] == [0, 7, 0]
    assert by_key["sf_to_pg:failed"] == [0, 1, 0]
    assert by_key["pg_to_sf:synced"] == [0, 0, 3]     # the write path says "success"; merged are not extra records
    assert by_key["sf_to_pg:cdc_events"] == [0, 0, 4]   # Change Data Capture events, their own series
    figure = trends.figure(shaped, "t")
    assert [len(t["y"]) for t in figure["data"]] == [3, 3, 3, 3, 3]
    json.dumps(figure)   # plain JSON for the browser


def test_ranges_are_24_hours_7_days_30_days():
    assert [trends.hours_for(r) for r in ("24h", "7d", "30d")] == [24, 168, 720]
    with pytest.raises(ValueError):
        trends.hours_for("1y")


DESCRIBE = {"name": "Account", "fields": [
    {"name": "Id", "type": "id", "length": 18}, {"name": "Name", "type": "string", "length": 255},
    {"name": "AnnualRevenue", "type": "currency"}, {"name": "Ext__c", "type": "string", "length": 40}]}


def account() -> Mapping:
    return Mapping(object_name="Account", table_schema="salesforce", table_name="account", direction="bidirectional",
                   fields=(FieldSpec("Name", "string", 255), FieldSpec("AnnualRevenue", "currency"),
                           FieldSpec("Ext__c", "string", 40)), upsert_field="Ext__c", id=3,
                   extra={"sf_polling_seconds": 120})


def test_heroku_export_reads_back_into_the_same_mapping_with_describe():
    doc = configuration.export_document([account()], {"organization_id": "00D"}, "heroku")
    entry = doc["mappings"][0]
    assert set(entry) == {"object_name", "config"}
    assert entry["config"]["access"] == "read_write" and entry["config"]["upsert_field"] == "Ext__c"
    assert entry["config"]["fields"]["Name"] == {}
    assert entry["config"]["sf_polling_seconds"] == 120       # kept from the import, not the default
    connection, entries = configuration.read_document(json.loads(json.dumps(doc)))
    back = from_entry(entries[0], describe=DESCRIBE, default_schema=configuration.default_schema(connection))
    assert back.fields == account().fields and back.direction == "bidirectional"


def test_our_export_needs_no_describe_to_read_back():
    doc = configuration.export_document([account()], {}, "forcebridge")
    _, entries = configuration.read_document(doc)
    back = from_entry(entries[0])
    assert (back.fields, back.table_name, back.upsert_field) == (account().fields, "account", "Ext__c")


@pytest.mark.parametrize("doc, reason", [
    ([], "JSON object"), ({"version": 1}, "mappings"),
    ({"mappings": [{"object_name": "A", "config": {}}, {"object_name": "a", "config": {}}]}, "twice"),
    ({"mappings": [{"config": {}}]}, "object_name")])
def test_broken_configurations_are_refused_with_a_reason(doc, reason):
    with pytest.raises(MappingError, match=reason):
        configuration.read_document(doc)


def test_a_heroku_export_without_describe_says_types_are_missing():
    _, entries = configuration.read_document({"mappings": [{"object_name": "Account",
                                                            "config": {"fields": {"Id": {}, "Name": {}}}}]})
    with pytest.raises(MappingError, match="no type given"):
        from_entry(entries[0])


def test_the_outbound_message_wsdl_gives_object_and_field_types():
    found = read_wsdl((FIXTURES / "opportunity_outbound.wsdl").read_bytes())
    assert found.object_name == "Opportunity"
    assert found.fields == {"Id": "id", "AccountId": "reference", "Amount": "double", "CloseDate": "date",
                            "IsWon": "boolean", "Name": "string", "StageName": "string", "SystemModstamp": "datetime"}


@pytest.mark.parametrize("data", [b"<definitions/>", b"not xml",
                                  b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>'])
def test_anything_else_is_not_a_wsdl(data):
    with pytest.raises(WsdlError):
        read_wsdl(data)


def test_a_wsdl_pointing_elsewhere_makes_no_request():
    data = (FIXTURES / "opportunity_outbound.wsdl").read_bytes().replace(
        b'<import namespace="urn:enterprise.soap.sforce.com"/>',
        b'<import namespace="urn:enterprise.soap.sforce.com" schemaLocation="http://127.0.0.1:9/x.xsd"/>', 1)
    with pytest.raises(WsdlError):
        read_wsdl(data)


def test_the_ack_is_recognised_with_any_prefix():
    ack = (pathlib.Path("/work/shared/reference/salesforce/outbound/ack_response.xml"))
    if ack.exists():
        assert acknowledged(ack.read_text())
    assert acknowledged("<soapenv:Body><notificationsResponse><Ack>true</Ack></notificationsResponse>")
    assert not acknowledged("<soapenv:Fault><faultstring>no</faultstring></soapenv:Fault>")
