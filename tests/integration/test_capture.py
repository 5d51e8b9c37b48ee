"""Capture triggers: what an app's writes leave in the change log, and what the sync's own writes don't."""
import time

import psycopg
import pytest

from gateway import change_log
from gateway.db import Database
from jobs.inbound import apply_pending
from tests.conftest import ORG_ID, OUTBOUND_TOKEN
from tests.support.messages import envelope
from tests.support.postgres import move_captured_changes


INVOICE_FIELDS = {"Name": {"type": "string", "length": 80}, "Amount__c": {"type": "currency"},
                  "External_Id__c": {"type": "string", "length": 64}}


def writing_mapping(api, object_name="Invoice__c", fields=INVOICE_FIELDS, direction="pg_to_sf", **config):
    r = api.post("/api/v1/mappings", json={"object_name": object_name, "direction": direction,
                                           "config": {"access": "read_write", "fields": fields, **config}})
    assert r.status_code == 201, r.get_json()
    return r.get_json()


def sql(url, statement, params=None, origin=None):
    with psycopg.connect(url) as conn:
        if origin:
            conn.execute("SELECT set_config('forcebridge.origin', %s, true)", (origin,))
        cur = conn.execute(statement, params)
        return cur.fetchall() if cur.description else cur.rowcount


def log(url):
    move_captured_changes(url)
    return sql(url, "SELECT op, record_id, sfid, external_id, fields, state FROM forcebridge.change_log ORDER BY id")


def test_app_writes_are_logged_with_keys_and_changed_columns(api, settings):
    writing_mapping(api, upsert_field="External_Id__c")
    url = settings.database_url
    sql(url, "INSERT INTO salesforce.invoice__c (name, amount__c, external_id__c) VALUES ('a', 1, 'X1'), ('b', 2, NULL)")
    sql(url, "UPDATE salesforce.invoice__c SET amount__c = 5 WHERE name = 'a'")
    sql(url, "UPDATE salesforce.invoice__c SET amount__c = 5 WHERE name = 'a'")       # no change: nothing logged
    sql(url, "UPDATE salesforce.invoice__c SET _hc_err = 'x', _hc_lastop = 'FAILED'")  # our columns only
    sql(url, "UPDATE salesforce.invoice__c SET sfid = 'a0X000000000001AAA' WHERE name = 'b'")  # not mapped
    sql(url, "DELETE FROM salesforce.invoice__c WHERE name = 'b'")
    assert log(url) == [
        ("insert", 1, None, "X1", None, "NEW"),
        ("insert", 2, None, None, None, "NEW"),
        ("update", 1, None, "X1", ["amount__c"], "NEW"),
        ("delete", 2, "a0X000000000001AAA", None, None, "NEW"),
    ]


def test_user_writes_mark_rows_pending_and_sync_writes_do_not_log(api, settings):
    writing_mapping(api, direction="bidirectional")
    url = settings.database_url
    sql(url, "INSERT INTO salesforce.invoice__c (sfid, name, _hc_lastop) VALUES ('a0X000000000001AAA', 'sf', 'SYNCED')",
        origin="salesforce")
    sql(url, "UPDATE salesforce.invoice__c SET name = 'sf2'", origin="salesforce")
    assert log(url) == []
    assert sql(url, "SELECT _hc_lastop FROM salesforce.invoice__c") == [("SYNCED",)]
    sql(url, "UPDATE salesforce.invoice__c SET name = 'app'")
    sql(url, "INSERT INTO salesforce.invoice__c (name) VALUES ('new')")
    assert sql(url, "SELECT name, _hc_lastop FROM salesforce.invoice__c ORDER BY id") == [
        ("app", "PENDING"), ("new", "PENDING")]
    assert [r[0] for r in log(url)] == ["update", "insert"]


def test_copy_is_captured_once_per_row(api, settings):
    writing_mapping(api)
    with psycopg.connect(settings.database_url) as conn:
        with conn.cursor().copy("COPY salesforce.invoice__c (name, amount__c) FROM STDIN") as copy:
            for i in range(500):
                copy.write_row((f"n{i}", i))
    assert sql(settings.database_url, "SELECT count(*), count(DISTINCT record_id) FROM forcebridge.open_changes") == [(500, 500)]


def test_read_only_mapping_and_deleted_mapping_capture_nothing(api, settings):
    m = writing_mapping(api, direction="bidirectional")
    url = settings.database_url
    r = api.patch(f"/api/v1/mappings/{m['id']}", json={"direction": "sf_to_pg"})
    assert r.status_code == 200, r.get_json()
    sql(url, "INSERT INTO salesforce.invoice__c (name) VALUES ('x')")
    assert log(url) == []
    api.patch(f"/api/v1/mappings/{m['id']}", json={"direction": "bidirectional"})
    sql(url, "INSERT INTO salesforce.invoice__c (name) VALUES ('y')")
    assert len(log(url)) == 1
    assert api.delete(f"/api/v1/mappings/{m['id']}").status_code == 200
    sql(url, "INSERT INTO salesforce.invoice__c (name) VALUES ('z')")
    assert len(log(url)) == 1


def test_commit_notifies_listeners(api, settings):
    writing_mapping(api)
    with psycopg.connect(settings.database_url, autocommit=True) as listener:
        listener.execute("LISTEN forcebridge_changes")
        sql(settings.database_url, "INSERT INTO salesforce.invoice__c (name) VALUES ('a'), ('b')")
        notes = list(listener.notifies(timeout=5, stop_after=1))
    assert len(notes) == 1 and notes[0].channel == "forcebridge_changes"


def test_captured_changes_move_into_the_log_in_capture_order(api, settings, monkeypatch):
    writing_mapping(api)
    url = settings.database_url
    sql(url, "INSERT INTO salesforce.invoice__c (name) SELECT 'r' || g FROM generate_series(1, 20) g")
    sql(url, "UPDATE salesforce.invoice__c SET amount__c = 1 WHERE id <= 5")
    assert sql(url, "SELECT count(*) FROM forcebridge.change_log") == [(0,)]   # the app paid for an append only
    monkeypatch.setattr(change_log, "ABSORB_SLICE", 7)                        # several slices
    db = Database(url)
    try:
        assert change_log.absorb(db) == 25
        assert change_log.absorb(db) == 0
    finally:
        db.close()
    assert sql(url, "SELECT op, record_id, state FROM forcebridge.change_log ORDER BY id") == (
        [("insert", i, "NEW") for i in range(1, 21)] + [("update", i, "NEW") for i in range(1, 6)])
    assert sql(url, "SELECT count(*) FROM forcebridge.change_capture") == [(0,)]


def test_an_outbound_message_applied_before_any_drain_sees_the_apps_changes(client, api, settings):
    """The app's update and delete are still in change_capture when Salesforce's older values arrive: the
    update wins its conflict (last writer wins) and the deleted row does not come back."""
    writing_mapping(api, direction="bidirectional")
    url = settings.database_url
    kept, gone = "a0X000000000001AAA", "a0X000000000002AAA"
    sql(url, "INSERT INTO salesforce.invoice__c (sfid, name, systemmodstamp, _hc_lastop) "
             "VALUES (%s, 'sf', now() - interval '2 hours', 'SYNCED'), (%s, 'sf', now() - interval '2 hours', 'SYNCED')",
        (kept, gone), origin="salesforce")
    sql(url, "UPDATE salesforce.invoice__c SET name = 'app' WHERE sfid = %s", (kept,))
    sql(url, "DELETE FROM salesforce.invoice__c WHERE sfid = %s", (gone,))
    hour_ago = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() - 3600))
    body = envelope(ORG_ID, "Invoice__c", [{"Id": sfid, "Name": "sf, an hour ago", "SystemModstamp": hour_ago}
                                           for sfid in (kept, gone)])
    assert client.post(f"/outbound/{OUTBOUND_TOKEN}", data=body, content_type="text/xml").status_code == 200
    db = Database(url)
    try:
        apply_pending(db)
    finally:
        db.close()
    assert sql(url, "SELECT sfid, name FROM salesforce.invoice__c") == [(kept, "app")]
    assert sql(url, "SELECT winner FROM forcebridge.conflicts") == [("postgres",)]
    assert sql(url, "SELECT op, state FROM forcebridge.change_log ORDER BY id") == [("update", "NEW"), ("delete", "NEW")]


def test_every_save_through_the_mapping_store_keeps_capture_in_step(settings):
    """No hook to pass: a new entry point that saves through gateway.mapping_store cannot forget the triggers."""
    from dataclasses import replace

    from core.mapping import from_entry
    from gateway import mapping_store

    url = settings.database_url
    db = Database(url, max_size=2)
    try:
        m = mapping_store.create(db, from_entry({"object_name": "Invoice__c", "direction": "pg_to_sf",
                                                 "config": {"fields": INVOICE_FIELDS}}))
        triggers = "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'salesforce.invoice__c'::regclass AND NOT tgisinternal"
        assert sql(url, triggers) == [(4,)]
        sql(url, "INSERT INTO salesforce.invoice__c (name) VALUES ('a')")
        assert [r[0] for r in log(url)] == ["insert"]
        mapping_store.update(db, replace(m, active=False))
        assert sql(url, triggers) == [(0,)]
        mapping_store.update(db, replace(m, active=True))
        assert sql(url, triggers) == [(4,)]
        mapping_store.delete(db, m.id)
        assert sql(url, triggers) == [(0,)]
        sql(url, "INSERT INTO salesforce.invoice__c (name) VALUES ('b')")
        assert len(log(url)) == 1
    finally:
        db.close()
