"""Postgres -> Salesforce end to end: real Postgres, the emulator over HTTPS, the drain run by hand."""
from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time

import psycopg
import pytest

from gateway.salesforce import Salesforce
from jobs.drain import DrainOptions, drain
from tests.emulator_fixture import REPO as ROOT_DIR
from tests.integration.test_capture import sql, writing_mapping
from tests.support.postgres import move_captured_changes

FIELDS = {"Name": {}, "Amount__c": {}, "Status__c": {}, "External_Id__c": {}}
FAST = DrainOptions(retry_base_seconds=0, lease_seconds=60)


@pytest.fixture
def sf_settings(settings, emulator):
    emulator.reset()
    emulator.admin("DELETE", "/_emulator/stats")
    return dataclasses.replace(
        settings, sf_instance_url=emulator.url, sf_username=emulator.username, sf_password=emulator.password,
        sf_security_token=emulator.security_token, sf_ca_bundle=str(emulator.ca_path),
        salesforce_org_id=emulator.org_id)


@pytest.fixture
def sf_app(sf_settings, enqueued):
    from webapp import create_app

    application = create_app(sf_settings, enqueue=enqueued)
    yield application
    application.extensions["forcebridge"].db.close()


@pytest.fixture
def sf_api(sf_app):
    from tests.conftest import API_TOKEN

    client = sf_app.test_client()

    class Api:
        def __getattr__(self, method):
            return lambda path, **kw: getattr(client, method)(
                path, headers={"Authorization": f"Bearer {API_TOKEN}"}, **kw)
    return Api()


@pytest.fixture
def sf(sf_settings):
    gateway = Salesforce(sf_settings, backoff=0.01)
    yield gateway
    gateway.close()


@pytest.fixture
def db(sf_app):
    return sf_app.extensions["forcebridge"].db


def invoices(sf) -> dict[str, dict]:
    """Salesforce's Invoice__c records by external id."""
    return {r["External_Id__c"]: r for r in sf.query(
        "SELECT Id, Name, Amount__c, Status__c, External_Id__c FROM Invoice__c")}


def collection_calls(emulator) -> int:
    """Our API calls that write: Collections calls, and /composite calls carrying several Collections requests."""
    per_route = emulator.admin("GET", "/_emulator/stats")["perRouteClient"]
    return sum(n.get("forcebridge", 0) for route, n in per_route.items()
               if route.startswith("composite.collection") or route == "composite.composite")


def test_inserts_updates_deletes_in_batches_of_200(sf_api, sf_settings, db, sf, emulator):
    writing_mapping(sf_api, fields=FIELDS, direction="bidirectional", upsert_field="External_Id__c")
    url = sf_settings.database_url
    sql(url, "INSERT INTO salesforce.invoice__c (name, amount__c) SELECT 'inv ' || g, g FROM generate_series(1, 450) g")
    result = drain(db, sf, FAST)
    assert result.outcomes == {"SUCCESS": 450} and collection_calls(emulator) == 1   # 200 + 200 + 50: one call
    rows = sql(url, "SELECT external_id__c, sfid, name, amount__c, _hc_lastop FROM salesforce.invoice__c")
    remote = invoices(sf)
    assert len(remote) == 450
    for ext, sfid, name, amount, lastop in rows:
        assert (remote[ext]["Id"], remote[ext]["Name"], remote[ext]["Amount__c"], lastop) == (sfid, name, amount, "INSERTED")

    sql(url, "UPDATE salesforce.invoice__c SET amount__c = amount__c * 10 WHERE id <= 250")
    sql(url, "DELETE FROM salesforce.invoice__c WHERE id > 440")
    assert drain(db, sf, FAST).outcomes == {"SUCCESS": 260}
    assert collection_calls(emulator) == 1 + 1              # 250 updates in two requests, 10 deletes in one
    remote = invoices(sf)
    assert len(remote) == 440
    for ext, amount in sql(url, "SELECT external_id__c, amount__c FROM salesforce.invoice__c"):
        assert remote[ext]["Amount__c"] == amount
    assert drain(db, sf, FAST).claimed == 0 and collection_calls(emulator) == 2   # idle: no calls


def test_changes_to_one_record_coalesce(sf_api, sf_settings, db, sf, emulator):
    writing_mapping(sf_api, fields=FIELDS, upsert_field="External_Id__c")
    url = sf_settings.database_url
    sql(url, "INSERT INTO salesforce.invoice__c (name, amount__c, external_id__c) VALUES ('c', 1, 'C')")
    drain(db, sf, FAST)
    sql(url, "INSERT INTO salesforce.invoice__c (name, amount__c, external_id__c) VALUES ('a', 1, 'A'), ('b', 1, 'B')")
    sql(url, "UPDATE salesforce.invoice__c SET name = 'a2' WHERE external_id__c = 'A'")
    sql(url, "UPDATE salesforce.invoice__c SET amount__c = 2 WHERE external_id__c = 'A'")
    sql(url, "DELETE FROM salesforce.invoice__c WHERE external_id__c = 'B'")
    sql(url, "UPDATE salesforce.invoice__c SET name = 'c2' WHERE external_id__c = 'C'")
    sql(url, "UPDATE salesforce.invoice__c SET amount__c = 3 WHERE external_id__c = 'C'")
    before = collection_calls(emulator)
    result = drain(db, sf, FAST)
    assert collection_calls(emulator) - before == 1          # one upsert (A), one update (C): one call; B never left
    assert result.outcomes == {"SUCCESS": 2, "MERGED": 1}                    # per record
    assert sql(url, "SELECT state, count(*) FROM forcebridge.change_log GROUP BY 1 ORDER BY 1") == [
        ("MERGED", 5), ("SUCCESS", 3)]                                        # per log entry
    remote = invoices(sf)
    assert set(remote) == {"A", "C"}
    assert (remote["A"]["Name"], remote["A"]["Amount__c"]) == ("a2", 2)
    assert (remote["C"]["Name"], remote["C"]["Amount__c"]) == ("c2", 3)


def test_failed_record_shows_why_is_fixed_then_retried_or_ignored(sf_api, sf_settings, db, sf):
    writing_mapping(sf_api, fields=FIELDS, upsert_field="External_Id__c")
    url = sf_settings.database_url
    sql(url, "INSERT INTO salesforce.invoice__c (name, status__c, external_id__c) "
             "VALUES ('ok', 'Draft', 'OK'), ('bad', 'Bogus', 'BAD'), ('bad2', 'Nope', 'BAD2')")
    assert drain(db, sf, FAST).outcomes == {"SUCCESS": 1, "FAILED": 2}
    lastop, err = sql(url, "SELECT _hc_lastop, _hc_err FROM salesforce.invoice__c WHERE name = 'bad'")[0]
    assert lastop == "FAILED" and "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST" in err
    listed = sf_api.get("/api/v1/errors").get_json()["errors"]
    assert {e["external_id"] for e in listed} == {"BAD", "BAD2"}
    assert listed[0]["error"][0]["statusCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"

    sql(url, "UPDATE salesforce.invoice__c SET status__c = 'Paid' WHERE name = 'bad'")    # fixed in Postgres
    assert drain(db, sf, FAST).outcomes == {"SUCCESS": 1}
    assert invoices(sf)["BAD"]["Status__c"] == "Paid"
    # its insert never reached Salesforce: this write inserted it (Heroku Connect's mark)
    assert sql(url, "SELECT _hc_lastop, _hc_err FROM salesforce.invoice__c WHERE name = 'bad'") == [("INSERTED", None)]

    bad2 = next(e["id"] for e in listed if e["external_id"] == "BAD2")
    sql(url, "UPDATE salesforce.invoice__c SET status__c = 'Sent' WHERE name = 'bad2'", origin="salesforce")
    assert sf_api.post(f"/api/v1/errors/{bad2}/retry").status_code == 200   # fixed by hand, retried
    assert drain(db, sf, FAST).outcomes == {"SUCCESS": 1}
    assert invoices(sf)["BAD2"]["Status__c"] == "Sent"
    assert sf_api.post(f"/api/v1/errors/{bad2}/retry").status_code == 409   # it is not failed any more
    assert sf_api.post("/api/v1/errors/999999/ignore").status_code == 404

    sql(url, "INSERT INTO salesforce.invoice__c (name, status__c, external_id__c) VALUES ('x', 'Bogus', 'X')")
    drain(db, sf, FAST)
    (failed,) = sf_api.get("/api/v1/errors").get_json()["errors"]
    assert sf_api.post(f"/api/v1/errors/{failed['id']}/ignore").get_json()["state"] == "IGNORED"
    assert sf_api.get("/api/v1/errors").get_json()["errors"] == []


def test_transient_faults_and_expired_sessions_are_recovered(sf_api, sf_settings, db, sf, emulator):
    writing_mapping(sf_api, fields=FIELDS, upsert_field="External_Id__c")
    url = sf_settings.database_url
    sql(url, "INSERT INTO salesforce.invoice__c (name) VALUES ('warm-up')")
    drain(db, sf, FAST)                                       # logged in
    emulator.admin("POST", "/_emulator/faults", {"seed": 4, "rules": {"composite.*": {
        "errors": {"503": 0.3, "UNABLE_TO_LOCK_ROW": 0.2, "REQUEST_LIMIT_EXCEEDED": 0.1},
        "record_errors": {"UNABLE_TO_LOCK_ROW": 0.1}}}})
    emulator.admin("POST", "/_emulator/sessions/expire")
    sql(url, "INSERT INTO salesforce.invoice__c (name, amount__c) SELECT 'inv ' || g, g FROM generate_series(1, 600) g")
    sql(url, "UPDATE salesforce.invoice__c SET amount__c = -amount__c WHERE id % 7 = 0")
    outcomes = drain(db, sf, FAST).outcomes
    assert outcomes["REQUEUED"] > 0 and "FAILED" not in outcomes   # the faults did happen, nothing dropped
    emulator.admin("DELETE", "/_emulator/faults")
    drain(db, sf, FAST)
    assert sql(url, "SELECT count(*) FROM forcebridge.change_log WHERE state NOT IN ('SUCCESS', 'MERGED')") == [(0,)]
    remote = invoices(sf)
    assert len(remote) == 601                                # retried inserts created no twins
    for ext, amount in sql(url, "SELECT external_id__c, amount__c FROM salesforce.invoice__c"):
        assert remote[ext]["Amount__c"] == amount


KILLED_DRAIN = """
import dataclasses, sys
from gateway.db import Database
from gateway.salesforce import Salesforce
from jobs.drain import DrainOptions, drain
from settings import Settings
s = Settings.from_env(database_url=sys.argv[1], sf_instance_url=sys.argv[2], sf_username=sys.argv[3],
                      sf_password=sys.argv[4], sf_security_token=sys.argv[5], sf_ca_bundle=sys.argv[6])
drain(Database(s.database_url), Salesforce(s), DrainOptions(concurrency=1, lease_seconds=1, bundle=1))
"""


def test_worker_killed_mid_batch_loses_nothing_and_duplicates_nothing(sf_api, sf_settings, db, sf, emulator):
    writing_mapping(sf_api, fields=FIELDS, upsert_field="External_Id__c")
    url = sf_settings.database_url
    sql(url, "INSERT INTO salesforce.invoice__c (name, amount__c) SELECT 'inv ' || g, g FROM generate_series(1, 1000) g")
    emulator.admin("POST", "/_emulator/faults", {"rules": {"composite.*": {"latency_ms": 300}}})
    s = sf_settings
    worker = subprocess.Popen([sys.executable, "-c", KILLED_DRAIN, url, s.sf_instance_url, s.sf_username,
                               s.sf_password, s.sf_security_token, s.sf_ca_bundle], cwd=ROOT_DIR,
                              env={**os.environ, "PYTHONPATH": str(ROOT_DIR)})
    try:
        deadline = time.monotonic() + 60
        while collection_calls(emulator) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        # the second call is in flight (or its answer not yet written back): kill it now
        worker.send_signal(signal.SIGKILL)
    finally:
        worker.wait()
    assert worker.returncode == -signal.SIGKILL
    emulator.admin("DELETE", "/_emulator/faults")
    done = sql(url, "SELECT count(*) FROM forcebridge.change_log WHERE state = 'SUCCESS'")[0][0]
    assert done < 1000                                     # it really died mid-way
    deadline = time.monotonic() + 30
    while sql(url, "SELECT count(*) FROM forcebridge.change_log WHERE state <> 'SUCCESS'")[0][0] and \
            time.monotonic() < deadline:
        drain(db, sf, FAST)                                # claims again once the dead worker's lease ends
        time.sleep(0.2)
    remote = invoices(sf)
    assert len(remote) == 1000 and len(sf.query("SELECT Id FROM Invoice__c")) == 1000
    for ext, sfid, lastop in sql(url, "SELECT external_id__c, sfid, _hc_lastop FROM salesforce.invoice__c"):
        assert (remote[ext]["Id"], lastop) == (sfid, "INSERTED")


def test_delete_of_a_record_whose_sfid_never_came_back_finds_it_by_external_id(sf_api, sf_settings, db, sf):
    writing_mapping(sf_api, fields=FIELDS, upsert_field="External_Id__c")
    url = sf_settings.database_url
    sql(url, "INSERT INTO salesforce.invoice__c (name, external_id__c) VALUES ('lost', 'LOST')")
    # the insert reached Salesforce, then the worker died before it wrote the sfid back
    sf.upsert_records("Invoice__c", "External_Id__c", [{"Name": "lost", "External_Id__c": "LOST"}])
    move_captured_changes(url)
    sql(url, "UPDATE forcebridge.change_log SET attempts = 1, state = 'REQUEUED', next_attempt_at = now()")
    sql(url, "DELETE FROM salesforce.invoice__c")
    assert drain(db, sf, FAST).outcomes == {"SUCCESS": 1}
    assert invoices(sf) == {}


def test_session_expiring_mid_drain_costs_one_login_and_no_retry(sf_api, sf_settings, db, sf, emulator):
    writing_mapping(sf_api, fields=FIELDS, upsert_field="External_Id__c")
    url = sf_settings.database_url
    sql(url, "INSERT INTO salesforce.invoice__c (name, amount__c) SELECT 'inv ' || g, g FROM generate_series(1, 1000) g")
    emulator.admin("POST", "/_emulator/faults", {"rules": {"composite.*": {"latency_ms": 150}}})
    expired = threading.Event()

    def expire_after_the_second_call():
        deadline = time.monotonic() + 30
        while collection_calls(emulator) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        emulator.admin("POST", "/_emulator/sessions/expire")
        expired.set()

    watcher = threading.Thread(target=expire_after_the_second_call)
    watcher.start()
    result = drain(db, sf, dataclasses.replace(FAST, concurrency=1, bundle=1))
    watcher.join()
    assert expired.is_set() and result.outcomes == {"SUCCESS": 1000} and result.calls == 5
    assert sf.logins == 2                                  # the first one and exactly one more
    assert len(invoices(sf)) == 1000


def test_a_delete_whose_sfid_never_came_back_finds_the_record_by_its_external_id(sf_api, sf_settings, db, sf,
                                                                                  emulator):
    """The worker died after Salesforce created the record, before the sfid was written back: the app's delete
    is sent by the record's external id, found with one query (values quoted by simple-salesforce's formatter,
    so an id with a quote or a backslash is found too)."""
    writing_mapping(sf_api, fields=FIELDS, upsert_field="External_Id__c")
    url = sf_settings.database_url
    users = emulator.salesforce()
    created = [ext for ext in ("plain", "it's", "back\\slash")
               if users.Invoice__c.create({"Name": ext, "External_Id__c": ext})["success"]]
    assert len(invoices(sf)) == 3
    with psycopg.connect(url) as conn:    # the rows as a killed drain left them: no sfid, not captured again
        conn.execute("SET LOCAL xmlbinary = 'hex'")
        for ext in created:
            conn.execute("INSERT INTO salesforce.invoice__c (name, external_id__c) VALUES (%s, %s)", (ext, ext))
    sql(url, "DELETE FROM salesforce.invoice__c")
    assert drain(db, sf, FAST).outcomes == {"SUCCESS": 3}
    assert invoices(sf) == {}
