"""Hostile input against every HTTP route that is not in the OpenAPI sweep: the SOAP endpoint and the
JSON API's edges. Each answer is a 4xx (never a 500), the server keeps serving, and nothing is stored."""
from __future__ import annotations

import pytest

from tests.conftest import ORG_ID, OUTBOUND_TOKEN
from tests.integration.test_capture import sql
from tests.support.messages import envelope

ACCOUNT = "001000000000001AAA"


def soap(notifications: str, org: str = ORG_ID) -> bytes:
    return ('<?xml version="1.0" encoding="UTF-8"?>'
            '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
            'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>'
            '<notifications xmlns="http://soap.sforce.com/2005/09/outbound">'
            f'<OrganizationId>{org}</OrganizationId><ActionId>04k5w000000TSwMAAW</ActionId>'
            f'{notifications}</notifications></soapenv:Body></soapenv:Envelope>').encode()


def note(note_id: str = "04l5w0000000000001", object_type: str = "sf:Account", fields: str = f"<sf:Id>{ACCOUNT}</sf:Id>"):
    return (f'<Notification><Id>{note_id}</Id><sObject xsi:type="{object_type}" '
            f'xmlns:sf="urn:sobject.enterprise.soap.sforce.com">{fields}</sObject></Notification>')


def deep(levels: int) -> bytes:
    return b"<a>" * levels + b"</a>" * levels


SOAP_CASES = {
    "record id longer than an Id": soap(note(fields="<sf:Id>001000000000001AAAXXXXXXXXXXXXXXXXXXXX</sf:Id>")),
    "notification id of a megabyte": soap(note(note_id="0" * 1_000_000)),
    "object type with SQL in it": soap(note(object_type="sf:Account; DROP TABLE forcebridge.inbox")),
    "object type empty": soap(note(object_type="")),
    "object type of junk": soap(note(object_type="sf:../../etc/passwd")),
    "record id with a quote": soap(note(fields="<sf:Id>001000000000'AAA</sf:Id>")),
    "101 notifications": soap("".join(note(note_id=f"04l5w{i:013d}") for i in range(101))),
    "nesting ten thousand deep": deep(10_000),
    "nesting inside a field": soap(note(fields=f"<sf:Id>{ACCOUNT}</sf:Id><sf:Name>{deep(50).decode()}</sf:Name>")),
    "invalid UTF-8": soap(note()).replace(b'sf:Account"', b'sf:Acc\xff\xfeount"'),
    "declared UTF-16, sent UTF-8": soap(note()).replace(b'encoding="UTF-8"', b'encoding="UTF-16"'),
    "a NUL character reference": soap(note(fields=f"<sf:Id>{ACCOUNT}</sf:Id><sf:Name>a&#0;b</sf:Name>")),
    "an external DTD": b'<?xml version="1.0"?><!DOCTYPE x SYSTEM "http://127.0.0.1:1/x.dtd"><x/>',
    "parameter entities": (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY % p SYSTEM "file:///etc/passwd">%p;]><x/>'),
    "XInclude": soap(note(fields=f'<sf:Id>{ACCOUNT}</sf:Id><sf:Name><xi:include xmlns:xi="http://www.w3.org/2001/XInclude" '
                                  'href="file:///etc/passwd" parse="text"/></sf:Name>')),
    "SOAP 1.2 envelope": soap(note()).replace(b"http://schemas.xmlsoap.org/soap/envelope/",
                                              b"http://www.w3.org/2003/05/soap-envelope"),
    "no organization id": soap(note(), org=""),
    "organization id of junk": soap(note(), org="' OR 1=1 --"),
}


def counts(url: str) -> tuple:
    return sql(url, "SELECT (SELECT count(*) FROM forcebridge.inbox), (SELECT count(*) FROM forcebridge.mappings)")[0]


@pytest.mark.parametrize("body", SOAP_CASES.values(), ids=SOAP_CASES.keys())
def test_soap_endpoint_refuses_hostile_documents_and_stores_nothing(client, settings, body):
    before = counts(settings.database_url)
    r = client.post(f"/outbound/{OUTBOUND_TOKEN}", data=body, content_type="text/xml; charset=utf-8")
    assert 400 <= r.status_code < 500, (r.status_code, r.data[:300])
    assert b"Fault" in r.data
    assert counts(settings.database_url) == before
    ok = client.post(f"/outbound/{OUTBOUND_TOKEN}", data=envelope(ORG_ID, "Account", [{"Id": ACCOUNT}]),
                     content_type="text/xml")
    assert ok.status_code == 200                                   # and it keeps serving


@pytest.mark.parametrize("method", ["get", "put", "delete", "patch"])
def test_soap_endpoint_takes_only_post(client, method):
    assert getattr(client, method)(f"/outbound/{OUTBOUND_TOKEN}").status_code == 405


def test_soap_endpoint_with_a_form_content_type_is_refused(client, settings):
    r = client.post(f"/outbound/{OUTBOUND_TOKEN}", data={"a": "b"})
    assert r.status_code == 400 and counts(settings.database_url) == (0, 0)


API_CASES = [
    ("post", "/api/v1/mappings", {"object_name": "Invoice__c", "config": {"fields": {"Name": {"type": "string", "length": "abc"}}}}),
    ("post", "/api/v1/mappings", {"object_name": "Invoice__c", "config": {"fields": {"Name": {"type": "string", "length": -5}}}}),
    ("post", "/api/v1/mappings", {"object_name": "Invoice__c", "config": {"fields": {"Name": {"type": "string", "length": 10**30}}}}),
    ("post", "/api/v1/mappings", {"object_name": "Invoice__c", "config": {"fields": {"Name": {"type": ["string"]}}}}),
    ("post", "/api/v1/mappings", {"object_name": "Invoice__c", "config": {"fields": {"Name": {"type": "string"}},
                                                                           "upsert_field": ["Name"]}}),
    ("post", "/api/v1/mappings", {"object_name": "Invoice__c", "table": 5, "config": {"fields": {"Name": {"type": "string"}}}}),
    ("post", "/api/v1/mappings", {"object_name": "Invoice__c", "schema": "pg_catalog", "config": {"fields": {"Name": {"type": "string"}}}}),
    ("post", "/api/v1/mappings", {"object_name": "A" * 300, "config": {"fields": {"Name": {"type": "string"}}}}),
    ("post", "/api/v1/mappings", {"object_name": "Invoice__c", "config": {"fields": {"N" * 300: {"type": "string"}}}}),
    ("post", "/api/v1/mappings", [1, 2, 3]),
    ("get", "/api/v1/mappings/99999999999999999999", None),
    ("patch", "/api/v1/mappings/2147483648", {}),
    ("delete", "/api/v1/mappings/2147483648", None),
    ("post", "/api/v1/errors/99999999999999999999/retry", None),
    ("post", "/api/v1/errors/9223372036854775808/ignore", None),
    ("get", "/api/v1/stats/hourly?mapping_id=99999999999999", None),
    ("get", "/api/v1/stats/hourly?hours=abc", None),
    ("get", "/api/v1/nothing/here", None),
    ("put", "/api/v1/mappings", None),
]


@pytest.mark.parametrize("method,path,body", API_CASES)
def test_api_refuses_hostile_requests_with_json_and_touches_nothing(api, settings, method, path, body):
    before = counts(settings.database_url)
    r = getattr(api, method)(path, **({"json": body} if body is not None else {}))
    assert 400 <= r.status_code < 500, (r.status_code, r.get_data(as_text=True)[:300])
    assert r.is_json and "error" in r.get_json()
    assert counts(settings.database_url) == before
