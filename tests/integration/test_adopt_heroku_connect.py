"""Adopting a Heroku Connect database in place: a pg_dump of an HC-managed schema (tests/fixtures/hc_schema.sql,
written from HC's documented DDL) is restored, `flask --app webapp connect adopt` takes it over, and both
directions carry on from where Connect stopped, with nothing reloaded and nothing missing."""
from __future__ import annotations

import datetime as dt
import io
import json
import pathlib
import subprocess
from dataclasses import replace

import psycopg
import pytest

from core.convert import parse_datetime
from gateway import mapping_store
from jobs import drift
from jobs.drain import drain
from jobs.poll import poll
from tests.conftest import testing_app as console
from tests.integration.test_capture import sql
from tests.integration.test_config_import import no_crm_schema  # noqa: F401 - autouse fixture
from tests.integration.test_write_path import FAST, db, sf, sf_api, sf_app, sf_settings  # noqa: F401 - fixtures
from tests.support.console import BASE, PASSWORD, csrf_of, sign_in

FIXTURES = pathlib.Path(__file__).parents[1] / "fixtures"
EXPORT = FIXTURES / "heroku_connect_export.json"


def naive_utc(text: str) -> dt.datetime:
    return parse_datetime(text).astimezone(dt.timezone.utc).replace(tzinfo=None)


@pytest.fixture
def restored(sf_settings, sf):
    """Salesforce holds the records Connect synced; the dump of Connect's schema is restored beside them,
    its placeholder sfids and stamps set to the emulator's (as they were in the org Connect synced)."""
    accounts = [("A-1", "Acme"), ("A-2", "Beta"), ("A-3", "Gamma")]
    sf.upsert_records("Account", "External_Id__c", [{"External_Id__c": e, "Name": n} for e, n in accounts])
    sf.upsert_records("Contact", "External_Id__c", [
        {"External_Id__c": "C-1", "LastName": "Lovelace", "FirstName": "Ada", "Account": {"External_Id__c": "A-1"}},
        {"External_Id__c": "C-2", "LastName": "Beta", "FirstName": "Bo", "Account": {"External_Id__c": "A-2"}},
        {"External_Id__c": "C-3", "LastName": "Gamma", "FirstName": "Cy", "Account": {"External_Id__c": "A-3"}}])
    created = sf.upsert_records("Invoice__c", "External_Id__c", [
        {"External_Id__c": "I-1", "Name": "INV-0001", "Status__c": "Paid", "Account__r": {"External_Id__c": "A-1"}},
        {"External_Id__c": "I-2", "Name": "INV-0002", "Status__c": "Sent", "Account__r": {"External_Id__c": "A-2"}}])
    assert all(r["success"] for r in created), created
    url = sf_settings.database_url
    subprocess.run(["psql", "-v", "ON_ERROR_STOP=1", "-q", "-d", url, "-f", str(FIXTURES / "hc_schema.sql")],
                   check=True, capture_output=True)
    real = {}
    for obj in ("Account", "Contact", "Invoice__c"):
        for r in sf.query(f"SELECT Id, External_Id__c, SystemModstamp FROM {obj}"):
            real[f"PLACEHOLDER-{r['External_Id__c']}"] = (r["Id"], naive_utc(r["SystemModstamp"]))
    with psycopg.connect(url) as conn:
        conn.execute("SET session_replication_role = replica")    # as a restore: Connect's triggers stay quiet
        for placeholder, (sfid, stamp) in real.items():
            for table, column in (("account", "sfid"), ("contact", "sfid"), ("contact", "accountid"),
                                  ("invoice__c", "sfid"), ("invoice__c", "account__c"),
                                  ("_trigger_log", "sfid"), ("_trigger_log_archive", "sfid")):
                conn.execute(psycopg.sql.SQL("UPDATE {} SET {} = %s WHERE {} = %s").format(
                    psycopg.sql.Identifier("crm", table), psycopg.sql.Identifier(column),
                    psycopg.sql.Identifier(column)), (sfid, placeholder))
            for table in ("account", "contact", "invoice__c"):
                conn.execute(psycopg.sql.SQL("UPDATE {} SET systemmodstamp = %s WHERE sfid = %s").format(
                    psycopg.sql.Identifier("crm", table)), (stamp, sfid))
    return {k.removeprefix("PLACEHOLDER-"): v for k, v in real.items()}


def rows(url):
    return {t: sql(url, f"SELECT * FROM crm.{t} ORDER BY id") for t in ("account", "contact", "invoice__c")}


def adopt(app, *args):
    return app.test_cli_runner().invoke(args=["connect", "adopt", "--schema", "crm", *args])


def test_a_restored_heroku_connect_schema_is_adopted_in_place(sf_app, sf_settings, db, sf, restored, enqueued):
    url = sf_settings.database_url
    before = rows(url)
    out = adopt(sf_app, "--config", str(EXPORT))
    assert out.exit_code == 0, out.output
    assert "1 unsent changes queued, 1 failures kept, 5 history entries archived" in out.output

    # every row and id kept, Connect's column types kept
    assert rows(url) == before
    types = dict(sql(url, "SELECT column_name, data_type FROM information_schema.columns "
                          "WHERE table_schema = 'crm' AND table_name = 'account'"))
    assert (types["systemmodstamp"], types["annualrevenue"]) == ("timestamp without time zone", "double precision")
    # Connect's triggers, trigger functions and log tables are gone; ours capture the writing tables
    triggers = sql(url, "SELECT c.relname, t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'crm' AND NOT t.tgisinternal")
    assert not [t for t in triggers if t[1].startswith(("hc_", "tlog_"))]
    # (our _trigger_log view has its own INSTEAD OF trigger: retries by UPDATE .. SET state = 'NEW')
    assert {t for t, _ in triggers if t != "_trigger_log"} == {"account", "contact"}
    functions = {f for (f,) in sql(url, "SELECT p.proname FROM pg_proc p JOIN pg_namespace n "
                                        "ON n.oid = p.pronamespace WHERE n.nspname = 'crm'")}
    assert "get_xmlbinary" in functions and not [f for f in functions if f.endswith(("_logger", "_status"))]
    assert sql(url, "SELECT relkind FROM pg_class WHERE oid = to_regclass('crm._trigger_log')") == [("v",)]
    assert sql(url, "SELECT count(*) FROM crm._hcmeta") == [(1,)]

    # the trigger log: unsent -> NEW, failed -> FAILED with Connect's message, the rest archived
    ids = {m.object_name: m.id for m in mapping_store.list_all(db)}
    assert sql(url, "SELECT mapping_id, op, record_id, sfid, fields, state FROM forcebridge.change_log ORDER BY id") == [
        (ids["Contact"], "update", 4, restored["C-3"][0], ["email"], "FAILED"),
        (ids["Contact"], "update", 2, restored["C-2"][0], ["lastname"], "NEW")]
    ((error,),) = sql(url, "SELECT error FROM forcebridge.change_log WHERE state = 'FAILED'")
    assert error == [{"statusCode": "HEROKU_CONNECT", "message": "Email: invalid email address: not-an-email"}]
    assert sql(url, "SELECT state, count(*) FROM forcebridge.change_log_archive GROUP BY 1 ORDER BY 1") == [
        ("IGNORED", 1), ("MERGED", 1), ("SUCCESS", 3)]

    # Salesforce -> Postgres resumes from the newest SystemModstamp: no load
    assert sql(url, "SELECT count(*) FROM forcebridge.loads WHERE state <> 'cancelled'") == [(0,)]
    marks = dict(sql(url, "SELECT m.object_name, p.watermark FROM forcebridge.poll_state p "
                          "JOIN forcebridge.mappings m ON m.id = p.mapping_id"))
    newest = {"Account": max(restored[k][1] for k in ("A-1", "A-2", "A-3")),
              "Invoice__c": max(restored[k][1] for k in ("I-1", "I-2"))}
    assert marks["Account"].replace(tzinfo=None) == newest["Account"]
    assert marks["Invoice__c"].replace(tzinfo=None) == newest["Invoice__c"]

    # what Connect had not sent goes now, and new app writes are captured by our triggers
    sql(url, "UPDATE crm.account SET name = 'Acme Group' WHERE external_id__c = 'A-1'")
    assert drain(db, sf, FAST).outcomes == {"SUCCESS": 2}
    assert sf.query("SELECT LastName FROM Contact WHERE External_Id__c = 'C-2'")[0]["LastName"] == "Renamed"
    assert sf.query("SELECT Name FROM Account WHERE External_Id__c = 'A-1'")[0]["Name"] == "Acme Group"

    # a change made in Salesforce arrives by the poll, from the adopted watermark
    sf.update_records("Invoice__c", [{"Id": restored["I-2"][0], "Status__c": "Paid"}])
    invoice = mapping_store.get(db, ids["Invoice__c"])
    # (the poll looks 60 s behind its watermark, so the records made just now for this test come too)
    assert poll(db, sf, invoice, force=True).changed >= 1
    assert sql(url, "SELECT status__c FROM crm.invoice__c WHERE id = 2") == [("Paid",)]

    # a drift check finds nothing missing, extra or stale (after the polls that bring our own writes' new
    # SystemModstamps back, as they would come in the next ten minutes)
    for name in ("Account", "Contact", "Invoice__c"):
        poll(db, sf, mapping_store.get(db, ids[name]), force=True)
        report = drift.check(db, sf, mapping_store.get(db, ids[name]))
        assert (report["missing"], report["extra"], report["stale"]) == (0, 0, 0), (name, report)

    # adopting again finds nothing of Connect's left and changes nothing
    again = adopt(sf_app)
    assert again.exit_code == 0 and "adopted before" in again.output
    assert sql(url, "SELECT count(*) FROM forcebridge.change_log_archive") == [(5,)]


def test_without_mappings_adoption_stops_and_changes_nothing(sf_app, sf_settings, restored):
    url = sf_settings.database_url
    out = adopt(sf_app)
    assert out.exit_code != 0
    assert "nothing changed" in out.output and "account, contact, invoice__c" in out.output
    assert sql(url, "SELECT count(*) FROM crm._trigger_log") == [(4,)]
    assert sql(url, "SELECT count(*) FROM pg_trigger WHERE tgname = 'hc_account_logtrigger'") == [(1,)]


def test_importing_into_a_schema_connect_still_manages_is_refused(sf_api, sf_settings, restored):
    r = sf_api.post("/api/v1/config/import", json=json.loads(EXPORT.read_text()))
    assert r.status_code == 400 and "connect adopt --schema crm" in r.get_json()["message"]
    assert sql(sf_settings.database_url, "SELECT count(*) FROM forcebridge.mappings") == [(0,)]


def test_the_setup_page_adopts_with_the_export(sf_settings, enqueued, restored):
    with console(replace(sf_settings, admin_password=PASSWORD), enqueued) as app:
        client = app.test_client()
        sign_in(client)
        assert "Adopt schema" in client.get("/setup", base_url=BASE).text
        response = client.post("/setup/adopt", base_url=BASE, data={
            "csrf_token": csrf_of(client), "schema": "crm",
            "config": (io.BytesIO(EXPORT.read_bytes()), "heroku-connect-export.json")})
    assert response.status_code == 200, response.text
    assert "Adopted crm" in response.text and "1 unsent changes queued" in response.text
    assert ("drain_outbound", ()) in enqueued.calls


def test_a_schema_that_is_not_connects_is_not_adopted(sf_app, sf_settings):
    out = adopt(sf_app)
    assert out.exit_code != 0 and "there is no schema crm" in out.output
    sql(sf_settings.database_url, "CREATE SCHEMA crm; CREATE TABLE crm.account (id serial)")
    out = adopt(sf_app)
    assert out.exit_code != 0 and "not a Heroku Connect schema" in out.output
