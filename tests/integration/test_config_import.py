"""A real `heroku connect:export` file imported as it is, all or nothing, and exported back in its shape."""
from __future__ import annotations

import copy
import io
import json
import pathlib
from dataclasses import replace

import psycopg
import pytest

from tests.conftest import testing_app as console
from tests.integration.test_capture import sql
from tests.integration.test_write_path import sf_api, sf_app, sf_settings  # noqa: F401 - fixtures
from tests.support.console import BASE, PASSWORD, csrf_of, sign_in

EXPORT = json.loads((pathlib.Path(__file__).parents[1] / "fixtures" / "heroku_connect_export.json").read_text())


@pytest.fixture(autouse=True)
def no_crm_schema(clean_db):
    """The crm schema before and after: its triggers call capture functions later tests recreate."""
    with psycopg.connect(clean_db, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS crm CASCADE")
    yield
    with psycopg.connect(clean_db, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS crm CASCADE")


def triggers(url, table):
    return {r[0] for r in sql(url, "SELECT tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                                   "JOIN pg_namespace n ON n.oid = c.relnamespace "
                                   "WHERE n.nspname = 'crm' AND c.relname = %s AND NOT tgisinternal", (table,))}


def nothing_imported(url):
    assert sql(url, "SELECT count(*) FROM forcebridge.mappings") == [(0,)]
    assert sql(url, "SELECT count(*) FROM forcebridge.connection_config") == [(0,)]
    assert sql(url, "SELECT count(*) FROM forcebridge.loads") == [(0,)]
    assert sql(url, "SELECT to_regclass('crm.account'), to_regclass('crm.contact')") == [(None, None)]


def test_a_heroku_connect_export_imports_as_it_is_and_exports_back_the_same(sf_api, sf_settings, enqueued):
    url = sf_settings.database_url
    r = sf_api.post("/api/v1/config/import", json=EXPORT)
    assert r.status_code == 200, r.get_json()
    assert r.get_json() == {"created": ["Account", "Contact", "Invoice__c"], "updated": [], "unchanged": []}
    # the schema comes from connection.name, the relationship field is a column, writers get triggers
    columns = {c for (c,) in sql(url, "SELECT column_name FROM information_schema.columns "
                                      "WHERE table_schema = 'crm' AND table_name = 'contact'")}
    assert {"account__r__external_id__c", "accountid", "email", "sfid", "_hc_lastop"} <= columns
    assert triggers(url, "contact") and triggers(url, "account") and not triggers(url, "invoice__c")
    assert sql(url, "SELECT count(*) FROM forcebridge.loads") == [(3,)]
    mappings = {m["object_name"]: m for m in sf_api.get("/api/v1/mappings").get_json()["mappings"]}
    assert mappings["Invoice__c"]["direction"] == "sf_to_pg"
    assert mappings["Invoice__c"]["config"]["sf_polling_seconds"] == 120
    assert mappings["Account"]["config"]["indexes"]["Name"] == {"unique": False}

    exported = sf_api.get("/api/v1/config/export").get_json()
    assert exported["version"] == 1
    without_moment = {k: v for k, v in EXPORT["connection"].items() if k != "exported_at"}
    assert {k: v for k, v in exported["connection"].items() if k != "exported_at"} == without_moment
    assert exported["mappings"] == sorted(EXPORT["mappings"], key=lambda m: m["object_name"])

    # our own export again: nothing changes, nothing is queued, nothing fails
    enqueued.calls.clear()
    before = sql(url, "SELECT object_name, updated_at FROM forcebridge.mappings ORDER BY 1")
    again = sf_api.post("/api/v1/config/import", json=exported)
    assert again.status_code == 200 and again.get_json() == {
        "created": [], "updated": [], "unchanged": ["Account", "Contact", "Invoice__c"]}
    assert sql(url, "SELECT object_name, updated_at FROM forcebridge.mappings ORDER BY 1") == before
    assert enqueued.calls == [] and sql(url, "SELECT count(*) FROM forcebridge.loads") == [(3,)]


def test_one_bad_field_names_mapping_and_field_and_nothing_is_created(sf_api, sf_settings):
    doc = copy.deepcopy(EXPORT)
    doc["mappings"][2]["config"]["fields"]["Shipping_Weight__c"] = {}
    r = sf_api.post("/api/v1/config/import", json=doc)
    assert r.status_code == 400
    assert "Invoice__c" in r.get_json()["message"] and "Shipping_Weight__c" in r.get_json()["message"]
    nothing_imported(sf_settings.database_url)


def test_an_error_only_postgres_sees_rolls_back_the_whole_import(sf_api, sf_settings):
    """Account and Contact are created first; the table in the way of Invoice__c undoes them too."""
    url = sf_settings.database_url
    sql(url, "CREATE SCHEMA crm; CREATE TABLE crm.invoice__c (note text)")
    r = sf_api.post("/api/v1/config/import", json=EXPORT)
    assert r.status_code == 400
    assert r.get_json()["message"].startswith("nothing imported: mapping Invoice__c: ")
    assert sql(url, "SELECT count(*) FROM forcebridge.mappings") == [(0,)]
    assert sql(url, "SELECT to_regclass('crm.account'), to_regclass('crm.contact')") == [(None, None)]
    assert sql(url, "SELECT count(*) FROM forcebridge.loads") == [(0,)]


@pytest.mark.parametrize("doc, reason", [
    ({**EXPORT, "version": 3}, "version"),
    ({**EXPORT, "connection": {**EXPORT["connection"], "name": "a:b:c:d"}}, "connection.name"),
    ({**EXPORT, "mappings": [{"object_name": "Wombat__c", "config": {"fields": {"Name": {}}}}]}, "Wombat__c"),
])
def test_documents_that_cannot_be_imported_say_why(sf_api, sf_settings, doc, reason):
    r = sf_api.post("/api/v1/config/import", json=doc)
    assert r.status_code == 400 and reason in r.get_json()["message"]
    nothing_imported(sf_settings.database_url)


def test_the_console_import_is_all_or_nothing_too(sf_settings, enqueued):
    """#14: an entry failing in Postgres used to answer 500 with the earlier entries already created."""
    url = sf_settings.database_url
    sql(url, "CREATE SCHEMA crm; CREATE TABLE crm.invoice__c (note text)")
    with console(replace(sf_settings, admin_password=PASSWORD), enqueued) as app:
        client = app.test_client()
        sign_in(client)
        response = client.post("/mappings/import", base_url=BASE, data={
            "csrf_token": csrf_of(client),
            "config": (io.BytesIO(json.dumps(EXPORT).encode()), "heroku-connect-export.json")})
    assert response.status_code == 400
    assert "Nothing imported: mapping Invoice__c" in response.text
    assert sql(url, "SELECT count(*) FROM forcebridge.mappings") == [(0,)]


@pytest.mark.parametrize("doc", [
    {"mappings": "Account"}, {"mappings": [], "connection": []}, {"mappings": [], "version": "1"},
    {"mappings": [{"object_name": "Account", "config": "read_write"}]},
    {"mappings": [{"object_name": "Account", "config": {"fields": ["Name"]}}]},
    {"mappings": [{"object_name": "Account", "config": {"fields": {"Name": []}}}]},
    {"mappings": [{"object_name": "Account", "config": {"fields": {"Name": {}}, "upsert_field": 7}}]},
    {"mappings": [{"object_name": "../limits#", "config": {"fields": {"Name": {}}}}]},
    {"mappings": [], "connection": {"name": 42}},
    {"mappings": [], "connection": {"features": "all"}},
])
def test_wrong_shapes_get_a_400_never_a_500(sf_api, sf_settings, doc):
    r = sf_api.post("/api/v1/config/import", json=doc)
    assert r.status_code == 400 and r.get_json()["message"].startswith("nothing imported")
    nothing_imported(sf_settings.database_url)


def test_a_deeply_nested_document_is_refused(sf_api):
    body = '{"mappings": [], "connection": ' + '{"features": ' * 5000 + '{}' + '}' * 5001
    r = sf_api.post("/api/v1/config/import", data=body, content_type="application/json")
    assert r.status_code == 400
