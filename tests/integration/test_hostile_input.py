"""Hostile input against every HTTP route that is not in the OpenAPI sweep: the SOAP endpoint and the
JSON API's edges. Each answer is a 4xx (never a 500), the server keeps serving, and nothing is stored."""
from __future__ import annotations

from decimal import Decimal

import pytest

from tests.conftest import ORG_ID, OUTBOUND_TOKEN
from tests.integration.test_capture import sql
from tests.integration.test_write_path import sf_settings  # noqa: F401
from tests.support.console import browser_client, console_app  # noqa: F401  (fixtures)
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


def with_dtd(message: bytes, codec: str, declared: str) -> bytes:
    """A valid message but for an internal DTD, in an encoding where "<!DOCTYPE" is not those bytes."""
    xml = message.decode().replace('<?xml version="1.0" encoding="UTF-8"?>',
                                   f'<?xml version="1.0" encoding="{declared}"?><!DOCTYPE x [<!ENTITY e "e">]>')
    return xml.encode(codec)


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
    "organization id with a wrong checksum suffix": soap(note(), org=ORG_ID[:15] + "AAA"),
    "a DTD in UTF-16": with_dtd(soap(note()), "utf-16", "UTF-16"),
    "a DTD in UTF-16LE without BOM": with_dtd(soap(note()), "utf-16-le", "UTF-16LE"),
    "a DTD in UTF-32": with_dtd(soap(note()), "utf-32", "UTF-32"),
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
# -- poison values (issue 14): one notification that cannot fit fails alone, in no time -----------------------

POISONED = [
    {"Id": "001000000000001AAA", "NumberOfEmployees": "1e999999999"},       # spun the worker at 100% CPU
    {"Id": "001000000000002AAA", "AnnualRevenue": "1e400"},                 # was stored as Infinity
    {"Id": "001000000000003AAA", "AnnualRevenue": "NaN"},
    {"Id": "001000000000004AAA", "Budget__c": "1e999999999"},
    {"Id": "001000000000005AAA", "NumberOfEmployees": "9" * 100_000},
    {"Id": "001000000000006AAA", "NumberOfEmployees": "2147483648"},
]


@pytest.mark.timeout(120, method="thread")   # a guard only: before the fix the apply never finished
def test_a_poisoned_notification_fails_alone_and_its_batch_applies(client, api, app, settings):
    from jobs.inbound import apply_pending
    from tests.integration.test_outbound_endpoint import mapping, post, rows

    mapping(api, "Account", {"NumberOfEmployees": {"type": "int"}, "AnnualRevenue": {"type": "double"},
                             "Budget__c": {"type": "currency"}, "Name": {"type": "string", "length": 80}})
    good = [{"Id": "001000000000010AAA", "Name": "before", "NumberOfEmployees": "12"},
            {"Id": "001000000000011AAA", "Name": "after", "AnnualRevenue": "1.5E9", "Budget__c": "10.25"}]
    assert post(client, envelope(ORG_ID, "Account", good[:1] + POISONED + good[1:])).status_code == 200
    result = apply_pending(app.extensions["forcebridge"].db)
    assert (result.applied, result.failed) == (2, len(POISONED))
    failed = dict(rows(settings.database_url, "SELECT sfid, error FROM forcebridge.inbox WHERE state = 'failed'"))
    assert set(failed) == {p["Id"] for p in POISONED}
    assert all("out of range" in e or "finite" in e or "longer than" in e for e in failed.values()), failed
    assert max(len(e) for e in failed.values()) < 300
    assert rows(settings.database_url, "SELECT sfid, name, numberofemployees, annualrevenue, budget__c "
                                       "FROM salesforce.account ORDER BY sfid") == [
        ("001000000000010AAA", "before", 12, None, None), ("001000000000011AAA", "after", None, 1.5e9, Decimal("10.25"))]


def test_large_notifications_apply_in_batches_within_a_byte_budget(client, api, app, settings):
    """Each batch reads what fits its budget (at least one notification): 500 notifications of 5 MB never
    sit in one worker's memory at once."""
    from jobs.inbound import apply_one_batch
    from tests.integration.test_outbound_endpoint import mapping, post

    mapping(api, "Account", {"Description": {"type": "textarea"}})
    records = [{"Id": f"00100000000{i:04d}AAA", "Description": f"{i}" + "x" * 200_000} for i in range(6)]
    assert post(client, envelope(ORG_ID, "Account", records)).status_code == 200
    db = app.extensions["forcebridge"].db
    sizes = []
    while True:
        result, more = apply_one_batch(db, batch_size=500, max_bytes=450_000)
        sizes.append(result.applied)
        if not more:
            break
    assert sum(sizes) == 6 and max(sizes) <= 2 and len(sizes) >= 3


# -- the SOAP endpoint's own failures (issue 14) ----------------------------------------------------------------

def _small_limit_client(settings, enqueued, limit):
    import dataclasses
    from tests.conftest import testing_app

    return testing_app(dataclasses.replace(settings, max_message_bytes=limit), enqueued)


@pytest.mark.parametrize("extra", [1, 100_000])
def test_a_chunked_body_over_the_limit_is_413_not_cut(settings, enqueued, extra):
    import io

    body = soap(note())
    limit = len(body) + 10

    def chunked(client, data):   # as gunicorn hands over a chunked body: no Content-Length, input terminated
        return client.post(f"/outbound/{OUTBOUND_TOKEN}", input_stream=io.BytesIO(data),
                           headers={"Content-Type": "text/xml", "Transfer-Encoding": "chunked"},
                           environ_overrides={"wsgi.input_terminated": True})

    with _small_limit_client(settings, enqueued, limit) as app:
        r = chunked(app.test_client(), body + b" " * (limit - len(body) + extra))   # whitespace after the envelope
        assert r.status_code == 413 and b"Fault" in r.data, (r.status_code, r.data[:300])
        r = chunked(app.test_client(), body + b" " * (limit - len(body)))           # exactly the limit still goes in
        assert r.status_code == 200, r.data[:300]


def test_an_error_on_the_outbound_route_is_a_soap_fault_and_logs_no_token(client, settings, monkeypatch, caplog):
    from webapp import outbound

    def broken(message):
        raise RuntimeError(f"failed while handling /outbound/{OUTBOUND_TOKEN}")

    monkeypatch.setattr(outbound, "store", broken)
    with caplog.at_level("INFO"):
        r = client.post(f"/outbound/{OUTBOUND_TOKEN}", data=soap(note()), content_type="text/xml")
    assert r.status_code == 500 and r.content_type.startswith("text/xml") and b"Fault" in r.data
    assert OUTBOUND_TOKEN.encode() not in r.data
    logged = caplog.text + "".join(h.format(rec) for rec in caplog.records for h in [_plain_handler()])
    assert "RuntimeError" in logged and OUTBOUND_TOKEN not in logged, logged


def _plain_handler():
    import logging

    return logging.StreamHandler()


# -- /assets is public: what it remembers is bounded by what exists (issue 14) -------------------------------

def _assets_remembered() -> int:
    from webapp import assets

    info = getattr(assets.locate, "cache_info", None)   # before the fix: functools.cache on every name asked for
    return info().currsize if info else len(assets._found)


def test_unknown_asset_names_are_404_and_not_remembered(client):
    from webapp import assets

    before = _assets_remembered()
    for i in range(300):
        assert client.get(f"/assets/no-such-file-{i}.js").status_code == 404
    assert _assets_remembered() <= max(before, len(assets.VENDOR))


def test_an_asset_installed_later_is_served_without_a_restart(client, monkeypatch, tmp_path):
    from webapp import assets

    installed = tmp_path / "late.min.js"
    monkeypatch.setitem(assets.VENDOR, "late.min.js", lambda: installed if installed.exists() else None)
    assert client.get("/assets/late.min.js").status_code == 404
    installed.write_text("/* late */")
    r = client.get("/assets/late.min.js")
    assert r.status_code == 200 and b"late" in r.data
    r.close()
    assets._found.pop("late.min.js", None)


# -- the Errors page with many large failures (issue 14): excerpts, pages, the whole payload one click away ---

def test_the_errors_page_stays_small_with_many_large_failures(console_app, browser_client, settings):
    import json

    from tests.support.console import BASE, sign_in

    sql(settings.database_url,
        "INSERT INTO forcebridge.inbox (notification_id, object_name, sfid, fields, organization_id, state, error, "
        "received_at) SELECT 'n' || lpad(g::text, 4, '0'), 'Account', '001000000000001AAA', "
        "jsonb_build_object('Id', '001000000000001AAA', 'Description', repeat('y', 1000000) || g), 'org', 'failed', "
        "'Description: ' || repeat('z', 100000), now() - make_interval(secs => g) FROM generate_series(1, 60) g "
        "RETURNING 1")
    sign_in(browser_client)
    first = browser_client.get("/errors", base_url=BASE)
    assert first.status_code == 200
    assert len(first.data) < 500_000, len(first.data)          # 60 MB of payloads before
    text = first.text
    assert "page 1 of 2" in text and text.count('id="n-n') == 50 and "n0001" in text
    second = browser_client.get("/errors?page=2", base_url=BASE).text
    assert second.count('id="n-n') == 10 and "n0060" in second
    assert browser_client.get("/errors?page=99", base_url=BASE).status_code == 200

    whole = browser_client.get("/errors/notifications/n0007/payload", base_url=BASE)
    assert whole.status_code == 200 and whole.mimetype == "application/json"
    assert json.loads(whole.data)["Description"] == "y" * 1_000_000 + "7"
    assert "/errors/notifications/n0007/payload" in text
    assert browser_client.get("/errors/notifications/nope/payload", base_url=BASE).status_code == 404


def test_the_whole_payload_needs_a_signed_in_user(console_app, settings):
    from tests.support.console import BASE

    sql(settings.database_url,
        "INSERT INTO forcebridge.inbox (notification_id, object_name, sfid, fields, organization_id, state) "
        "VALUES ('secret1', 'Account', '001000000000001AAA', '{\"Ssn__c\": \"123\"}', 'org', 'failed') RETURNING 1")
    r = console_app.test_client().get("/errors/notifications/secret1/payload", base_url=BASE)
    assert r.status_code in (302, 303, 401) and b"123" not in r.data


def test_a_value_too_large_for_an_index_of_the_users_fails_alone(client, api, app, settings):
    """An index the app added on a mapped column cannot hold a value over about 2.7 KB: Postgres says
    "program limit exceeded", which stopped the whole batch (claimed again forever) before."""
    import random
    import string

    from jobs.inbound import apply_pending
    from tests.integration.test_outbound_endpoint import mapping, post, rows

    mapping(api, "Account", {"Description": {"type": "textarea"}})
    sql(settings.database_url, "CREATE INDEX account_description_idx ON salesforce.account (description)")
    rng = random.Random(14)
    noise = "".join(rng.choice(string.ascii_letters) for _ in range(20_000))   # compresses too little to fit
    body = envelope(ORG_ID, "Account", [{"Id": "001000000000001AAA", "Description": noise},
                                        {"Id": "001000000000002AAA", "Description": "fits"}])
    assert post(client, body).status_code == 200
    result = apply_pending(app.extensions["forcebridge"].db)
    assert (result.applied, result.failed) == (1, 1)
    assert rows(settings.database_url, "SELECT sfid, description FROM salesforce.account") == [("001000000000002AAA", "fits")]
    (error,) = rows(settings.database_url, "SELECT error FROM forcebridge.inbox WHERE state = 'failed'")
    assert "index row" in error[0] or "exceeds" in error[0], error
