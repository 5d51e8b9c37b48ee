"""Initial loads, the polling backstop and drift checks against the emulator over HTTPS and a real Postgres."""
from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time

import psycopg
import pytest

from core.convert import parse_datetime, utc_naive
from gateway import mapping_store
from gateway.salesforce import Salesforce
from jobs import inbound, load, poll, push
from jobs.drain import DrainOptions, drain
from tests.conftest import API_TOKEN, OUTBOUND_TOKEN
from tests.emulator_fixture import REPO, start_emulator
from tests.support.messages import envelope

ACCOUNT_FIELDS = {"Name": {}, "AccountNumber": {}, "AnnualRevenue": {}, "NumberOfEmployees": {}, "Industry": {}}
SEED_FIELDS = {"Name": "Account {n}", "AccountNumber": "AN-{n}", "AnnualRevenue": 250000, "NumberOfEmployees": 7,
               "Industry": "Energy"}


def connect(emulator, settings):
    return dataclasses.replace(
        settings, sf_instance_url=emulator.url, sf_username=emulator.username, sf_password=emulator.password,
        sf_security_token=emulator.security_token, sf_ca_bundle=str(emulator.ca_path),
        salesforce_org_id=emulator.org_id)


@pytest.fixture
def sf_settings(settings, emulator):
    emulator.reset()
    emulator.admin("DELETE", "/_emulator/stats")
    return connect(emulator, settings)


def make_app(sf_settings, enqueued):
    from webapp import create_app

    application = create_app(sf_settings, enqueue=enqueued)
    application.config["TESTING"] = True
    return application


@pytest.fixture
def sf_app(sf_settings, enqueued):
    application = make_app(sf_settings, enqueued)
    yield application
    application.extensions["forcebridge"].db.close()


@pytest.fixture
def api(sf_app):
    client = sf_app.test_client()

    class Api:
        def __getattr__(self, method):
            return lambda path, **kw: getattr(client, method)(path, headers={"Authorization": f"Bearer {API_TOKEN}"}, **kw)
    return Api()


@pytest.fixture
def db(sf_app):
    return sf_app.extensions["forcebridge"].db


@pytest.fixture
def sf(sf_settings):
    gateway = Salesforce(sf_settings, backoff=0.01)
    yield gateway
    gateway.close()


def create_mapping(api, object_name="Account", fields=ACCOUNT_FIELDS, **config):
    r = api.post("/api/v1/mappings", json={"object_name": object_name,
                                           "config": {"access": "read_only", "fields": fields, **config}})
    assert r.status_code == 201, r.get_json()
    return r.get_json()


def run_job(db, settings, response) -> dict:
    """Run the job a 202 named, as the worker would; its result."""
    from jobs import api_jobs

    done = api_jobs.run(db, settings, response.get_json()["id"])
    assert done["state"] == "done", done
    return done["result"]


def sql(url, statement, params=None):
    with psycopg.connect(url) as conn:
        cur = conn.execute(statement, params)
        return cur.fetchall() if cur.description else cur.rowcount


def seed(emulator, count, sobject="Account", fields=SEED_FIELDS):
    return emulator.admin("POST", "/_emulator/seed", {"sobject": sobject, "count": count, "fields": fields})


def route_calls(emulator, prefix, client="forcebridge") -> int:
    per_route = emulator.admin("GET", "/_emulator/stats")["perRouteClient"]
    return sum(n.get(client, 0) for route, n in per_route.items() if route.startswith(prefix))


def open_load(db, mapping_id):
    return db.fetchone("open_load", {"mapping_id": mapping_id})


def salesforce_accounts(sf) -> dict[str, dict]:
    return {r["Id"]: r for r in sf.query("SELECT Id, Name, AnnualRevenue, SystemModstamp FROM Account")}


def postgres_accounts(url) -> dict[str, tuple]:
    return {sfid: (name, revenue, stamp) for sfid, name, revenue, stamp in sql(
        url, "SELECT sfid, name, annualrevenue, systemmodstamp FROM salesforce.account")}


def assert_same_as_salesforce(url, sf):
    remote, local = salesforce_accounts(sf), postgres_accounts(url)
    assert set(local) == set(remote)
    for sfid, rec in remote.items():
        name, revenue, stamp = local[sfid]
        assert (name, float(revenue) if revenue is not None else None, stamp) == (
            rec["Name"], rec["AnnualRevenue"], utc_naive(parse_datetime(rec["SystemModstamp"]))), sfid


class Crash(BaseException):
    """Stands in for a worker killed between two pages."""


def crash_after(pages: int):
    def on_page(row):
        if row["pages"] >= pages:
            raise Crash()
    return on_page


def test_load_larger_than_one_bulk_page_lands_every_record_typed(api, db, sf, emulator, sf_settings):
    seed(emulator, 2500)
    mapping = create_mapping(api)
    row = open_load(db, mapping["id"])
    assert row["state"] == "queued" and row["requested_by"] == "mapping created"
    seen = []
    done = load.run(db, sf, row["id"], load.LoadOptions(page_size=1000, rest_max=100, on_page=seen.append))
    assert (done["state"], done["method"], done["pages"], done["loaded"], done["total"]) == ("done", "bulk", 3, 2500, 2500)
    assert [r["loaded"] for r in seen] == [1000, 2000, 2500]
    assert route_calls(emulator, "bulk2") and route_calls(emulator, "bulk2.query_results") == 3
    url = sf_settings.database_url
    assert sql(url, "SELECT count(*), count(DISTINCT sfid) FROM salesforce.account") == [(2500, 2500)]
    (one,) = sql(url, "SELECT name, accountnumber, annualrevenue, numberofemployees, industry, isdeleted, _hc_lastop "
                      "FROM salesforce.account WHERE name = 'Account 1234'")
    assert one == ("Account 1234", "AN-1234", 250000, 7, "Energy", False, "SYNCED")
    assert_same_as_salesforce(url, sf)
    # progress as the console reads it
    (shown,) = api.get(f"/api/v1/loads?mapping_id={mapping['id']}").get_json()["loads"]
    assert (shown["state"], shown["loaded"], shown["total"], shown["percent"]) == ("done", 2500, 2500, 100.0)
    # polls start from the load's snapshot
    assert db.fetchone("get_poll_state", {"mapping_id": mapping["id"]})["watermark"] is not None
    # the staging table is gone
    assert sql(url, "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'load_staging_%'") == [(0,)]


def test_small_object_loads_through_rest_paging(api, db, sf, emulator, sf_settings):
    seed(emulator, 30)
    mapping = create_mapping(api)
    done = load.run(db, sf, open_load(db, mapping["id"])["id"], load.LoadOptions())
    assert (done["state"], done["method"], done["loaded"]) == ("done", "rest", 30)
    assert route_calls(emulator, "bulk2") == 0
    assert_same_as_salesforce(sf_settings.database_url, sf)


def test_crash_mid_load_resumes_from_the_last_page(api, db, sf, emulator, sf_settings):
    seed(emulator, 5000)
    mapping = create_mapping(api)
    load_id = open_load(db, mapping["id"])["id"]
    options = load.LoadOptions(page_size=1000, rest_max=100)
    with pytest.raises(Crash):
        load.run(db, sf, load_id, dataclasses.replace(options, on_page=crash_after(2)))
    stopped = db.fetchone("get_load", {"id": load_id})
    assert (stopped["state"], stopped["pages"], stopped["loaded"]) == ("running", 2, 2000)
    assert sql(sf_settings.database_url, "SELECT count(*) FROM salesforce.account") == [(0,)]   # nothing merged yet
    # a new process: a new gateway (new login), the backstop finds the load and continues it
    fresh = Salesforce(sf_settings, backoff=0.01)
    try:
        (done,) = load.run_pending(db, fresh, options)
    finally:
        fresh.close()
    assert (done["id"], done["state"], done["pages"], done["loaded"]) == (load_id, "done", 5, 5000)
    assert done["sf_job_id"] == stopped["sf_job_id"]                        # the same query job
    assert route_calls(emulator, "bulk2.query_results") == 5                # no page fetched twice
    assert route_calls(emulator, "bulk2.create_query_job") == 1
    assert sql(sf_settings.database_url, "SELECT count(*), count(DISTINCT sfid) FROM salesforce.account") == [(5000, 5000)]


def test_loader_process_killed_mid_load_is_continued_by_the_next_one(api, db, emulator, sf_settings, tmp_path):
    seed(emulator, 5000)
    mapping = create_mapping(api)
    emulator.admin("POST", "/_emulator/faults", {"rules": {"bulk2.query_results": {"latency_ms": 150}}})
    env = dict(os.environ, DATABASE_URL=sf_settings.database_url, SF_INSTANCE_URL=emulator.url,
               SF_USERNAME=emulator.username, SF_PASSWORD=emulator.password,
               SF_SECURITY_TOKEN=emulator.security_token, SF_CA_BUNDLE=str(emulator.ca_path),
               SECRET_KEY="x", FORCEBRIDGE_INSTANCE=str(tmp_path), HUEY_URL=f"sqlite:///{tmp_path / 'h.db'}",
               LOAD_REST_MAX="100")
    loader = subprocess.Popen([sys.executable, "-m", "flask", "--app", "webapp", "sync", "load", "Account",
                               "--page-size", "500"], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            row = open_load(db, mapping["id"])
            if row["pages"] >= 3 or loader.poll() is not None:
                break
            time.sleep(0.02)
        loader.send_signal(signal.SIGKILL)
    finally:
        loader.wait()
    killed = db.fetchone("get_load", {"id": row["id"]})
    assert killed["state"] == "running" and 3 <= killed["pages"] < 10, killed
    emulator.admin("DELETE", "/_emulator/faults")
    sql(sf_settings.database_url, "UPDATE forcebridge.loads SET lease_until = now() - interval '1 second'")  # 5 min later
    fresh = Salesforce(sf_settings, backoff=0.01)
    try:
        (done,) = load.run_pending(db, fresh, load.LoadOptions(page_size=500, rest_max=100))
    finally:
        fresh.close()
    assert (done["state"], done["pages"], done["loaded"], done["sf_job_id"]) == ("done", 10, 5000, killed["sf_job_id"])
    # every page fetched once, but for the one the killed process was reading when it died
    assert route_calls(emulator, "bulk2.query_results") - 10 in (0, 1)
    assert sql(sf_settings.database_url, "SELECT count(*), count(DISTINCT sfid) FROM salesforce.account") == [(5000, 5000)]


def test_deleting_the_mapping_mid_load_stops_it_and_leaves_no_staging_table(api, db, sf, emulator, sf_settings):
    seed(emulator, 3000)
    mapping = create_mapping(api)
    delete = lambda row: api.delete(f"/api/v1/mappings/{mapping['id']}")  # noqa: E731
    assert load.run(db, sf, open_load(db, mapping["id"])["id"],
                    load.LoadOptions(page_size=1000, rest_max=100, on_page=delete)) is None
    assert sql(sf_settings.database_url, "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'load_staging_%'") == [(0,)]
    assert sql(sf_settings.database_url, "SELECT count(*) FROM forcebridge.loads") == [(0,)]


def test_a_runner_whose_lease_lapsed_stops_when_another_took_the_load_over(api, db, sf, emulator, sf_settings):
    seed(emulator, 4000)
    mapping = create_mapping(api)
    load_id = open_load(db, mapping["id"])["id"]
    options = load.LoadOptions(page_size=1000, rest_max=100)
    taken_over = []

    def stall(row):
        # the first runner stalls past its lease after page 1; the backstop hands the load to another runner
        if not taken_over:
            sql(sf_settings.database_url, "UPDATE forcebridge.loads SET lease_until = now() - interval '1 second'")
            taken_over.append(load.run(db, sf, load_id, options))

    with pytest.raises(load.LoadBusy):
        load.run(db, sf, load_id, dataclasses.replace(options, on_page=stall))
    assert taken_over[0]["state"] == "done" and taken_over[0]["loaded"] == 4000
    assert sql(sf_settings.database_url, "SELECT count(*), count(DISTINCT sfid) FROM salesforce.account") == [(4000, 4000)]


def test_a_value_postgres_refuses_fails_the_load_with_its_reason(api, db, sf, emulator, sf_settings):
    seed(emulator, 20)
    mapping = create_mapping(api, fields={"Name": {"length": 5}})         # narrower than Salesforce's names
    with pytest.raises(psycopg.errors.DataError):
        load.run(db, sf, open_load(db, mapping["id"])["id"])
    (shown,) = api.get(f"/api/v1/loads?mapping_id={mapping['id']}").get_json()["loads"]
    assert shown["state"] == "failed" and "too long" in shown["error"]
    assert sql(sf_settings.database_url, "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'load_staging_%'") == [(0,)]
    assert db.fetchall("loads_to_run") == []                                # the backstop does not retry it


def test_cli_load_shows_progress_and_resumes(sf_app, api, db, emulator, sf_settings):
    seed(emulator, 1500)
    mapping = create_mapping(api)
    result = sf_app.test_cli_runner().invoke(args=["sync", "load", "Account", "--page-size", "500"])
    assert result.exit_code == 0, result.output
    assert "done: 1,500 records loaded" in result.output
    assert "100.0%" in result.output and "rec/s" in result.output       # the bar on stderr
    assert db.fetchone("list_loads", {"mapping_id": mapping["id"], "limit": 1})["state"] == "done"


def test_reload_endpoint_queues_one_load_and_rings_the_worker(api, db, emulator, enqueued):
    mapping = create_mapping(api)
    first = api.post(f"/api/v1/mappings/{mapping['id']}/reload")
    again = api.post(f"/api/v1/mappings/{mapping['id']}/reload")
    assert first.status_code == again.status_code == 202
    assert first.get_json()["id"] == again.get_json()["id"]                  # one open load per mapping
    assert ("run_api_job", (first.get_json()["job"]["id"],)) in enqueued.calls
    assert ("mapping_ready", (mapping["id"],)) in enqueued.calls
    assert api.post("/api/v1/mappings/999/reload").status_code == 404


def om_post(client, org_id, records):
    body = envelope(org_id, "Account", records)
    r = client.post(f"/outbound/{OUTBOUND_TOKEN}", data=body, content_type="text/xml; charset=utf-8")
    assert r.status_code == 200


def test_load_while_outbound_messages_arrive_never_leaves_a_row_older_than_salesforce(
        sf_app, api, db, sf, emulator, sf_settings):
    seed(emulator, 3000)
    mapping = create_mapping(api)
    client = sf_app.test_client()
    users = emulator.salesforce(client="user")
    ids = sorted(salesforce_accounts(sf))
    dropped = []

    def users_keep_editing(row):
        # after each page: 10 records change in Salesforce; 8 Outbound Messages arrive, 2 are lost
        changed = ids[(row["pages"] - 1) * 10:row["pages"] * 10]
        for sfid in changed:
            users.Account.update(sfid, {"Name": f"edited on page {row['pages']}", "AnnualRevenue": row["pages"]})
        dropped.extend(changed[3::5])
        delivered = [sfid for sfid in changed if sfid not in dropped]
        quoted = ", ".join(f"'{i}'" for i in delivered)
        records = users.query(f"SELECT Id, Name, AnnualRevenue, SystemModstamp FROM Account WHERE Id IN ({quoted})")
        om_post(client, emulator.org_id, [{k: v for k, v in r.items() if k != "attributes"} for r in records["records"]])
        inbound.apply_pending(db)

    users_keep_editing({"pages": 1})          # before the query job: the snapshot already has these
    done = load.run(db, sf, open_load(db, mapping["id"])["id"],
                    load.LoadOptions(page_size=1000, rest_max=100, on_page=users_keep_editing))
    assert done["state"] == "done" and done["pages"] == 3
    remote, local = salesforce_accounts(sf), postgres_accounts(sf_settings.database_url)
    assert len(local) == 3000
    for sfid, rec in remote.items():
        stamp = local[sfid][2]
        assert stamp <= utc_naive(parse_datetime(rec["SystemModstamp"]))             # never ahead ...
        if sfid not in dropped:                                             # ... and never behind
            assert (local[sfid][0], stamp) == (rec["Name"], utc_naive(parse_datetime(rec["SystemModstamp"]))), sfid
    # what no message brought, the poll brings
    result = poll.poll(db, sf, mapping_store.get(db, mapping["id"]), force=True)
    assert result.changed >= len(set(dropped) - set(ids[:10])) and not result.failed
    assert_same_as_salesforce(sf_settings.database_url, sf)


def loaded_mapping(api, db, sf, emulator, count=50, **config):
    seed(emulator, count)
    mapping = create_mapping(api, **config)
    load.run(db, sf, open_load(db, mapping["id"])["id"])
    return mapping_store.get(db, mapping["id"])


def test_poll_brings_changes_and_hard_deletes_in_one_call(api, db, sf, emulator, sf_settings):
    m = loaded_mapping(api, db, sf, emulator)
    users = emulator.salesforce(client="user")
    ids = sorted(salesforce_accounts(sf))
    for sfid in ids[:5]:
        users.Account.delete(sfid)
    for sfid in ids[5:8]:
        users.Account.update(sfid, {"Name": "changed in Salesforce"})
    created = users.Account.create({"Name": "born after the load"})["id"]
    emulator.admin("DELETE", "/_emulator/stats")
    result = poll.poll(db, sf, m, force=True)
    assert (result.changed, result.deleted, result.api_calls) == (4, 5, 1)     # queryAll: one call for all
    assert route_calls(emulator, "") == 1
    url = sf_settings.database_url
    assert sql(url, "SELECT count(*) FROM salesforce.account") == [(46,)]
    assert sql(url, "SELECT count(*) FROM salesforce.account WHERE sfid = ANY(%s)", (ids[:5],)) == [(0,)]
    assert sql(url, "SELECT name FROM salesforce.account WHERE sfid = %s", (created,)) == [("born after the load",)]
    assert_same_as_salesforce(url, sf)
    state = api.get("/api/v1/polls").get_json()["polls"][0]
    assert (state["last_changed"], state["last_deleted"], state["last_api_calls"], state["interval_seconds"]) == (
        4, 5, 1, 600)
    assert state["api_used"] is not None and state["api_limit"] is not None
    # nothing new: the next poll changes nothing and still costs one call
    again = poll.poll(db, sf, m, force=True)
    assert (again.deleted, again.api_calls) == (0, 1) and not again.failed
    stats = {(b["outcome"]): b["count"] for b in api.get(f"/api/v1/stats/hourly?mapping_id={m.id}").get_json()["buckets"]}
    assert stats["deleted"] == 5 and stats["poll_api_calls"] == 2


def test_a_poll_with_many_changes_goes_through_one_bulk_job(api, db, sf, emulator, sf_settings):
    m = loaded_mapping(api, db, sf, emulator, count=2200)
    users = emulator.salesforce(client="user")
    ids = sorted(salesforce_accounts(sf))
    users.bulk2.Account.update(records=[{"Id": i, "Name": "mass update"} for i in ids[:2100]])
    for sfid in ids[2100:2103]:
        users.Account.delete(sfid)
    before = route_calls(emulator, "bulk2.create_query_job")
    result = poll.poll(db, sf, m, force=True, bulk_above=1000)       # more than one REST page of changes
    assert route_calls(emulator, "bulk2.create_query_job") - before == 1
    assert (result.changed, result.deleted) == (2100, 3) and not result.failed
    url = sf_settings.database_url
    assert sql(url, "SELECT count(*) FROM salesforce.account WHERE name = 'mass update'") == [(2100,)]
    assert sql(url, "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'poll_staging_%'") == [(0,)]
    assert_same_as_salesforce(url, sf)
    assert poll.poll(db, sf, m, force=True, bulk_above=1000).changed == 0      # nothing new


def test_poll_can_keep_deleted_rows_and_use_get_deleted(api, db, sf, emulator, sf_settings):
    m = loaded_mapping(api, db, sf, emulator, sf_delete_detection="getDeleted", keep_deleted_rows=True,
                       sf_polling_seconds=30)
    users = emulator.salesforce(client="user")
    ids = sorted(salesforce_accounts(sf))
    for sfid in ids[:3]:
        users.Account.delete(sfid)
    result = poll.poll(db, sf, m)
    assert (result.deleted, result.api_calls) == (3, 2)          # a query, then getDeleted
    assert route_calls(emulator, "rest.sobject_deleted") == 1
    url = sf_settings.database_url
    assert sql(url, "SELECT count(*) FROM salesforce.account WHERE isdeleted") == [(3,)]
    assert sql(url, "SELECT count(*) FROM salesforce.account") == [(50,)]
    state = db.fetchone("get_poll_state", {"mapping_id": m.id})
    assert (state["next_poll_at"] - state["last_polled_at"]).total_seconds() == pytest.approx(60, abs=1)  # at least a minute


def test_poll_due_respects_interval_and_off(api, db, sf, emulator, sf_settings):
    on = loaded_mapping(api, db, sf, emulator, count=5)
    off = create_mapping(api, "Contact", {"LastName": {}}, sf_polling_seconds=0)
    load.run(db, sf, open_load(db, off["id"])["id"])
    first = {r.mapping_id: r for r in poll.poll_due(db, sf)}
    assert first[on.id].skipped is None and first[off["id"]].skipped == "polling is off"
    assert poll.poll_due(db, sf) == []                         # not due again for ten minutes


def test_outbound_message_dropped_after_24_hours_is_caught_by_the_poll(settings, enqueued, tmp_path):
    with start_emulator(tmp_path / "org", "--time-scale", "40000", "--session-seconds", "100000000") as fast:
        sf_settings = connect(fast, settings)
        app = make_app(sf_settings, enqueued)
        db = app.extensions["forcebridge"].db
        sf = Salesforce(sf_settings, backoff=0.01)
        try:
            api = app.test_client()
            auth = {"Authorization": f"Bearer {API_TOKEN}"}
            r = api.post("/api/v1/mappings", headers=auth, json={
                "object_name": "Account", "config": {"access": "read_only", "fields": {"Name": {}}}})
            mapping_id = r.get_json()["id"]
            users = fast.salesforce(client="user")
            sfid = users.Account.create({"Name": "before"})["id"]
            load.run(db, sf, open_load(db, mapping_id)["id"])
            # Salesforce tries to deliver to an endpoint that never answers, for 24 (emulated) hours
            fast.admin("POST", "/_emulator/outbound/rules", {"object": "Account", "fields": ["Name"],
                                                             "endpoint_url": "http://127.0.0.1:9/outbound"})
            users.Account.update(sfid, {"Name": "after"})
            for _ in range(400):
                status = fast.admin("GET", "/_emulator/outbound/status")
                if status["dropped"]:
                    break
                time.sleep(0.05)
            assert (status["dropped"], status["acked"]) == (1, 0) and status["retries"] > 5
            assert sql(settings.database_url, "SELECT name FROM salesforce.account") == [("before",)]
            result = poll.poll(db, sf, mapping_store.get(db, mapping_id), force=True)
            assert result.changed == 1
            assert sql(settings.database_url, "SELECT name FROM salesforce.account") == [("after",)]
        finally:
            sf.close()
            db.close()


def test_deletes_older_than_get_deleted_keeps_come_from_the_whole_recycle_bin_once(settings, enqueued, tmp_path):
    with start_emulator(tmp_path / "org", "--session-seconds", "100000000") as org:
        sf_settings = connect(org, settings)
        app = make_app(sf_settings, enqueued)
        db = app.extensions["forcebridge"].db
        sf = Salesforce(sf_settings, backoff=0.01)
        try:
            seed(org, 2100)
            auth = {"Authorization": f"Bearer {API_TOKEN}"}
            r = app.test_client().post("/api/v1/mappings", headers=auth, json={"object_name": "Account", "config": {
                "access": "read_only", "fields": ACCOUNT_FIELDS, "sf_delete_detection": "getDeleted"}})
            m = mapping_store.get(db, r.get_json()["id"])
            load.run(db, sf, open_load(db, m.id)["id"])
            users = org.salesforce(client="user")
            ids = sorted(salesforce_accounts(sf))
            users.bulk2.Account.delete(records=[{"Id": i} for i in ids[:2050]])      # more than one page
            org.admin("POST", "/_emulator/clock", {"advance": 31 * 24 * 3600})       # the worker was down a month
            first = poll.poll(db, sf, m, force=True)
            assert (first.deleted, first.api_calls) == (2050, 4)   # changes, getDeleted refused, two bin pages
            assert sql(settings.database_url, "SELECT count(*) FROM salesforce.account") == [(50,)]
            users.Account.delete(ids[2050])
            assert poll.poll(db, sf, m, force=True).deleted == 1
            # the bin's watermark moved up to that delete, which getDeleted's window covers again
            users.Account.delete(ids[2051])
            third = poll.poll(db, sf, m, force=True)
            assert (third.deleted, third.api_calls) == (1, 2)      # changes, getDeleted
            assert sql(settings.database_url, "SELECT count(*) FROM salesforce.account") == [(48,)]
        finally:
            sf.close()
            db.close()


def test_drift_introduced_by_hand_is_reported_and_repaired(api, sf_app, db, sf, emulator, sf_settings):
    m = loaded_mapping(api, db, sf, emulator, count=40)
    url = sf_settings.database_url
    ids = sorted(salesforce_accounts(sf))
    users = emulator.salesforce(client="user")
    with psycopg.connect(url) as conn:
        conn.execute("SELECT set_config('forcebridge.origin', 'salesforce', true)")
        conn.execute("DELETE FROM salesforce.account WHERE sfid = ANY(%s)", (ids[:2],))               # lost rows
        conn.execute("UPDATE salesforce.account SET name = 'wrong', systemmodstamp = systemmodstamp - interval '1 day' "
                     "WHERE sfid = ANY(%s)", (ids[2:4],))                                             # stale rows
        conn.execute("INSERT INTO salesforce.account (sfid, name, systemmodstamp) VALUES "
                     "('001000000000000AAA', 'ghost', now())")                                       # never existed
    users.Account.delete(ids[4])                                                                      # deleted, not polled
    r = api.post(f"/api/v1/mappings/{m.id}/reconcile")
    assert r.status_code == 202, r.get_json()
    report = run_job(db, sf_settings, r)
    assert (report["salesforce_records"], report["postgres_rows"]) == (39, 39)
    assert (report["missing_in_postgres"], report["older_in_postgres"], report["deleted_in_salesforce"]) == (2, 2, 2)
    assert sorted(report["samples"]["missing"]) == ids[:2] and sorted(report["samples"]["stale"]) == ids[2:4]
    assert sorted(report["samples"]["extra"]) == sorted(["001000000000000AAA", ids[4]])
    assert not report["in_sync"] and report["repaired"] is None
    assert sql(url, "SELECT count(*) FROM salesforce.account") == [(39,)]                              # a check changes nothing

    repaired = run_job(db, sf_settings, api.post(f"/api/v1/mappings/{m.id}/reconcile", json={"repair": True}))
    assert repaired["repaired"] == {"requested": 6, "written": 4, "deleted": 2, "failed": 0}
    assert_same_as_salesforce(url, sf)
    cli = sf_app.test_cli_runner().invoke(args=["sync", "reconcile", "Account"])
    assert cli.exit_code == 0 and "in sync" in cli.output, cli.output
    assert [r["in_sync"] for r in api.get(f"/api/v1/drift?mapping_id={m.id}").get_json()["reports"]] == [True, False, False]


INVOICE_FIELDS = {"Name": {}, "Amount__c": {}, "External_Id__c": {}}


def table_with_rows(url, count):
    sql(url, "CREATE SCHEMA IF NOT EXISTS salesforce")
    sql(url, "CREATE TABLE salesforce.invoice__c (id serial PRIMARY KEY, sfid varchar(18) UNIQUE, "
             "systemmodstamp timestamptz, isdeleted boolean, _hc_lastop varchar(32), _hc_err text, "
             "name varchar(80), amount__c numeric, external_id__c varchar(255))")
    sql(url, "INSERT INTO salesforce.invoice__c (name, amount__c) SELECT 'existing ' || g, g FROM generate_series(1, %s) g",
        (count,))


def writing(api, **config):
    r = api.post("/api/v1/mappings", json={"object_name": "Invoice__c", "direction": "pg_to_sf",
                                           "config": {"access": "read_write", "fields": INVOICE_FIELDS, **config}})
    assert r.status_code == 201, r.get_json()
    return r.get_json()


def test_initial_push_of_many_rows_goes_through_bulk_ingest(api, db, sf, emulator, sf_settings):
    url = sf_settings.database_url
    table_with_rows(url, 450)
    mapping = writing(api, upsert_field="External_Id__c")
    assert sql(url, "SELECT op, state, count(*) FROM forcebridge.change_log GROUP BY 1, 2") == [("insert", "NEW", 450)]
    result = push.initial_push(db, sf, mapping_store.get(db, mapping["id"]), push.PushOptions(bulk_threshold=100))
    assert result["bulk_jobs"] == 1 and result["outcomes"] == {"SUCCESS": 450}
    assert route_calls(emulator, "composite") == 0 and route_calls(emulator, "bulk2.create_ingest_job") == 1
    remote = {r["External_Id__c"]: r for r in sf.query("SELECT Id, Name, Amount__c, External_Id__c FROM Invoice__c")}
    rows = sql(url, "SELECT sfid, external_id__c, name, amount__c, _hc_lastop FROM salesforce.invoice__c")
    assert len(remote) == len(rows) == 450
    for sfid, ext, name, amount, lastop in rows:
        assert (remote[ext]["Id"], remote[ext]["Name"], remote[ext]["Amount__c"], lastop) == (sfid, name, amount, "INSERTED")
    assert sql(url, "SELECT state, count(*) FROM forcebridge.change_log GROUP BY 1") == [("SUCCESS", 450)]
    # idempotent: nothing left to push
    assert push.initial_push(db, sf, mapping_store.get(db, mapping["id"]))["queued"] == 0


def test_initial_push_of_few_rows_goes_through_the_drain(api, db, sf, emulator, sf_settings):
    url = sf_settings.database_url
    table_with_rows(url, 20)
    mapping = writing(api)
    result = push.initial_push(db, sf, mapping_store.get(db, mapping["id"]))
    assert result == {"queued": 0, "waiting": 20, "bulk_jobs": 0, "outcomes": {}}     # logged when the mapping was made
    assert drain(db, sf, DrainOptions(retry_base_seconds=0)).outcomes == {"SUCCESS": 20}
    assert sql(url, "SELECT count(*) FROM salesforce.invoice__c WHERE sfid IS NOT NULL") == [(20,)]
    assert len(sf.query("SELECT Id FROM Invoice__c")) == 20


def test_worker_tasks_load_a_new_mapping_and_poll_it_when_due(api, db, sf, emulator, sf_settings):
    from jobs import runtime, sync_tasks

    seed(emulator, 40)
    mapping = create_mapping(api, sf_polling_seconds=60)
    runtime.configure(sf_settings, db)
    sync_tasks.mapping_ready(mapping["id"])                                  # what POST /mappings rings
    assert sql(sf_settings.database_url, "SELECT count(*) FROM salesforce.account") == [(40,)]
    users = emulator.salesforce(client="user")
    users.Account.delete(sorted(salesforce_accounts(sf))[0])
    sync_tasks.poll_backstop()                                               # due at once after the load
    assert sql(sf_settings.database_url, "SELECT count(*) FROM salesforce.account") == [(39,)]
    sync_tasks.poll_backstop()                                               # not due again for a minute
    assert db.fetchone("get_poll_state", {"mapping_id": mapping["id"]})["api_calls_total"] == 1
    assert sync_tasks.run_loads() == []                                      # nothing left to load


def test_a_poll_keeps_an_app_change_that_no_drain_has_moved_into_the_log(api, db, sf, emulator, sf_settings):
    """The app's change is still in change_capture when the poll brings Salesforce's change of the same record:
    it is moved into the change log first, so the conflict is seen and settled by the mapping's rule instead of
    the poll overwriting the app's value (the rule here is postgres_wins: the shared emulator's clock may run
    ahead of ours after other tests, so timestamps must not decide)."""
    seed(emulator, 5)
    r = api.post("/api/v1/mappings", json={"object_name": "Account", "direction": "bidirectional",
                                           "conflict_rule": "postgres_wins",
                                           "config": {"access": "read_write", "fields": ACCOUNT_FIELDS}})
    assert r.status_code == 201, r.get_json()
    load.run(db, sf, open_load(db, r.get_json()["id"])["id"])
    m = mapping_store.get(db, r.get_json()["id"])
    url = sf_settings.database_url
    sfid = sorted(salesforce_accounts(sf))[0]
    sql(url, "UPDATE salesforce.account SET name = 'changed by the app' WHERE sfid = %s", (sfid,))
    emulator.salesforce(client="user").Account.update(sfid, {"Name": "changed in Salesforce"})
    poll.poll(db, sf, m, force=True)
    assert sql(url, "SELECT name, _hc_lastop FROM salesforce.account WHERE sfid = %s", (sfid,)) == [
        ("changed by the app", "PENDING")]
    assert sql(url, "SELECT winner FROM forcebridge.conflicts") == [("postgres",)]
    assert sql(url, "SELECT op, state FROM forcebridge.change_log") == [("update", "NEW")]


def test_a_reload_does_not_bring_back_a_record_a_poll_saw_deleted_after_its_snapshot(api, db, sf, emulator,
                                                                                       sf_settings):
    """The reload's snapshot still holds the record; the poll deleted its row (and remembered the delete) before
    the merge: the merge must not insert the older state again (no later poll would ever see the delete)."""
    m = loaded_mapping(api, db, sf, emulator, count=50)
    reload_id = load.request(db, m.id, "api")["id"]
    options = load.LoadOptions(page_size=20, rest_max=10)
    with pytest.raises(Crash):                 # every page staged, the merge not run yet
        load.run(db, sf, reload_id, dataclasses.replace(options, on_page=crash_after(3)))
    gone = sorted(salesforce_accounts(sf))[0]
    emulator.salesforce(client="user").Account.delete(gone)
    assert poll.poll(db, sf, m, force=True).deleted == 1
    url = sf_settings.database_url
    assert sql(url, "SELECT count(*) FROM salesforce.account WHERE sfid = %s", (gone,)) == [(0,)]
    done = load.run(db, sf, reload_id, options)
    assert (done["state"], done["loaded"]) == ("done", 50)
    assert sql(url, "SELECT count(*) FROM salesforce.account WHERE sfid = %s", (gone,)) == [(0,)]
    assert_same_as_salesforce(url, sf)


def test_a_drift_repair_of_rows_whose_sfid_is_no_salesforce_id_treats_them_as_gone(api, db, sf, emulator,
                                                                                   sf_settings):
    """Ids that cannot be Salesforce Ids (a quote, a dash, too short) are never sent in a query (Salesforce
    refuses the whole query for one of them) nor silently left out: those rows are not in Salesforce."""
    m = loaded_mapping(api, db, sf, emulator, count=10)
    url = sf_settings.database_url
    ids = sorted(salesforce_accounts(sf))
    with psycopg.connect(url) as conn:
        conn.execute("SELECT set_config('forcebridge.origin', 'salesforce', true)")
        conn.execute("DELETE FROM salesforce.account WHERE sfid = %s", (ids[0],))                    # lost row
        conn.execute("INSERT INTO salesforce.account (sfid, name, systemmodstamp) VALUES "
                     "('abc', 'short', now()), ('001''x-y', 'quoted', now())")                       # not ids
    repaired = run_job(db, sf_settings, api.post(f"/api/v1/mappings/{m.id}/reconcile", json={"repair": True}))
    assert repaired["repaired"] == {"requested": 3, "written": 1, "deleted": 2, "failed": 0}, repaired
    assert_same_as_salesforce(url, sf)


def test_a_late_outbound_message_does_not_bring_back_a_record_a_bulk_poll_deleted(sf_app, api, db, sf, emulator,
                                                                                  sf_settings):
    """A poll through a Bulk job remembers the deletes it applies, as a poll through REST pages does."""
    m = loaded_mapping(api, db, sf, emulator, count=2100)
    users = emulator.salesforce(client="user")
    before = salesforce_accounts(sf)
    ids = sorted(before)
    users.bulk2.Account.update(records=[{"Id": i, "Name": "mass update"} for i in ids[:2050]])
    gone = ids[-1]
    users.Account.delete(gone)
    result = poll.poll(db, sf, m, force=True, bulk_above=1000)
    assert (result.changed, result.deleted) == (2050, 1)
    late = {k: v for k, v in before[gone].items() if k != "attributes"}        # built before the delete
    om_post(sf_app.test_client(), emulator.org_id, [late])
    inbound.apply_pending(db)
    url = sf_settings.database_url
    assert sql(url, "SELECT count(*) FROM salesforce.account WHERE sfid = %s", (gone,)) == [(0,)]
    assert_same_as_salesforce(url, sf)
