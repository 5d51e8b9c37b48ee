"""Row filters: checked by Salesforce when saved (and imported), used by the load, the poll, the drift check and
Outbound Messages; records moving in and out of a filter on both sides; a new filter reloads."""
from __future__ import annotations

from gateway import mapping_store
from jobs import drift, inbound, load, poll, row_filters
from jobs.drain import DrainOptions, drain
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


# -- records moving in and out of the filter (issue 17) ---------------------------------------------------
BANKING = "Industry = 'Banking'"


def filtered_mapping(api, db, access="read_only", row_filter=BANKING, **config):
    r = api.post("/api/v1/mappings", json={"object_name": "Account", "config": {
        "access": access, "fields": FIELDS, "row_filter": row_filter, **config}})
    assert r.status_code == 201, r.get_json()
    return mapping_store.get(db, r.get_json()["id"])


def loaded_banking_account(api, db, sf, access="read_only"):
    """One Banking account A, loaded by a filtered mapping: (A's id, the mapping)."""
    a, = accounts(sf, ("A", "Banking"))
    m = filtered_mapping(api, db, access=access)
    load.run_pending(db, sf, load.LoadOptions())
    return a, m


def as_message(sf, sfid):
    """The Outbound Message Salesforce would send for the record now (every mapped field and its stamp)."""
    (record,) = sf.query_page(f"SELECT Id, Name, Industry, SystemModstamp FROM Account WHERE Id = '{sfid}'")["records"]
    return {k: v for k, v in record.items() if k != "attributes"}


def left_filter_marks(url):
    return sorted(r[0] for r in sql(url, "SELECT sfid FROM forcebridge.salesforce_deletes WHERE left_filter"))


def kinds_used(sf):
    used, _ = sf.take_usage()
    return {kind: n for (hour, kind, obj), n in used.items() if n}


def test_outbound_messages_are_checked_against_the_filter(api, db, sf, sf_app, sf_settings):
    from tests.integration.test_loading import om_post

    url = sf_settings.database_url
    inside, outside, never = accounts(sf, ("A", "Banking"), ("B", "Energy"), ("N", "Retail"))
    m = filtered_mapping(api, db)
    load.run_pending(db, sf, load.LoadOptions())
    assert names(url) == ["A"]
    sf.update_record("Account", inside, {"Industry": "Energy"})      # A leaves the filter
    sf.update_record("Account", outside, {"Industry": "Banking"})    # B joins it
    client = sf_app.test_client()
    om_post(client, sf_settings.salesforce_org_id, [as_message(sf, i) for i in (inside, outside, never)])
    sf.take_usage()

    applied = inbound.apply_pending(db)
    assert (applied.applied, applied.checking) == (3, 3)
    assert names(url) == ["A"]                      # nothing written before Salesforce says what matches
    done = row_filters.check_pending(db, sf)
    assert done == {"checked": 3, "written": 1, "removed": 1}
    assert names(url) == ["B"]
    assert sql(url, "SELECT industry FROM salesforce.account") == [("Banking",)]
    assert left_filter_marks(url) == sorted([inside, never])
    assert kinds_used(sf) == {"filter_checks": 2}   # the read through the filter, the stamps of the two outside
    assert row_filters.pending(db) == 0

    sf.update_record("Account", inside, {"Industry": "Banking", "Name": "A2"})   # A comes back, newer
    om_post(client, sf_settings.salesforce_org_id, [as_message(sf, inside)])
    inbound.apply_pending(db)
    row_filters.check_pending(db, sf)
    assert names(url) == ["A2", "B"]
    assert m.id == mapping_store.get(db, m.id).id


def test_the_poll_removes_records_that_left_the_filter(api, db, sf, sf_settings):
    url = sf_settings.database_url
    a, b = accounts(sf, ("A", "Banking"), ("B", "Banking"))
    m = filtered_mapping(api, db)
    load.run_pending(db, sf, load.LoadOptions())
    assert names(url) == ["A", "B"]
    sf.update_record("Account", a, {"Industry": "Energy"})
    result = poll.poll(db, sf, m, force=True)
    assert (names(url), result.deleted) == (["B"], 1)
    assert left_filter_marks(url) == [a]
    sf.update_record("Account", a, {"Industry": "Banking", "Name": "A again"})
    poll.poll(db, sf, m, force=True)
    assert names(url) == ["A again", "B"]


def test_a_row_written_in_postgres_outside_the_filter_is_sent_then_removed(api, db, sf, sf_settings):
    url = sf_settings.database_url
    m = filtered_mapping(api, db, access="read_write")
    load.run_pending(db, sf, load.LoadOptions())
    sql(url, "INSERT INTO salesforce.account (name, industry) VALUES ('in', 'Banking'), ('out', 'Energy')")
    # a load before the rows are sent leaves them alone: their changes wait to go to Salesforce
    load.request(db, m.id, "test")
    load.run_pending(db, sf, load.LoadOptions(rest_max=0))
    assert names(url) == ["in", "out"]
    assert drain(db, sf, DrainOptions(retry_base_seconds=0)).outcomes == {"SUCCESS": 2}
    created = {r["Name"]: r["Industry"] for r in sf.query_page(
        "SELECT Name, Industry FROM Account")["records"]}
    assert created == {"in": "Banking", "out": "Energy"}    # both were written to Salesforce
    poll.poll(db, sf, m, force=True)                          # the next sync: a poll finds it
    assert names(url) == ["in"]
    assert row_filters.check_pending(db, sf)["checked"] == 2  # so does the check the drain queued
    assert names(url) == ["in"]

    sql(url, "UPDATE salesforce.account SET industry = 'Energy' WHERE name = 'in'")   # moved out in Postgres
    assert drain(db, sf, DrainOptions(retry_base_seconds=0)).outcomes == {"SUCCESS": 1}
    assert row_filters.pending(db) == 1                      # the drain asks whether it still matches
    assert row_filters.check_pending(db, sf)["removed"] == 1
    assert names(url) == []
    assert {r["Name"] for r in sf.query_page("SELECT Name FROM Account WHERE Industry = 'Energy'")["records"]} == {
        "in", "out"}


def test_a_new_filter_reloads_what_it_selects(api, db, sf, sf_settings, enqueued):
    url = sf_settings.database_url
    a, b, c = accounts(sf, ("A", "Banking"), ("B", "Energy"), ("C", "Banking"))
    m = filtered_mapping(api, db)
    load.run_pending(db, sf, load.LoadOptions())
    sf.update_record("Account", c, {"Industry": "Energy"})
    poll.poll(db, sf, m, force=True)                   # C left: removed, marked
    assert names(url) == ["A"] and left_filter_marks(url) == [c]

    r = api.patch(f"/api/v1/mappings/{m.id}", json={"config": {"row_filter": "Industry = 'Energy'"}})
    assert r.status_code == 200, r.get_json()
    assert ("run_loads", ()) in enqueued.calls
    assert left_filter_marks(url) == []                # C may come back now
    (queued,) = db.fetchall("loads_to_run")
    # a Bulk job: its creation time is the snapshot's, so rows outside the new filter leave at once
    load.run(db, sf, queued["id"], load.LoadOptions(rest_max=0))
    assert names(url) == ["B", "C"]
    assert left_filter_marks(url) == [a]

    api.patch(f"/api/v1/mappings/{m.id}", json={"config": {"row_filter": None}})   # no filter: everything
    load.run_pending(db, sf, load.LoadOptions())
    assert names(url) == ["A", "B", "C"]


def test_an_import_with_a_filter_salesforce_refuses_imports_nothing(api, db):
    good = {"object_name": "Contact", "config": {"access": "read_only", "fields": {"LastName": {}}}}
    bad = {"object_name": "Account", "config": {"access": "read_only", "fields": FIELDS,
                                                 "row_filter": "Nope__c = 1"}}
    r = api.post("/api/v1/config/import", json={"version": 1, "connection": {}, "mappings": [good, bad]})
    assert r.status_code == 400, r.get_json()
    assert "mapping Account" in r.get_json()["message"] and "row_filter" in r.get_json()["message"]
    assert api.get("/api/v1/mappings").get_json()["mappings"] == []
    bad["config"]["row_filter"] = BANKING
    r = api.post("/api/v1/config/import", json={"version": 1, "connection": {}, "mappings": [good, bad]})
    assert r.status_code == 200, r.get_json()
    assert {m["object_name"]: m["config"].get("row_filter")
            for m in api.get("/api/v1/mappings").get_json()["mappings"]} == {"Contact": None, "Account": BANKING}


def test_a_record_queued_again_while_it_is_checked_waits_for_the_next_check(api, db):
    m = filtered_mapping(api, db)
    queue = {"mapping_id": m.id, "sfids": ["001000000000001AAA"], "sources": ["outbound"]}
    db.execute("filter_checks_add", queue)
    (listed,) = db.fetchall("filter_checks_list", {"limit": 10})
    db.execute("filter_checks_add", {**queue, "sources": ["cdc"]})    # a newer change, mid-check
    db.execute("filter_checks_done", {"mapping_id": m.id, "sfids": [listed["sfid"]], "queued": [listed["queued_at"]]})
    assert row_filters.pending(db) == 1


def test_a_filter_changed_while_a_load_runs_loads_again_after_it(api, db, sf, sf_settings):
    url = sf_settings.database_url
    accounts(sf, ("A", "Banking"), ("B", "Energy"))
    m = filtered_mapping(api, db)

    def change_filter(row):
        if row["pages"] == 1:
            r = api.patch(f"/api/v1/mappings/{m.id}", json={"config": {"row_filter": "Industry = 'Energy'"}})
            assert r.status_code == 200, r.get_json()

    (first,) = load.run_pending(db, sf, load.LoadOptions(on_page=change_filter))
    assert first["requested_by"] == "mapping created" and names(url) == ["A"]    # the old filter's snapshot
    (second,) = load.run_pending(db, sf, load.LoadOptions(rest_max=0))   # Bulk: its snapshot time is exact
    assert second["requested_by"] == "row filter changed"
    assert names(url) == ["B"]


# -- review 2: local changes, loads and checks racing each other ------------------------------------------
def test_a_row_whose_local_change_waits_stays_until_it_is_sent(api, db, sf, sf_settings):
    url = sf_settings.database_url
    a, m = loaded_banking_account(api, db, sf, access="read_write")
    sql(url, "UPDATE salesforce.account SET name = 'A local' WHERE sfid = %s", (a,))
    sf.update_record("Account", a, {"Industry": "Energy"})       # a Salesforce user moves A out meanwhile
    poll.poll(db, sf, m, force=True)
    assert names(url) == ["A local"] and left_filter_marks(url) == []
    assert drain(db, sf, DrainOptions(retry_base_seconds=0)).outcomes == {"SUCCESS": 1}
    assert row_filters.check_pending(db, sf)["removed"] == 1       # sent: the drain's check decides again
    assert names(url) == []
    assert sf.query_page(f"SELECT Name FROM Account WHERE Id = '{a}'")["records"][0]["Name"] == "A local"


def test_a_local_change_committed_while_the_poll_removes_leavers_keeps_its_row(api, db, sf, sf_settings,
                                                                               monkeypatch):
    from gateway import staging

    url = sf_settings.database_url
    a, m = loaded_banking_account(api, db, sf, access="read_write")
    sf.update_record("Account", a, {"Industry": "Energy"})
    known_rows = staging.known_rows

    def app_writes_meanwhile(conn, m_, sfids):    # after the poll moved captured changes into the change log
        sql(url, "UPDATE salesforce.account SET name = 'A local' WHERE sfid = %s", (a,))
        return known_rows(conn, m_, sfids)

    monkeypatch.setattr(staging, "known_rows", app_writes_meanwhile)
    poll.poll(db, sf, m, force=True)
    assert names(url) == ["A local"]


def test_a_row_whose_local_change_failed_stays_when_its_record_leaves(api, db, sf, sf_settings):
    url = sf_settings.database_url
    a, m = loaded_banking_account(api, db, sf, access="read_write")
    sql(url, "UPDATE salesforce.account SET name = NULL WHERE sfid = %s", (a,))    # Salesforce refuses it
    assert drain(db, sf, DrainOptions(retry_base_seconds=0)).outcomes == {"FAILED": 1}
    sf.update_record("Account", a, {"Industry": "Energy"})
    poll.poll(db, sf, m, force=True)
    assert sql(url, "SELECT sfid, name FROM salesforce.account") == [(a, None)]   # the failure can be retried


def test_the_check_keeps_a_row_moved_back_into_the_filter_before_it_runs(api, db, sf, sf_settings):
    url = sf_settings.database_url
    filtered_mapping(api, db, access="read_write")
    load.run_pending(db, sf, load.LoadOptions())
    sql(url, "INSERT INTO salesforce.account (name, industry) VALUES ('mine', 'Energy')")
    assert drain(db, sf, DrainOptions(retry_base_seconds=0)).outcomes == {"SUCCESS": 1}    # queues a check
    sql(url, "UPDATE salesforce.account SET industry = 'Banking' WHERE name = 'mine'")    # back, not yet sent
    ids = sql(url, "SELECT id FROM salesforce.account")
    assert row_filters.check_pending(db, sf)["removed"] == 0
    assert drain(db, sf, DrainOptions(retry_base_seconds=0)).outcomes == {"SUCCESS": 1}
    row_filters.check_pending(db, sf)
    assert sql(url, "SELECT id, industry FROM salesforce.account") == [(ids[0][0], "Banking")]


def test_the_check_keeps_a_record_that_came_back_between_its_two_reads(api, db, sf, sf_settings, monkeypatch):
    url = sf_settings.database_url
    a, m = loaded_banking_account(api, db, sf)
    sf.update_record("Account", a, {"Industry": "Energy"})
    db.execute("filter_checks_add", {"mapping_id": m.id, "sfids": [a], "sources": ["outbound"]})
    settle = drift.settle_unreturned

    def back_in_between(db_, sf_, m_, ids, source_name, result):
        sf.update_record("Account", a, {"Industry": "Banking", "Name": "A back"})
        settle(db_, sf_, m_, ids, source_name, result)

    monkeypatch.setattr(drift, "settle_unreturned", back_in_between)
    assert row_filters.check_pending(db, sf)["removed"] == 0
    monkeypatch.setattr(drift, "settle_unreturned", settle)
    assert names(url) == ["A"] and left_filter_marks(url) == []
    assert row_filters.pending(db) == 1                          # asked again
    row_filters.check_pending(db, sf)
    assert names(url) == ["A back"]


def test_two_checks_at_once_read_the_records_once(api, db, sf, monkeypatch):
    a, = accounts(sf, ("A", "Banking"))
    m = filtered_mapping(api, db)
    db.execute("filter_checks_add", {"mapping_id": m.id, "sfids": [a], "sources": ["cdc"]})
    fetch, meanwhile = drift.fetch_by_ids, []

    def another_check_meanwhile(*args, **kwargs):
        if not meanwhile:
            meanwhile.append(row_filters.check_pending(db, sf))   # e.g. a CDC batch's, beside the minute task
        fetch(*args, **kwargs)

    monkeypatch.setattr(drift, "fetch_by_ids", another_check_meanwhile)
    sf.take_usage()
    assert row_filters.check_pending(db, sf)["checked"] == 1
    assert meanwhile == [{"checked": 0, "written": 0, "removed": 0}]
    assert kinds_used(sf) == {"filter_checks": 1}


def test_a_filtered_load_keeps_a_row_the_app_created_while_it_ran(api, db, sf, sf_settings, monkeypatch):
    url = sf_settings.database_url
    accounts(sf, ("A", "Banking"))
    m = filtered_mapping(api, db, access="read_write")
    load.run_pending(db, sf, load.LoadOptions())
    merge = load._merge

    def created_before_the_merge(db_, sf_, m_, row):
        sql(url, "INSERT INTO salesforce.account (name, industry) VALUES ('new', 'Banking')")
        assert drain(db, sf, DrainOptions(retry_base_seconds=0)).outcomes == {"SUCCESS": 1}
        sql(url, "DELETE FROM forcebridge.filter_checks")   # the write's check has not run yet
        return merge(db_, sf_, m_, {**row, "snapshot_at": None})   # a REST load: its start is the snapshot's time

    monkeypatch.setattr(load, "_merge", created_before_the_merge)
    load.request(db, m.id, "test")
    load.run_pending(db, sf, load.LoadOptions())
    assert names(url) == ["A", "new"]


def test_a_new_filter_checks_rows_no_read_filled(api, db, sf, sf_settings):
    url = sf_settings.database_url
    accounts(sf, ("A", "Banking"), ("B", "Energy"))
    m = filtered_mapping(api, db, access="read_write", row_filter=None)
    load.run_pending(db, sf, load.LoadOptions())
    sql(url, "INSERT INTO salesforce.account (name, industry) VALUES ('mine', 'Energy')")
    assert drain(db, sf, DrainOptions(retry_base_seconds=0)).outcomes == {"SUCCESS": 1}   # not read back yet
    api.patch(f"/api/v1/mappings/{m.id}", json={"config": {"row_filter": BANKING}})
    load.run_pending(db, sf, load.LoadOptions(rest_max=0))
    assert names(url) == ["A", "mine"]               # the snapshot cannot say whether 'mine' matches
    assert row_filters.check_pending(db, sf) == {"checked": 1, "written": 0, "removed": 1}
    assert names(url) == ["A"]


def test_a_filter_widened_while_a_load_runs_brings_every_record(api, db, sf, sf_settings):
    url = sf_settings.database_url
    accounts(sf, ("A", "Banking"), ("B", "Energy"))
    m = filtered_mapping(api, db, access="read_only", row_filter=None)
    load.run_pending(db, sf, load.LoadOptions())
    api.patch(f"/api/v1/mappings/{m.id}", json={"config": {"row_filter": BANKING}})

    def widen(row):
        if row["pages"] == 1:
            r = api.patch(f"/api/v1/mappings/{m.id}", json={"config": {"row_filter": None}})
            assert r.status_code == 200, r.get_json()

    load.run_pending(db, sf, load.LoadOptions(on_page=widen, rest_max=0))
    assert left_filter_marks(url) == []             # the load with the old filter removed nothing
    load.run_pending(db, sf, load.LoadOptions(rest_max=0))
    assert names(url) == ["A", "B"]
