"""A Postgres-owned field through the load, the poll (the upsert) and a reload (the staging merge):
Salesforce's value fills a new row, never overwrites a stored one."""
from __future__ import annotations

import pytest

from gateway import mapping_store
from jobs import load, poll
from tests.integration.test_loading import api, db, sf, sf_app, sf_settings, sql  # noqa: F401


@pytest.mark.parametrize("reread", ["poll", "reload"])
def test_polls_and_reloads_leave_a_postgres_owned_field_alone(api, db, sf, sf_settings, emulator, reread):
    (done,) = sf.create_records("Account", [{"attributes": {"type": "Account"}, "Name": "A", "Industry": "Energy"}])
    r = api.post("/api/v1/mappings", json={"object_name": "Account", "config": {
        "fields": {"Name": {}, "Industry": {"owner": "postgres"}}}})
    assert r.status_code == 201, r.get_json()
    m = mapping_store.get(db, r.get_json()["id"])
    load.run_pending(db, sf, load.LoadOptions())
    url = sf_settings.database_url
    assert sql(url, "SELECT name, industry FROM salesforce.account") == [("A", "Energy")]   # a new row takes it
    sql(url, "UPDATE salesforce.account SET industry = 'Local'")
    emulator.admin("POST", "/_emulator/clock", {"advance": 5})     # a later SystemModstamp second
    sf.update_record("Account", done["id"], {"Name": "B", "Industry": "Banking"})
    sf.create_records("Account", [{"attributes": {"type": "Account"}, "Name": "C", "Industry": "Retail"}])
    if reread == "poll":
        poll.poll(db, sf, m, force=True)
    else:                                           # a reload merges its staging table into the stored rows
        assert api.post(f"/api/v1/mappings/{m.id}/reload").status_code == 202
        load.run_pending(db, sf, load.LoadOptions())
    assert sql(url, "SELECT name, industry FROM salesforce.account ORDER BY name") == [
        ("B", "Local"), ("C", "Retail")]
