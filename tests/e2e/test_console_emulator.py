"""The console against the Salesforce emulator: a mapping made from describe, a record created in
Salesforce arriving by Outbound Message and showing in the row counts and the trend chart."""
from __future__ import annotations

import dataclasses
import json
import pathlib
import time
import uuid

import pytest

from jobs.inbound import apply_pending
from tests.conftest import OUTBOUND_TOKEN
from tests.support.browser import screenshot


@pytest.fixture
def console_settings(settings, emulator):
    emulator.reset()
    return dataclasses.replace(
        settings, sf_instance_url=emulator.url, sf_username=emulator.username, sf_password=emulator.password,
        sf_security_token=emulator.security_token, sf_ca_bundle=str(emulator.ca_path),
        salesforce_org_id=emulator.org_id)


def wait_for(predicate, seconds=20.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def cell(page, object_name: str, column: str) -> str:
    return page.inner_text(f"tr[data-object={object_name}] td[data-col={column}]").strip()


def test_mapping_from_describe_then_a_salesforce_change_arrives(page, console, emulator):
    sf = emulator.salesforce()
    name = f"Console {uuid.uuid4().hex[:8]}"
    record_id = sf.Account.create({"Name": name, "Industry": "Energy"})["id"]

    page.goto(f"{console.url}/mappings")
    page.fill("input[name=object]", "Acount")
    page.click("text=Choose fields")
    assert page.is_visible("text=Salesforce has no object Acount")
    page.fill("input[name=object]", "Account")
    page.click("text=Choose fields")
    assert page.is_visible("text=From Salesforce's describe of Account")
    page.check("input[name=field][value=Name]")
    page.check("input[name=field][value=Industry]")
    screenshot(page, "mapping-from-describe")
    page.click("text=Create mapping")
    page.wait_for_selector("text=Mapping for Account created")
    assert cell(page, "Account", "sf_rows") == "1"      # SELECT COUNT() through the gateway
    assert cell(page, "Account", "pg_rows") == "0"

    rule = emulator.admin("POST", "/_emulator/outbound/rules", {
        "object": "Account", "fields": ["Name", "Industry", "SystemModstamp"],
        "endpoint_url": f"{console.url}/outbound/{OUTBOUND_TOKEN}", "exclude_clients": ["forcebridge"]})
    try:
        sf.Account.update(record_id, {"Industry": "Media"})
        assert wait_for(lambda: console.db.fetchone("notification_backlog")["pending"] >= 1)
    finally:
        emulator.admin("DELETE", f"/_emulator/outbound/rules/{rule['id']}")
    assert apply_pending(console.db).applied == 1

    page.reload()
    assert cell(page, "Account", "pg_rows") == "1"
    with console.db.transaction() as conn:
        row = conn.execute("SELECT sfid, name, industry FROM salesforce.account").fetchone()
    assert row == {"sfid": record_id, "name": name, "industry": "Media"}

    page.click("tr[data-object=Account] >> text=Trends")
    page.wait_for_selector("#trend-chart[data-drawn=true]")
    synced = page.evaluate("""() => document.getElementById('trend-chart').data
        .filter(t => t.meta === 'sf_to_pg:synced')[0].y.reduce((a, b) => a + b, 0)""")
    assert synced == 1

    page.goto(console.url + "/")
    assert page.is_visible("#status >> text=API usage today")
    screenshot(page, "overview-connected")


def test_a_failing_write_shows_in_errors_is_fixed_and_retried(page, console, console_settings):
    from gateway.salesforce import Salesforce
    from jobs.drain import DrainOptions, drain

    page.goto(f"{console.url}/mappings/new?object=Invoice__c")
    for name in ("Name", "Status__c", "External_Id__c"):
        page.check(f"input[name=field][value={name}]")
    page.select_option("select[name=direction]", "bidirectional")
    page.fill("input[name=upsert_field]", "External_Id__c")
    page.click("text=Create mapping")
    page.wait_for_selector("text=Mapping for Invoice__c created")

    with console.db.transaction() as conn:
        conn.execute("INSERT INTO salesforce.invoice__c (name, status__c, external_id__c) VALUES ('bad', 'Bogus', 'BAD')")
    sf = Salesforce(console_settings, backoff=0.01)
    fast = DrainOptions(retry_base_seconds=0, lease_seconds=60)
    try:
        assert drain(console.db, sf, fast).outcomes == {"FAILED": 1}
        page.goto(f"{console.url}/mappings")
        assert cell(page, "Invoice__c", "writes_failed") == "1"

        page.goto(f"{console.url}/errors")
        row = page.locator("#failed-writes tr", has_text="INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST")
        assert row.count() == 1
        screenshot(page, "errors-failed-write")

        # Fixed in Postgres by someone who knows better, then retried from the console.
        with console.db.transaction(origin="salesforce") as conn:
            conn.execute("UPDATE salesforce.invoice__c SET status__c = 'Paid' WHERE external_id__c = 'BAD'")
        row.locator("button:text-is('Retry')").click()
        page.wait_for_selector("text=queued again")
        assert drain(console.db, sf, fast).outcomes == {"SUCCESS": 1}
    finally:
        sf.close()
    assert sf_status(console_settings) == "Paid"
    page.goto(f"{console.url}/errors")
    assert page.locator("#failed-writes").inner_text().count("INVALID_OR_NULL") == 0
    page.goto(f"{console.url}/mappings")
    assert cell(page, "Invoice__c", "writes_failed") == "0"
    page.goto(console.url + "/")
    last_write = page.inner_text("tr[data-direction=pg_to_sf]")
    assert "UTC" in last_write and "records in the last 24 h: 1" in last_write


def sf_status(settings) -> str:
    from gateway.salesforce import Salesforce

    sf = Salesforce(settings)
    try:
        (record,) = sf.query("SELECT Status__c FROM Invoice__c WHERE External_Id__c = 'BAD'")
        return record["Status__c"]
    finally:
        sf.close()


def test_import_a_heroku_connect_export_then_export_it_again(page, console, tmp_path):
    export = {"version": 1, "connection": {"organization_id": "00D000000000000", "app_name": "acme",
                                           "schema_name": "salesforce"},
              "mappings": [{"object_name": "Invoice__c", "config": {
                  "access": "read_write", "sf_notify_enabled": False, "sf_polling_seconds": 600,
                  "sf_max_daily_api_calls": 30000, "upsert_field": "External_Id__c",
                  "fields": {"Id": {}, "Name": {}, "Amount__c": {}, "Status__c": {}, "External_Id__c": {},
                             "SystemModstamp": {}, "IsDeleted": {}},
                  "indexes": {"Id": {"unique": True}, "External_Id__c": {"unique": True}}}}]}
    path = tmp_path / "heroku-connect-export.json"
    path.write_text(json.dumps(export))
    page.goto(f"{console.url}/mappings")
    page.set_input_files("input[name=config]", str(path))
    page.click("button:text-is('Import')")
    page.wait_for_selector("text=Imported: 1 created, 0 updated")
    assert page.is_visible("tr[data-object=Invoice__c] >> text=salesforce.invoice__c")
    assert page.is_visible("tr[data-object=Invoice__c] >> text=both ways")
    with console.db.transaction() as conn:   # types came from Salesforce's describe
        columns = {r["column_name"]: r["data_type"] for r in conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'salesforce' AND table_name = 'invoice__c'").fetchall()}
    assert columns["amount__c"] == "double precision" and columns["external_id__c"] == "character varying"

    with page.expect_download() as download:
        page.click("text=Heroku Connect format")
    exported = json.loads(pathlib.Path(download.value.path()).read_text())
    (entry,) = exported["mappings"]
    assert entry["object_name"] == "Invoice__c" and entry["config"]["upsert_field"] == "External_Id__c"
    assert set(entry["config"]["fields"]) == set(export["mappings"][0]["config"]["fields"])
    assert entry["config"]["sf_polling_seconds"] == 600

    # Importing the same file again changes nothing and says so (a no-op, issue 18).
    page.set_input_files("input[name=config]", str(path))
    page.click("button:text-is('Import')")
    page.wait_for_selector("text=Imported: 0 created, 0 updated, 1 unchanged.")


def test_the_first_load_and_a_reload_show_their_progress_in_the_row(page, console, console_settings, emulator):
    from gateway.salesforce import Salesforce
    from jobs import load

    sf_users = emulator.salesforce()
    for i in range(30):
        sf_users.Contact.create({"LastName": f"Loaded {i}"})
    page.goto(f"{console.url}/mappings/new?object=Contact")
    page.check("input[name=field][value=LastName]")
    page.click("text=Create mapping")
    page.wait_for_selector("text=Mapping for Contact created")
    assert cell(page, "Contact", "load").startswith("queued")
    assert ("mapping_ready", (1,)) in console.ctx.enqueue.calls        # the worker is asked to load it

    sf = Salesforce(console_settings, backoff=0.01)
    try:
        load.run_pending(console.db, sf)
        # No reload of the page: a row with a load in progress asks for itself every 2 s.
        page.wait_for_function("() => document.querySelector('tr[data-object=Contact] td[data-col=load]')"
                               ".textContent.includes('loaded')", timeout=15000)
        assert cell(page, "Contact", "pg_rows") == "30"

        page.click("tr[data-object=Contact] button:text-is('Reload')")
        page.wait_for_selector("text=Reload of Contact queued")
        assert cell(page, "Contact", "load").startswith("queued")
        load.run_pending(console.db, sf)
        page.wait_for_function("() => document.querySelector('tr[data-object=Contact] td[data-col=load]')"
                               ".textContent.includes('loaded')", timeout=15000)
    finally:
        sf.close()
    screenshot(page, "mappings-loaded")


def test_a_drift_check_from_the_errors_page_finds_and_repairs_a_missing_record(page, console, console_settings,
                                                                               emulator):
    from gateway.salesforce import Salesforce
    from jobs import api_jobs, load

    page.goto(f"{console.url}/mappings/new?object=Lead")
    page.check("input[name=field][value=LastName]")
    page.check("input[name=field][value=Company]")
    page.click("text=Create mapping")
    page.wait_for_selector("text=Mapping for Lead created")
    sf = Salesforce(console_settings, backoff=0.01)
    try:
        load.run_pending(console.db, sf)
        emulator.salesforce().Lead.create({"LastName": "Unseen", "Company": "No message came"})  # no rule: no OM

        page.goto(f"{console.url}/errors")
        page.click("#drift tr[data-object=Lead] button:text-is('Check and repair')")
        page.wait_for_selector("text=Repair of Lead queued")
        name, (job_id,) = console.ctx.enqueue.calls[-1]
        assert name == "run_api_job" and api_jobs.get(console.db, job_id)["params"] == {"repair": True}
        assert api_jobs.run(console.db, console_settings, job_id)["state"] == "done"   # what the worker runs
    finally:
        sf.close()
    page.reload()
    row = page.inner_text("#drift tr[data-object=Lead]")
    assert "drift" in row and "repaired: 1 written" in row
    screenshot(page, "errors-drift")
    page.goto(f"{console.url}/mappings")
    assert cell(page, "Lead", "pg_rows") == "1"
