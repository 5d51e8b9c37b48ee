"""Hostile input against every HTTP route that is not in the OpenAPI sweep: the SOAP endpoint and the
JSON API's edges. Each answer is a 4xx (never a 500), the server keeps serving, and nothing is stored."""
from __future__ import annotations

import pytest

from tests.conftest import ORG_ID, OUTBOUND_TOKEN
from tests.integration.test_capture import sql
from tests.integration.test_write_path import sf_settings  # noqa: F401
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
def test_soap_endpoint_takes_only_post(client, settings, method):
    status = getattr(client, method)(f"/outbound/{OUTBOUND_TOKEN}").status_code
    assert 300 <= status < 500 and counts(settings.database_url) == (0, 0)   # 405, or the console's sign-in


def test_soap_endpoint_with_a_form_content_type_is_refused(client, settings):
    r = client.post(f"/outbound/{OUTBOUND_TOKEN}", data={"a": "b"})
    assert r.status_code == 400 and counts(settings.database_url) == (0, 0)


def json_nest(levels: int):
    value: list = []
    for _ in range(levels):
        value = [value]
    return value


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
    ("post", "/api/v1/mappings", {"object_name": "../limits#", "config": {"fields": {"Name": {"type": "string"}}}}),
    ("post", "/api/v1/mappings", {"object_name": "Invoice__c", "config": '{"fields": {}}'}),
    ("post", "/api/v1/mappings", {"object_name": "Invoice__c", "active": "false",
                                  "config": {"fields": {"Name": {"type": "string"}}}}),
    ("post", "/api/v1/mappings", {"object_name": "Invoice__c", "schema": "forcebridge",
                                  "config": {"fields": {"Name": {"type": "string"}}}}),
    ("post", "/api/v1/mappings", {"object_name": "Invoice__c", "config": {"fields": {"Name": {"type": "string"}},
                                                                           "deep": json_nest(100)}}),
    ("post", "/api/v1/mappings", "DEEP"),
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
    if body == "DEEP":    # deeper than Python's json module can parse at all
        r = getattr(api, method)(path, data="[" * 100_000 + "]" * 100_000, content_type="application/json")
    else:
        r = getattr(api, method)(path, **({"json": body} if body is not None else {}))
    assert 400 <= r.status_code < 500, (r.status_code, r.get_data(as_text=True)[:300])
    assert r.is_json and "error" in r.get_json()
    assert counts(settings.database_url) == before


# -- the console's forms (signed in, with the CSRF token: what is left is the input itself) ------------------

BILLION_LAUGHS = (b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">'
                  b'<!ENTITY c "&b;&b;&b;&b;&b;&b;">]><definitions>&c;</definitions>')
XXE = b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]><definitions>&x;</definitions>'
WSDL_IMPORT = (b'<definitions xmlns="http://schemas.xmlsoap.org/wsdl/"><import namespace="x" '
               b'location="http://127.0.0.1:1/other.wsdl"/></definitions>')


def deep_json(levels: int) -> str:
    return "[" * levels + "]" * levels


TYPED = "Name:string:80\nAmount__c:currency"
CONSOLE_POSTS = [
    ("/mappings", {"object_name": "Invoice__c", "typed_fields": "Name:string:abc"}),
    ("/mappings", {"object_name": "Invoice__c", "typed_fields": "Name:string:-1"}),
    ("/mappings", {"object_name": "Invoice__c", "typed_fields": "Name:string:99999999999999999999999"}),
    ("/mappings", {"object_name": "Invoice__c", "typed_fields": "Name::::::"}),
    ("/mappings", {"object_name": "Invoice__c", "typed_fields": ":\n:\n\x00"}),
    ("/mappings", {"object_name": "Invoice__c", "typed_fields": "\n".join(f"F{i}:string" for i in range(2000))}),
    ("/mappings", {"object_name": "Invoice__c", "typed_fields": "N" * 300 + ":string"}),
    ("/mappings", {"object_name": "Invoice__c", "typed_fields": TYPED, "schema": "pg_catalog"}),
    ("/mappings", {"object_name": "Invoice__c", "typed_fields": TYPED, "table": "x; DROP TABLE y"}),
    ("/mappings", {"object_name": "Invoice__c", "typed_fields": TYPED, "direction": "sideways"}),
    ("/mappings", {"object_name": "Invoice__c", "typed_fields": TYPED, "conflict_rule": "coin_flip"}),
    ("/mappings", {"object_name": "Invoice__c", "typed_fields": TYPED, "upsert_field": "Nope__c"}),
    ("/mappings", {"object_name": "' OR 1=1 --", "typed_fields": TYPED}),
    ("/mappings", {"object_name": "", "field": ["Name"], "type:Name": "string"}),
    ("/mappings", {"object_name": "Invoice__c", "field": ["Name"], "type:Name": "no-such-type"}),
    ("/mappings/2147483648", {"typed_fields": TYPED}),
    ("/mappings/99999999999999999999/pause", {}),
    ("/mappings/99999999999999999999/resume", {}),
    ("/mappings/99999999999999999999/delete", {"drop_table": "yes"}),
    ("/mappings/import", {"config_text": "not json"}),
    ("/mappings/import", {"config_text": "null"}),
    ("/mappings/import", {"config_text": "[1, 2, 3]"}),
    ("/mappings/import", {"config_text": '{"mappings": [{"object_name": 5}]}'}),
    ("/mappings/import", {"config_text": '{"mappings": "all of them"}'}),
    ("/mappings/import", {"config_text": '{"format": "forcebridge", "mappings": [{"object_name": "Invoice__c", '
                                         '"config": {"fields": {"Name": {"type": "string", "length": "x"}}}}]}'}),
    ("/mappings/import", {"config_text": deep_json(100_000)}),
    ("/mappings/import", {"config_text": "1e999999"}),
    ("/errors/notifications/" + "x" * 5000 + "/retry", {}),
    ("/errors/notifications/'; DROP TABLE forcebridge.inbox; --/ignore", {}),
    ("/errors/writes/99999999999999999999/retry", {}),
    ("/errors/writes/9223372036854775808/ignore", {}),
]
CONSOLE_UPLOADS = [
    ("/mappings/wsdl", "wsdl", BILLION_LAUGHS),
    ("/mappings/wsdl", "wsdl", XXE),
    ("/mappings/wsdl", "wsdl", WSDL_IMPORT),
    ("/mappings/wsdl", "wsdl", b"\xff\xfe\x00garbage"),
    ("/mappings/wsdl", "wsdl", b"<definitions>" + b"<a>" * 5000 + b"</a>" * 5000 + b"</definitions>"),
    ("/mappings/wsdl", "wsdl", b""),
    ("/mappings/import", "config", b"\xff\xfe\x00garbage"),
    ("/mappings/import", "config", b'{"mappings": [' + b'{"object_name": "Invoice__c"},' * 10_000 + b'{}]}'),
]
CONSOLE_GETS = ["/trends?mapping=abc&range=forever", "/trends?mapping=99999999999999999999", "/errors?page=-1",
                "/mappings/new?object=" + "A" * 5000, "/mappings/new?object=../../etc", "/mappings/export?flavor=x",
                "/mappings/2147483648/edit", "/assets/..%2f..%2fsettings.py", "/assets/%00",
                "/overview/status?x=" + "y" * 5000, "/login?next=//evil.example"]


@pytest.fixture(scope="module")
def console(pg_url, tmp_path_factory):
    """The console signed in, shared by the module (the cases compare counts, they need no empty database);
    returns (client, csrf token, base URL)."""
    from tests.conftest import EnqueueRecorder
    from tests.integration.test_console_security import BASE, PASSWORD, csrf_of, sign_in
    from settings import Settings
    from webapp import create_app

    settings = Settings.from_env(database_url=pg_url, secret_key="test-secret", admin_password=PASSWORD,
                                 huey_url=f"sqlite:///{tmp_path_factory.mktemp('huey') / 'huey.db'}",
                                 instance_path=tmp_path_factory.mktemp("instance"), salesforce_org_id=ORG_ID)
    app = create_app(settings, enqueue=EnqueueRecorder())
    client = app.test_client()
    assert sign_in(client).status_code in (302, 303)
    yield client, csrf_of(client), BASE
    app.extensions["forcebridge"].db.close()


def _console_counts(url):
    return sql(url, "SELECT (SELECT count(*) FROM forcebridge.inbox), (SELECT count(*) FROM forcebridge.mappings), "
                    "(SELECT count(*) FROM forcebridge.change_log) + (SELECT count(*) FROM forcebridge.change_capture), "
                    "(SELECT count(*) FROM information_schema.tables WHERE table_schema NOT IN "
                    "('pg_catalog', 'information_schema'))")[0]


@pytest.mark.parametrize("path,form", CONSOLE_POSTS, ids=[f"{p[:40]} {sorted(f)[:2]}" for p, f in CONSOLE_POSTS])
def test_console_forms_refuse_hostile_input_and_touch_nothing(console, pg_url, path, form):
    client, token, base = console
    before = _console_counts(pg_url)
    r = client.post(path, base_url=base, data={**form, "csrf_token": token})
    assert 400 <= r.status_code < 500, (r.status_code, r.get_data(as_text=True)[:300])
    assert _console_counts(pg_url) == before


@pytest.mark.parametrize("path,name,content", CONSOLE_UPLOADS, ids=[f"{p} {c[:20]!r}" for p, _, c in CONSOLE_UPLOADS])
def test_console_uploads_refuse_hostile_files_and_touch_nothing(console, pg_url, path, name, content):
    import io

    client, token, base = console
    before = _console_counts(pg_url)
    r = client.post(path, base_url=base, data={"csrf_token": token, name: (io.BytesIO(content), "upload.txt")},
                    content_type="multipart/form-data")
    assert 400 <= r.status_code < 500, (r.status_code, r.get_data(as_text=True)[:300])
    assert b"root:" not in r.data                                    # no file read through an entity
    assert _console_counts(pg_url) == before


@pytest.mark.parametrize("path", CONSOLE_GETS)
def test_console_pages_survive_hostile_query_strings(console, path):
    client, _, base = console
    r = client.get(path, base_url=base)
    assert r.status_code < 500, (r.status_code, r.get_data(as_text=True)[:300])


# -- the JSON API: every wrong type is a 400 naming the field; PATCH validates what it saves ---------------------

FIELDS = {"Name": {"type": "string", "length": 80}}
WRONG_TYPES = [
    ({"config": "Name"}, "config"),
    ({"config": {"fields": ["Name"]}}, "config.fields"),
    ({"config": {"fields": FIELDS, "access": "read-only"}}, "config.access"),
    ({"config": {"fields": FIELDS}, "active": {"on": True}}, "active"),
    ({"config": {"fields": FIELDS}, "active": "false"}, "active"),
    ({"config": {"fields": FIELDS}, "direction": None}, "direction"),
    ({"config": {"fields": FIELDS}, "conflict_rule": ["postgres_wins"]}, "conflict_rule"),
    ({"config": {"fields": FIELDS}, "schema": "forcebridge"}, "schema"),
    ({"config": {"fields": FIELDS, "keep_deleted_rows": "false"}}, "config.keep_deleted_rows"),
    ({"object_name": "../query?q=SELECT+Id+FROM+User", "config": {"fields": FIELDS}}, "object_name"),
]


@pytest.mark.parametrize("body,field", WRONG_TYPES, ids=[f for _, f in WRONG_TYPES])
def test_api_post_names_the_field_of_a_wrong_type(api, settings, body, field):
    r = api.post("/api/v1/mappings", json={"object_name": "Invoice__c", **body})
    assert r.status_code == 400, r.get_data(as_text=True)[:300]
    assert r.get_json()["field"] == field and field in r.get_json()["message"]
    assert counts(settings.database_url)[1] == 0


def test_api_refuses_json_nested_too_deeply_naming_where(api, settings):
    r = api.post("/api/v1/mappings", json={"object_name": "Invoice__c",
                                           "config": {"fields": FIELDS, "notes": json_nest(40)}})
    assert r.status_code == 400 and "config.notes" in r.get_json()["message"]


def triggers(url: str) -> int:
    return sql(url, "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'salesforce.invoice__c'::regclass "
                    "AND NOT tgisinternal")[0][0]


@pytest.fixture
def read_only(api, settings):
    created = api.post("/api/v1/mappings", json={"object_name": "Invoice__c", "config": {
        "access": "read_only", "fields": {**FIELDS, "External_Id__c": {"type": "string", "length": 40}},
        "upsert_field": "External_Id__c"}})
    assert created.status_code == 201, created.get_data(as_text=True)
    assert triggers(settings.database_url) == 0
    return created.get_json()


PATCHES = [
    ({"config": {"access": "read-only"}}, "config.access"),          # the case: it turned bidirectional
    ({"config": {"access": None}}, "config.access"),
    ({"config": "read_write"}, "config"),
    ({"config": {"fields": ["Name"]}}, "config.fields"),
    ({"config": {"fields": {"Name": {"type": "nonsense"}}}}, None),
    ({"active": "false"}, "active"),
    ({"active": {}}, "active"),
    ({"direction": None}, "direction"),
    ({"direction": "bidirectional", "config": {"access": "read_only"}}, "direction"),
    ({"conflict_rule": None}, "conflict_rule"),
    ({"table": "somewhere_else"}, "table"),
    ({"schema": "forcebridge"}, "schema"),
    ({"direction ": "bidirectional"}, "direction "),
    ({"config": {"sf_polling_seconds": 1e400}}, "config.sf_polling_seconds"),
]


@pytest.mark.parametrize("body,field", PATCHES, ids=[str(b)[:50] for b, _ in PATCHES])
def test_patch_saves_nothing_unless_all_of_it_is_valid(api, settings, read_only, body, field):
    r = api.patch(f"/api/v1/mappings/{read_only['id']}", json=body)
    assert r.status_code == 400, r.get_data(as_text=True)[:300]
    if field is not None:
        assert r.get_json()["field"] == field
    assert api.get(f"/api/v1/mappings/{read_only['id']}").get_json() == read_only
    assert triggers(settings.database_url) == 0                        # nothing will flow to Salesforce


def test_patch_applies_valid_changes(api, settings, read_only):
    path = f"/api/v1/mappings/{read_only['id']}"
    assert api.patch(path, json={"active": False}).get_json()["active"] is False
    assert api.patch(path, json={"active": True, "config": {"sf_polling_seconds": 0}}).get_json()["config"][
        "sf_polling_seconds"] == 0
    turned = api.patch(path, json={"config": {"access": "read_write"}}).get_json()
    assert turned["direction"] == "bidirectional" and triggers(settings.database_url) > 0
    current = api.get(path).get_json()
    contradicting = api.patch(path, json=current | {"direction": "sf_to_pg"})   # config.access still read_write
    assert contradicting.status_code == 400 and contradicting.get_json()["field"] == "direction"
    back = api.patch(path, json=current | {"direction": "sf_to_pg",
                                           "config": current["config"] | {"access": "read_only"}})
    assert back.status_code == 200 and back.get_json()["config"]["access"] == "read_only"
    assert triggers(settings.database_url) == 0


@pytest.mark.parametrize("body", [{"repair": "false"}, {"repair": 1}, [True], {"async": "yes"}])
def test_reconcile_flags_are_real_booleans(api, read_only, body):
    r = api.post(f"/api/v1/mappings/{read_only['id']}/reconcile", json=body)
    assert r.status_code == 400 and r.get_json()["error"] == "bad_request"
    assert api.post(f"/api/v1/mappings/{read_only['id']}/reconcile?repair=maybe").status_code == 400


# -- object names are checked before Salesforce hears of them (against the emulator: it counts every call) -------

PATH_NAMES = ["../limits#", "../query?q=SELECT+Id+FROM+User", "Account/describe#", "Invoice__c/../../limits"]


@pytest.fixture
def connected(sf_settings, enqueued):
    """The app connected to the emulator, its console signed in; returns (api client, console client)."""
    from dataclasses import replace

    from tests.conftest import API_TOKEN, testing_app
    from tests.support.console import PASSWORD, sign_in

    with testing_app(replace(sf_settings, admin_password=PASSWORD), enqueued) as application:
        console = application.test_client()
        assert sign_in(console).status_code == 302
        api_client = application.test_client()
        api_client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {API_TOKEN}"
        yield api_client, console


@pytest.mark.parametrize("name", PATH_NAMES)
def test_a_name_that_is_a_path_never_reaches_salesforce(connected, emulator, name):
    from urllib.parse import quote

    from tests.support.console import BASE

    api_client, console = connected
    emulator.admin("DELETE", "/_emulator/stats")
    r = api_client.post("/api/v1/mappings", json={"object_name": name, "config": {"fields": {"Name": {}}}})
    assert r.status_code == 400 and r.get_json()["field"] == "object_name"
    # the console's form for a cross-site link: GET /mappings/new?object=...
    page = console.get(f"/mappings/new?object={quote(name)}", base_url=BASE)
    assert 400 <= page.status_code < 500 and "not a Salesforce object API name" in page.text
    assert emulator.admin("GET", "/_emulator/stats")["total"] == 0
    # a good name does reach it (the emulator counts what it is asked; the gateway caches describes)
    from gateway.salesforce import for_settings

    for_settings(console.application.extensions["forcebridge"].settings)._describes.clear()
    assert console.get("/mappings/new?object=Invoice__c", base_url=BASE).status_code == 200
    assert emulator.admin("GET", "/_emulator/stats")["total"] > 0
