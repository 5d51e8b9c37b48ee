"""Row filters: checked by Salesforce when saved, used by the load, the poll and the drift check."""
from __future__ import annotations

from gateway import mapping_store
from jobs import drift, load, poll
from tests.integration.test_loading import api, db, sf, sf_app, sf_settings, sql  # noqa: F401

FIELDS = {"Name": {}, "Industry": {}}


def accounts(sf, *pairs):
    done = sf.create_records("Account", [{"attributes": {"type": "Account"}, "Name": n, "Industry": i}
                                         for n, i in pairs])
    assert all(r["success"] for r in done), done
    return [r["id"] for r in done]


def names(url):
    return [r[0] for r in sql(url, "SELECT name FROM salesforce.account ORDER BY name")]


def test_a_filter_salesforce_cannot_parse_is_refused_naming_it(api):
    for bad in ("Nope__c = 1", "Industry = 'Banking"):
        r = api.post("/api/v1/mappings", json={"object_name": "Account", "config": {
            "fields": FIELDS, "row_filter": bad}})
        assert (r.status_code, r.get_json()["field"]) == (400, "config.row_filter"), r.get_json()
    assert api.get("/api/v1/mappings").get_json()["mappings"] == []


def test_load_poll_and_drift_keep_to_the_filter(api, db, sf, sf_settings):
    banking, _, moved = accounts(sf, ("A", "Banking"), ("B", "Energy"), ("C", "Banking"))
    r = api.post("/api/v1/mappings", json={"object_name": "Account", "config": {
        "fields": FIELDS, "row_filter": "Industry = 'Banking'"}})
    assert r.status_code == 201, r.get_json()
    assert r.get_json()["config"]["row_filter"] == "Industry = 'Banking'"      # round trip
    m = mapping_store.get(db, r.get_json()["id"])
    load.run_pending(db, sf, load.LoadOptions())
    url = sf_settings.database_url
    assert names(url) == ["A", "C"]

    accounts(sf, ("D", "Banking"), ("E", "Energy"))
    poll.poll(db, sf, m, force=True)
    assert names(url) == ["A", "C", "D"]

    sf.update_record("Account", moved, {"Industry": "Energy"})                   # C leaves the filter
    report = drift.check(db, sf, m)
    assert (report["missing"], report["extra"]) == (0, 1)      # B and E are not "missing"; C is out
    drift.check(db, sf, m, repair=True)
    assert names(url) == ["A", "D"]


def test_a_filter_can_be_changed_and_removed(api, db, sf):
    r = api.post("/api/v1/mappings", json={"object_name": "Account", "config": {"fields": FIELDS}})
    mid = r.get_json()["id"]
    bad = api.patch(f"/api/v1/mappings/{mid}", json={"config": {"row_filter": "Bogus__c = 1"}})
    assert (bad.status_code, bad.get_json()["field"]) == (400, "config.row_filter")
    ok = api.patch(f"/api/v1/mappings/{mid}", json={"config": {"row_filter": "Industry != null"}})
    assert ok.status_code == 200 and ok.get_json()["config"]["row_filter"] == "Industry != null"
    gone = api.patch(f"/api/v1/mappings/{mid}", json={"config": {"row_filter": None}})
    assert "row_filter" not in gone.get_json()["config"]
