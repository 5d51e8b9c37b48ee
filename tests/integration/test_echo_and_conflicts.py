"""Bidirectional sync with the emulator's Outbound Message sender on: no echoes, conflicts settled."""
from __future__ import annotations

import threading
import time

import pytest
from werkzeug.serving import make_server

from jobs.drain import drain
from jobs.inbound import apply_pending
from tests.conftest import OUTBOUND_TOKEN
from tests.integration.test_capture import sql, writing_mapping
from tests.integration.test_write_path import (FAST, FIELDS, collection_calls, db, invoices,  # noqa: F401
                                               sf, sf_api, sf_app, sf_settings)
from tests.support.messages import envelope


@pytest.fixture
def served(sf_app):
    """The app on a real port, so the emulator can deliver Outbound Messages to it."""
    server = make_server("127.0.0.1", 0, sf_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.fixture
def om_rule(emulator, served):
    rule = emulator.admin("POST", "/_emulator/outbound/rules", {
        "object": "Invoice__c", "fields": ["Name", "Amount__c", "Status__c", "External_Id__c", "SystemModstamp"],
        "endpoint_url": f"{served}/outbound/{OUTBOUND_TOKEN}"})
    yield rule
    emulator.admin("DELETE", f"/_emulator/outbound/rules/{rule['id']}")


def forcebridge_changes(emulator, since: int) -> list[dict]:
    changes, seq = [], since
    while True:
        page = emulator.admin("GET", f"/_emulator/changes?since={seq}&limit=10000")["changes"]
        if not page:
            return [c for c in changes if c["client"] == "forcebridge"]
        changes.extend(page)
        seq = page[-1]["seq"]


def last_seq(emulator) -> int:
    page = emulator.admin("GET", "/_emulator/changes?since=0&limit=10000")["changes"]
    seq = 0
    while page:
        seq = page[-1]["seq"]
        page = emulator.admin("GET", f"/_emulator/changes?since={seq}&limit=10000")["changes"]
    return seq


def converge(db, sf, emulator, url, limit_s: float = 60) -> None:
    """Apply what Salesforce sent and drain what Postgres logged until both sides are quiet."""
    deadline, quiet = time.monotonic() + limit_s, 0
    while quiet < 3:
        assert time.monotonic() < deadline, "the two sides did not settle"
        applied = apply_pending(db).applied
        drained = drain(db, sf, FAST).claimed
        queued = emulator.admin("GET", "/_emulator/outbound/status")["queued"]
        open_changes = sql(url, "SELECT count(*) FROM forcebridge.change_log WHERE state IN ('NEW','PENDING','REQUEUED')")[0][0]
        quiet = quiet + 1 if not (applied or drained or queued or open_changes) else 0
        time.sleep(0.1)


def create_in_salesforce(user_sf, records: list[dict]) -> None:
    for i in range(0, len(records), 200):
        user_sf.restful("composite/sobjects", method="POST", json={
            "allOrNone": True, "records": [{"attributes": {"type": "Invoice__c"}, **r} for r in records[i:i + 200]]})


def update_in_salesforce(user_sf, records: list[dict]) -> None:
    for i in range(0, len(records), 200):
        user_sf.restful("composite/sobjects", method="PATCH", json={
            "allOrNone": True, "records": [{"attributes": {"type": "Invoice__c"}, **r} for r in records[i:i + 200]]})


def test_both_sides_converge_without_echoes(sf_api, sf_settings, db, sf, emulator, om_rule):
    writing_mapping(sf_api, fields=FIELDS, direction="bidirectional", upsert_field="External_Id__c")
    url = sf_settings.database_url
    user = emulator.salesforce(client="people")
    start = last_seq(emulator)
    # 1,000 changes on each side: Salesforce 500 creates + 500 updates; Postgres 500 inserts, 300 updates, 200 deletes
    create_in_salesforce(user, [{"Name": f"sf {i}", "Amount__c": i, "External_Id__c": f"S{i}"} for i in range(500)])
    sql(url, "INSERT INTO salesforce.invoice__c (name, amount__c, external_id__c) "
             "SELECT 'pg ' || g, g, 'P' || g FROM generate_series(0, 499) g")
    converge(db, sf, emulator, url)
    assert collection_calls(emulator) == 1                          # 500 upserts, 200 a request, one call
    remote = invoices(sf)
    ids = {r["External_Id__c"]: r["Id"] for r in remote.values()}
    update_in_salesforce(user, [{"id": ids[f"S{i}"], "Name": f"sf {i} edited"} for i in range(250)]
                         + [{"id": ids[f"P{i}"], "Name": f"pg {i} edited in sf"} for i in range(250)])
    sql(url, "UPDATE salesforce.invoice__c SET amount__c = amount__c + 1000 "
             "WHERE external_id__c IN (SELECT 'S' || g FROM generate_series(250, 399) g "
             "UNION ALL SELECT 'P' || g FROM generate_series(250, 399) g)")
    sql(url, "DELETE FROM salesforce.invoice__c WHERE external_id__c IN "
             "(SELECT 'P' || g FROM generate_series(400, 499) g UNION ALL SELECT 'S' || g FROM generate_series(400, 499) g)")
    converge(db, sf, emulator, url)

    remote = invoices(sf)
    local = {ext: (name, amount) for ext, name, amount in
             sql(url, "SELECT external_id__c, name, amount__c FROM salesforce.invoice__c")}
    assert len(local) == 800 and set(local) == set(remote)
    assert all(local[ext] == (r["Name"], r["Amount__c"]) for ext, r in remote.items())
    assert local["S10"][0] == "sf 10 edited" and local["P10"][0] == "pg 10 edited in sf"
    assert local["S300"][1] == 1300 and remote["P300"]["Amount__c"] == 1300
    ours = forcebridge_changes(emulator, start)
    # exactly the Postgres side's changes, once each: nothing came back and went out again
    assert sorted(c["kind"] for c in ours).count("created") == 500
    assert len([c for c in ours if c["kind"] == "updated"]) == 300
    assert len([c for c in ours if c["kind"] == "deleted"]) == 200
    assert collection_calls(emulator) == 1 + 1                      # 300 updates in 2 requests, 200 deletes in 1
    assert sql(url, "SELECT count(*) FROM forcebridge.conflicts") == [(0,)]


def om(emulator_org, sfid, name, amount, modstamp, ext):
    return envelope(emulator_org, "Invoice__c", [{"Id": sfid, "Name": name, "Amount__c": amount,
                                                  "External_Id__c": ext, "SystemModstamp": modstamp}])


def synced_record(sf_api, sf_settings, db, sf, rule="last_writer_wins", name="v0", ext="E") -> tuple[str, str]:
    """A bidirectional mapping settling conflicts by `rule`, with one record in both places: (url, sfid)."""
    r = sf_api.post("/api/v1/mappings", json={"object_name": "Invoice__c", "direction": "bidirectional",
                                              "conflict_rule": rule,
                                              "config": {"fields": FIELDS, "upsert_field": "External_Id__c"}})
    assert r.status_code == 201, r.get_json()
    url = sf_settings.database_url
    sql(url, "INSERT INTO salesforce.invoice__c (name, amount__c, external_id__c) VALUES (%s, 1, %s)", (name, ext))
    drain(db, sf, FAST)
    return url, sql(url, "SELECT sfid FROM salesforce.invoice__c")[0][0]


@pytest.mark.parametrize("rule,sf_later,winner", [
    ("last_writer_wins", True, "salesforce"), ("last_writer_wins", False, "postgres"),
    ("salesforce_wins", False, "salesforce"), ("postgres_wins", True, "postgres")])
def test_conflicts_are_settled_by_the_rule_and_logged(sf_api, sf_app, sf_settings, db, sf, emulator,
                                                      rule, sf_later, winner):
    url, sfid = synced_record(sf_api, sf_settings, db, sf, rule, name="base", ext="K")
    sql(url, "UPDATE salesforce.invoice__c SET name = 'local'")                # pending local change
    changed_at = sql(url, "SELECT created_at FROM forcebridge.open_changes ORDER BY id DESC LIMIT 1")[0][0]
    stamp = (changed_at.timestamp() + (60 if sf_later else -60))
    modstamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(stamp))
    client = sf_app.test_client()
    body = om(emulator.org_id, sfid, "remote", 1, modstamp, "K")
    assert client.post(f"/outbound/{OUTBOUND_TOKEN}", data=body, content_type="text/xml").status_code == 200
    apply_pending(db)
    drain(db, sf, FAST)
    (logged,) = sf_api.get("/api/v1/conflicts").get_json()["conflicts"]
    assert (logged["winner"], logged["rule"], logged["pg_values"]["name"], logged["sf_values"]["name"]) == (
        winner, rule, "local", "remote")
    expected = "remote" if winner == "salesforce" else "local"
    assert sql(url, "SELECT name FROM salesforce.invoice__c") == [(expected,)]
    if winner == "postgres":
        assert invoices(sf)["K"]["Name"] == "local"                         # the local change went out


def test_echo_of_an_older_write_does_not_undo_a_newer_local_change(sf_api, sf_app, sf_settings, db, sf, emulator):
    writing_mapping(sf_api, fields=FIELDS, direction="bidirectional", upsert_field="External_Id__c")
    url = sf_settings.database_url
    sql(url, "INSERT INTO salesforce.invoice__c (name, amount__c, external_id__c) VALUES ('v1', 1, 'E')")
    drain(db, sf, FAST)
    sfid = sql(url, "SELECT sfid FROM salesforce.invoice__c")[0][0]
    sql(url, "UPDATE salesforce.invoice__c SET name = 'v2'")                   # newer, not yet sent
    later = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() + 3600))
    body = om(emulator.org_id, sfid, "v1", 1, later, "E")                      # our v1 write coming back
    assert sf_app.test_client().post(f"/outbound/{OUTBOUND_TOKEN}", data=body,
                                     content_type="text/xml").status_code == 200
    apply_pending(db)
    assert sql(url, "SELECT name, _hc_lastop FROM salesforce.invoice__c") == [("v2", "PENDING")]
    drain(db, sf, FAST)
    assert invoices(sf)["E"]["Name"] == "v2"
    assert sql(url, "SELECT count(*) FROM forcebridge.conflicts") == [(0,)]
