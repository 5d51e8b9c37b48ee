"""Formula and roll-up fields refreshed on their schedule against the emulator's real recomputation: only
changed rows updated, systemmodstamp untouched, no write back, no conflict; REST pages or a Bulk job."""
from __future__ import annotations

import datetime as dt
import threading
import time

import psycopg
import pytest
from psycopg.rows import dict_row

from core import formulas
from gateway import mapping_store
from gateway.salesforce import for_settings
from jobs import api_usage, apply, budget, formula_refresh, load, poll, sync_tasks
from jobs.drain import drain
from jobs.inbound import apply_pending
from tests.conftest import OUTBOUND_TOKEN
from tests.integration.test_api_budget import fresh_plan, spend  # noqa: F401
from tests.integration.test_loading import api, db, route_calls, sf, sf_app, sf_settings, sql  # noqa: F401
from tests.integration.test_write_path import FAST
from tests.support.messages import envelope

PARCEL_FIELDS = {"Name": {}, "Weight__c": {}, "Shipment__c": {}, "Cost__c": {}, "Label__c": {},
                 "External_Id__c": {}}


def loaded(api, db, sf, object_name, fields, **config):
    r = api.post("/api/v1/mappings", json={"object_name": object_name, "direction": "bidirectional",
                                           "config": {"fields": fields, **config}})
    assert r.status_code == 201, r.get_json()
    load.run_pending(db, sf, load.LoadOptions())
    return mapping_store.get(db, r.get_json()["id"])


@pytest.mark.parametrize("bulk_above", [10_000, 1])
def test_formulas_whose_inputs_changed_are_refreshed_without_an_echo(api, db, sf, sf_settings, bulk_above):
    ship = sf.create_record("Shipment__c", {"Name": "S1", "Rate__c": 2})["id"]
    parcels = sf.create_records("Parcel__c", [
        {"attributes": {"type": "Parcel__c"}, "Name": f"P{i}", "Weight__c": i, "Shipment__c": ship,
         "External_Id__c": f"E{i}"} for i in (1, 2, 3)])
    assert all(p["success"] for p in parcels)
    m = loaded(api, db, sf, "Parcel__c", PARCEL_FIELDS, upsert_field="External_Id__c")
    url = sf_settings.database_url
    assert sql(url, "SELECT name, cost__c, label__c FROM salesforce.parcel__c ORDER BY name") == [
        ("P1", 2, "P1 (S1)"), ("P2", 4, "P2 (S1)"), ("P3", 6, "P3 (S1)")]
    before = sql(url, "SELECT sfid, systemmodstamp, _hc_lastop FROM salesforce.parcel__c ORDER BY name")

    stamps = sf.query("SELECT Id, SystemModstamp FROM Parcel__c")
    sf.update_record("Shipment__c", ship, {"Rate__c": 10})        # the parent changes: the formulas follow
    assert sf.query("SELECT Id, SystemModstamp FROM Parcel__c") == stamps   # nothing a poll would see
    with sf.work("formula_refresh"):
        result = formula_refresh.refresh(db, sf, m, bulk_above=bulk_above)
    assert (sorted(result.fields), result.checked, result.updated) == (["Cost__c", "Label__c"], 3, 3)
    assert sql(url, "SELECT name, cost__c FROM salesforce.parcel__c ORDER BY name") == [
        ("P1", 10), ("P2", 20), ("P3", 30)]
    assert sql(url, "SELECT sfid, systemmodstamp, _hc_lastop FROM salesforce.parcel__c ORDER BY name") == before
    assert sql(url, "SELECT count(*) FROM forcebridge.change_capture") == [(0,)]
    assert drain(db, sf, FAST).claimed == 0                       # nothing goes back to Salesforce
    assert sql(url, "SELECT count(*) FROM forcebridge.conflicts") == [(0,)]
    with sf.work("formula_refresh"):
        again = formula_refresh.refresh(db, sf, m, bulk_above=bulk_above)
    assert (again.checked, again.updated) == (3, 0)               # unchanged rows are not written
    (state,) = sql(url, "SELECT fields, updated, api_calls > 0, next_run_at - last_run_at "
                        "FROM forcebridge.formula_refresh")
    assert state == (["Cost__c", "Label__c"], 0, True, dt.timedelta(minutes=15))


def test_rollups_are_refreshed_on_the_mappings_schedule(api, db, sf, sf_settings):
    ship = sf.create_record("Shipment__c", {"Name": "S1", "Rate__c": 1})["id"]
    m = loaded(api, db, sf, "Shipment__c", {"Name": {}, "Parcel_Count__c": {}, "Total_Weight__c": {}},
               formula_refresh_minutes=5)
    url = sf_settings.database_url
    assert sql(url, "SELECT parcel_count__c, total_weight__c FROM salesforce.shipment__c") == [(0, 0)]
    sf.create_records("Parcel__c", [{"attributes": {"type": "Parcel__c"}, "Name": "P", "Weight__c": 2.5,
                                     "Shipment__c": ship}])
    (done,) = formula_refresh.refresh_due(db, sf)
    assert done.updated == 1
    assert sql(url, "SELECT parcel_count__c, total_weight__c FROM salesforce.shipment__c") == [(1, 2.5)]
    assert formula_refresh.refresh_due(db, sf) == []              # not due again for 5 minutes
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=6)
    assert [r.mapping_id for r in formula_refresh.refresh_due(db, sf, now=later)] == [m.id]


def test_a_mapping_without_calculated_fields_is_looked_at_daily_until_it_is_saved_again(api, db, sf):
    m = loaded(api, db, sf, "Shipment__c", {"Name": {}, "Rate__c": {}})
    (first,) = formula_refresh.refresh_due(db, sf)
    assert (first.fields, first.api_calls) == ([], 1)              # one describe found nothing to refresh
    in_an_hour = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)
    assert formula_refresh.refresh_due(db, sf, now=in_an_hour) == []
    r = api.patch(f"/api/v1/mappings/{m.id}", json={"config": {"fields": {
        "Name": {}, "Rate__c": {}, "Parcel_Count__c": {}}}})
    assert r.status_code == 200, r.get_json()
    (again,) = formula_refresh.refresh_due(db, sf)                 # saved: due at once, a formula now mapped
    assert again.fields == ["Parcel_Count__c"]


def test_a_bad_refresh_interval_is_refused_naming_it(api):
    r = api.post("/api/v1/mappings", json={"object_name": "Shipment__c", "config": {
        "fields": {"Name": {}}, "formula_refresh_minutes": "15"}})
    assert (r.status_code, r.get_json()["field"]) == (400, "config.formula_refresh_minutes")


def deliver(sf_app, emulator, db, sf, object_name, record_id):
    """The record as Salesforce holds it, in an Outbound Message (as a workflow rule would send it)."""
    (record,) = sf.query(f"SELECT Id, Name, Rate__c, SystemModstamp FROM {object_name} WHERE Id = '{record_id}'")
    body = envelope(emulator.org_id, object_name, [{k: v for k, v in record.items() if k != "attributes"}])
    assert sf_app.test_client().post(f"/outbound/{OUTBOUND_TOKEN}", data=body,
                                     content_type="text/xml").status_code == 200
    assert apply_pending(db).applied == 1


@pytest.mark.parametrize("source", ["poll", "outbound"])
def test_a_parent_changing_refreshes_only_its_childrens_formulas_without_an_echo(api, db, sf, sf_settings, sf_app,
                                                                                   emulator, source):
    ships = [sf.create_record("Shipment__c", {"Name": name, "Rate__c": 2})["id"] for name in ("S1", "S2")]
    assert all(p["success"] for p in sf.create_records("Parcel__c", [
        {"attributes": {"type": "Parcel__c"}, "Name": f"P{i}", "Weight__c": i, "Shipment__c": ships[i % 2],
         "External_Id__c": f"E{i}"} for i in (1, 2, 3)]))
    parcels = loaded(api, db, sf, "Parcel__c", PARCEL_FIELDS, upsert_field="External_Id__c")
    shipments = loaded(api, db, sf, "Shipment__c", {"Name": {}, "Rate__c": {}})
    with sf.work("formula_refresh"):
        formula_refresh.refresh(db, sf, parcels)                    # notes which parents its formulas read
    url = sf_settings.database_url
    (parents,) = sql(url, f"SELECT parents FROM forcebridge.formula_refresh WHERE mapping_id = {parcels.id}")
    assert parents == ([{"object": "Shipment__c", "lookup": "Shipment__c", "fields": ["Cost__c", "Label__c"]}],)
    before = sql(url, "SELECT sfid, systemmodstamp, _hc_lastop FROM salesforce.parcel__c ORDER BY name")

    sf.update_record("Shipment__c", ships[1], {"Name": "S2b", "Rate__c": 10})   # P1 and P3's parent
    if source == "poll":
        assert poll.poll(db, sf, shipments, force=True).changed == 1
    else:
        deliver(sf_app, emulator, db, sf, "Shipment__c", ships[1])
        assert sql(url, "SELECT rate__c FROM salesforce.shipment__c WHERE name = 'S2b'") == [(10,)]
    assert sql(url, "SELECT parent_id FROM forcebridge.formula_refresh_pending") == [(ships[1],)]
    with sf.work("formula_refresh"):
        (result,) = formula_refresh.refresh_children(db, sf)
    assert (result.mapping_id, result.checked, result.updated) == (parcels.id, 2, 2)   # P2 is not read
    assert sql(url, "SELECT name, cost__c, label__c FROM salesforce.parcel__c ORDER BY name") == [
        ("P1", 10, "P1 (S2b)"), ("P2", 4, "P2 (S1)"), ("P3", 30, "P3 (S2b)")]
    assert sql(url, "SELECT sfid, systemmodstamp, _hc_lastop FROM salesforce.parcel__c ORDER BY name") == before
    assert sql(url, "SELECT count(*) FROM forcebridge.formula_refresh_pending") == [(0,)]
    assert sql(url, "SELECT count(*) FROM forcebridge.change_capture") == [(0,)]
    assert drain(db, sf, FAST).claimed == 0                       # nothing goes back to Salesforce
    assert sql(url, "SELECT count(*) FROM forcebridge.conflicts") == [(0,)]
    assert sql(url, "SELECT targeted_checked, targeted_updated FROM forcebridge.formula_refresh "
                    f"WHERE mapping_id = {parcels.id}") == [(2, 2)]
    assert formula_refresh.refresh_children(db, sf) == []         # served: nothing waits


def parcels_under(sf, ships: list[str], first: int = 1) -> None:
    """A parcel P<i> of weight <i> under each shipment (i from `first`)."""
    assert all(p["success"] for p in sf.create_records("Parcel__c", [
        {"attributes": {"type": "Parcel__c"}, "Name": f"P{i}", "Weight__c": i, "Shipment__c": ship,
         "External_Id__c": f"E{i}"} for i, ship in enumerate(ships, first)]))


def test_a_refused_childrens_refresh_stops_no_other_and_the_full_refresh_takes_over(api, db, sf, sf_settings):
    """The task: the lookup its formulas read through was renamed since the last full refresh noted it, so
    Salesforce refuses the targeted query (INVALID_FIELD). The full refresh (a new describe) runs instead and
    serves the queue, another mapping's due refresh still runs, and the calls count as formula refreshes."""
    ship = sf.create_record("Shipment__c", {"Name": "S1", "Rate__c": 2})["id"]
    parcels_under(sf, [ship])
    parcels = loaded(api, db, sf, "Parcel__c", PARCEL_FIELDS, upsert_field="External_Id__c")
    shipments = loaded(api, db, sf, "Shipment__c", {"Name": {}, "Rate__c": {}, "Parcel_Count__c": {}})
    formula_refresh.refresh(db, sf, parcels)
    formula_refresh.refresh(db, sf, shipments)
    url = sf_settings.database_url
    sql(url, "UPDATE forcebridge.formula_refresh SET parents = jsonb_set(parents, '{0,lookup}', "
             f"'\"Old_Shipment__c\"') WHERE mapping_id = {parcels.id}")
    sf.update_record("Shipment__c", ship, {"Rate__c": 10})
    poll.poll(db, sf, shipments, force=True)
    assert sql(url, "SELECT lookup FROM forcebridge.formula_refresh_pending") == [("Old_Shipment__c",)]
    parcels_under(sf, [ship], first=2)                          # the shipment's roll-up changes
    sql(url, f"UPDATE forcebridge.formula_refresh SET next_run_at = now() WHERE mapping_id = {shipments.id}")
    task_sf = for_settings(sf_settings)
    api_usage.flush(db, task_sf)

    sync_tasks.refresh_formulas()
    assert sql(url, "SELECT name, cost__c FROM salesforce.parcel__c ORDER BY name") == [("P1", 10)]
    assert sql(url, "SELECT parcel_count__c FROM salesforce.shipment__c") == [(2,)]
    assert sql(url, "SELECT count(*) FROM forcebridge.formula_refresh_pending") == [(0,)]
    (state,) = sql(url, "SELECT parents->0->>'lookup', error, targeted_error LIKE '%%INVALID_FIELD%%' "
                        f"FROM forcebridge.formula_refresh WHERE mapping_id = {parcels.id}")
    assert state == ("Shipment__c", None, True)
    api_usage.flush(db, task_sf)
    assert sql(url, "SELECT DISTINCT kind FROM forcebridge.api_usage_hourly WHERE object_name = 'Parcel__c'") == [
        ("formula_refresh",)]


def test_the_task_makes_no_call_while_the_budget_pauses_formula_refreshes(api, db, sf, sf_settings, emulator):
    ship = sf.create_record("Shipment__c", {"Name": "S1", "Rate__c": 1})["id"]
    m = loaded(api, db, sf, "Shipment__c", {"Name": {}, "Parcel_Count__c": {}})
    parcels_under(sf, [ship])
    spend(sf_settings.database_url, 330)      # past 90% of the budget projected: formula refreshes pause
    assert budget.current_plan(db).factor("formula_refresh") is None
    emulator.admin("DELETE", "/_emulator/stats")
    sync_tasks.refresh_formulas()
    assert route_calls(emulator, "") == 0
    assert db.fetchone("formula_refresh_state", {"mapping_id": m.id}) is None


def test_a_refresh_never_writes_an_older_value_over_one_a_poll_brought_meanwhile(api, db, sf, sf_settings, emulator,
                                                                                 monkeypatch):
    ship = sf.create_record("Shipment__c", {"Name": "S1", "Rate__c": 2})["id"]
    parcels_under(sf, [ship])
    parcels = loaded(api, db, sf, "Parcel__c", PARCEL_FIELDS, upsert_field="External_Id__c")
    (parcel,) = sf.query("SELECT Id FROM Parcel__c")
    read = formula_refresh.stage_rest_query

    def read_then_a_poll(*args, **kwargs):
        read(*args, **kwargs)                                     # the refresh read Cost__c = 2
        emulator.admin("POST", "/_emulator/clock", {"advance": 1})   # stamps are to the second: a later one
        sf.update_record("Parcel__c", parcel["Id"], {"Weight__c": 5})
        assert poll.poll(db, sf, parcels, force=True).changed == 1   # Cost__c = 10 arrives before it writes
    monkeypatch.setattr(formula_refresh, "stage_rest_query", read_then_a_poll)
    assert formula_refresh.refresh(db, sf, parcels).updated == 0
    assert sql(sf_settings.database_url, "SELECT weight__c, cost__c FROM salesforce.parcel__c") == [(5, 10)]


def test_many_changed_parents_are_served_a_share_per_turn_spaced_by_the_budget(api, db, sf, sf_settings, monkeypatch):
    ships = [sf.create_record("Shipment__c", {"Name": f"S{i}", "Rate__c": 2})["id"] for i in (1, 2, 3)]
    parcels_under(sf, ships)
    parcels = loaded(api, db, sf, "Parcel__c", PARCEL_FIELDS, upsert_field="External_Id__c")
    shipments = loaded(api, db, sf, "Shipment__c", {"Name": {}, "Rate__c": {}})
    formula_refresh.refresh(db, sf, parcels)
    for ship in ships:
        sf.update_record("Shipment__c", ship, {"Rate__c": 3})
    poll.poll(db, sf, shipments, force=True)
    monkeypatch.setattr(formulas, "MAX_TARGETED_PARENTS", 2)
    (result,) = formula_refresh.refresh_children(db, sf)
    assert (result.checked, result.updated) == (2, 2)      # two parents' children, not a full refresh off schedule
    url = sf_settings.database_url
    assert sql(url, "SELECT count(*) FROM forcebridge.formula_refresh_pending") == [(1,)]
    (targeted_at,) = db.fetchone("formula_refresh_state", {"mapping_id": parcels.id})["targeted_at"],
    minute = dt.timedelta(minutes=1)
    # the budget spaces formula refreshes x3: the next targeted one comes 3 turns later, not the next minute
    assert formula_refresh.refresh_children(db, sf, factor=3, now=targeted_at + minute) == []
    (result,) = formula_refresh.refresh_children(db, sf, factor=3, now=targeted_at + 2 * minute)
    assert (result.checked, result.updated) == (1, 1)
    assert sorted(sql(url, "SELECT cost__c FROM salesforce.parcel__c")) == [(3,), (6,), (9,)]


def test_two_appliers_queuing_overlapping_parents_never_deadlock(api, db, sf, sf_settings):
    """Each applier queues in its own long transaction; the entries are taken in key order, so the second one
    waits for the first's first entry instead of holding one the first will want next."""
    ship = sf.create_record("Shipment__c", {"Name": "S1", "Rate__c": 2})["id"]
    parcels_under(sf, [ship])
    formula_refresh.refresh(db, sf, loaded(api, db, sf, "Parcel__c", PARCEL_FIELDS, upsert_field="External_Id__c"))
    ids = [f"a0S00000000000{i}AAA" for i in (1, 2, 3, 4)]
    url = sf_settings.database_url
    errors = []

    def second_applier():
        try:
            with psycopg.connect(url) as conn:
                apply.queue_formula_children(conn, "Shipment__c", ids)
        except psycopg.Error as exc:
            errors.append(exc)

    with psycopg.connect(url, row_factory=dict_row) as first:
        apply.queue_formula_children(first, "Shipment__c", ids[:1])
        thread = threading.Thread(target=second_applier)
        thread.start()
        while thread.is_alive() and not sql(url, "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                                 "AND query LIKE '%%formula_refresh_pending%%'"):
            time.sleep(0.01)                                  # the second applier waits for the first
        apply.queue_formula_children(first, "Shipment__c", ids[2:3])
    thread.join()
    assert errors == []
    assert sorted(sql(url, "SELECT parent_id FROM forcebridge.formula_refresh_pending")) == [(i,) for i in ids]
