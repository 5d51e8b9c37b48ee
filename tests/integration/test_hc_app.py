"""An app written for Heroku Connect, run unchanged: what HC apps do against the mapped schema, with the
emulator behind the write path and the drain driven by hand (issue 18)."""
from __future__ import annotations

import datetime as dt
import pathlib
import shutil

import psycopg
import pytest
from psycopg import sql as pgsql

from gateway import mapping_store
from gateway.db import Database, migrate
from jobs import push
from jobs.drain import drain
from jobs.inbound import apply_pending
from tests.conftest import OUTBOUND_TOKEN
from tests.integration.test_capture import sql, writing_mapping
from tests.integration.test_write_path import FAST, db, invoices, sf, sf_api, sf_app, sf_settings  # noqa: F401
from tests.support.messages import envelope
from tests.support.postgres import create_database, move_captured_changes

FIELDS = {"Name": {}, "Amount__c": {}, "Quantity__c": {}, "Status__c": {}, "External_Id__c": {}, "Paid_At__c": {},
          "Notes__c": {}}


@pytest.fixture
def hc_app(sf_api):
    """A read/write mapping as an HC export carries it: upsert field, an `indexes` entry."""
    return writing_mapping(sf_api, fields=FIELDS, direction="bidirectional", upsert_field="External_Id__c",
                           indexes={"Name": {"unique": False}, "External_Id__c": {"unique": True}})


def app_write(url, *statements, local_only=False, timezone=None):
    """One transaction of the app's own, as HC apps open them (xmlbinary at its default unless local_only)."""
    with psycopg.connect(url) as conn:
        if timezone:
            conn.execute(pgsql.SQL("SET TimeZone = {}").format(pgsql.Literal(timezone)))
        if local_only:
            conn.execute("SET LOCAL xmlbinary = 'hex'")
        rows = None
        for statement in statements:
            cur = conn.execute(statement)
            rows = cur.fetchall() if cur.description else rows
        return rows


def test_tables_indexes_and_system_objects_are_heroku_connects(hc_app, sf_settings):
    url = sf_settings.database_url
    types = dict(sql(url, "SELECT column_name, CASE WHEN character_maximum_length IS NOT NULL "
                          "THEN data_type || '(' || character_maximum_length || ')' ELSE data_type END "
                          "FROM information_schema.columns WHERE table_schema = 'salesforce' "
                          "AND table_name = 'invoice__c'"))
    assert types == {
        "id": "integer", "sfid": "character varying(18)", "systemmodstamp": "timestamp without time zone",
        "isdeleted": "boolean", "_hc_lastop": "character varying(32)", "_hc_err": "text",
        "name": "character varying(80)", "amount__c": "double precision", "quantity__c": "double precision",
        "status__c": "character varying(255)", "external_id__c": "character varying(255)",
        "paid_at__c": "timestamp without time zone", "notes__c": "text"}
    indexes = dict(sql(url, "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'salesforce' "
                            "AND tablename = 'invoice__c'"))
    assert set(indexes) == {"invoice__c_pkey", "hcu_idx_invoice__c_sfid", "hc_idx_invoice__c_systemmodstamp",
                            "hcu_idx_invoice__c_external_id__c", "hc_idx_invoice__c_name"}
    assert "UNIQUE" in indexes["hcu_idx_invoice__c_sfid"] and "UNIQUE" in indexes["hcu_idx_invoice__c_external_id__c"]
    assert "UNIQUE" not in indexes["hc_idx_invoice__c_name"]
    kinds = dict(sql(url, "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                          "WHERE n.nspname = 'salesforce' AND c.relname LIKE '\\_%'"))
    assert {k: kinds.get(k) for k in ("_trigger_log", "_trigger_log_archive", "_hcmeta", "_sf_event_log")} == {
        "_trigger_log": "v", "_trigger_log_archive": "v", "_hcmeta": "r", "_sf_event_log": "r"}
    assert sql(url, "SELECT salesforce.get_xmlbinary()") == [("base64",)]
    assert sql(url, "SELECT count(*) FROM pg_extension WHERE extname = 'hstore'") == [(1,)]
    # HC's columns, in HC's order, on both logs
    for view in ("_trigger_log", "_trigger_log_archive"):
        assert [c for (c,) in sql(url, "SELECT column_name FROM information_schema.columns WHERE table_schema = "
                                       f"'salesforce' AND table_name = '{view}' ORDER BY ordinal_position")] == [
            "id", "txid", "created_at", "updated_at", "processed_at", "processed_tx", "state", "action",
            "table_name", "record_id", "sfid", "old", "values", "sf_result", "sf_message"]


def echo(sf_app, sf_settings, record: dict) -> None:
    """An Outbound Message for `record`, applied (Connect's write from Salesforce)."""
    body = envelope(sf_settings.salesforce_org_id, "Invoice__c", [record])
    assert sf_app.test_client().post(f"/outbound/{OUTBOUND_TOKEN}", data=body,
                                     content_type="text/xml").status_code == 200
    assert apply_pending(sf_app.extensions["forcebridge"].db).applied == 1


def test_insert_waits_for_inserted_update_for_updated(hc_app, sf_settings, sf_app, db, sf):
    url = sf_settings.database_url
    app_write(url, "INSERT INTO salesforce.invoice__c (name, amount__c, external_id__c) VALUES ('one', 10.5, 'E1')")
    assert sql(url, "SELECT _hc_lastop, _hc_err FROM salesforce.invoice__c") == [("PENDING", None)]
    assert sql(url, "SELECT state, action, table_name FROM salesforce._trigger_log") == [("NEW", "INSERT", "invoice__c")]
    assert drain(db, sf, FAST).outcomes == {"SUCCESS": 1}
    (sfid, lastop, err), = sql(url, "SELECT sfid, _hc_lastop, _hc_err FROM salesforce.invoice__c")
    assert (lastop, err) == ("INSERTED", None) and invoices(sf)["E1"]["Id"] == sfid

    sql(url, "UPDATE salesforce.invoice__c SET _hc_err = 'old error'", origin="salesforce")
    app_write(url, "UPDATE salesforce.invoice__c SET amount__c = amount__c * 2")
    assert sql(url, "SELECT _hc_lastop, _hc_err FROM salesforce.invoice__c") == [("PENDING", None)]   # error cleared
    assert drain(db, sf, FAST).outcomes == {"SUCCESS": 1}
    assert sql(url, "SELECT _hc_lastop, amount__c FROM salesforce.invoice__c") == [("UPDATED", 21.0)]
    assert invoices(sf)["E1"]["Amount__c"] == 21.0
    assert sql(url, "SELECT state, action, sfid FROM salesforce._trigger_log ORDER BY id") == [
        ("SUCCESS", "INSERT", sfid), ("SUCCESS", "UPDATE", sfid)]
    assert '"amount__c"=>"21.0"' in sql(url, "SELECT \"values\" FROM salesforce._trigger_log ORDER BY id DESC")[0][0]
    # our write's echo (the values the row holds) keeps the mark an app waits for; a real change is SYNCED
    record = {"Id": sfid, "Name": "one", "Amount__c": "21.0", "External_Id__c": "E1",
              "SystemModstamp": "2099-01-01T00:00:00.000Z"}
    echo(sf_app, sf_settings, record)
    assert sql(url, "SELECT _hc_lastop, systemmodstamp FROM salesforce.invoice__c") == [
        ("UPDATED", dt.datetime(2099, 1, 1))]
    echo(sf_app, sf_settings, {**record, "Name": "renamed in Salesforce", "SystemModstamp": "2099-01-01T00:00:01.000Z"})
    assert sql(url, "SELECT _hc_lastop, name FROM salesforce.invoice__c") == [("SYNCED", "renamed in Salesforce")]


def test_failed_rows_are_read_from_the_trigger_log_and_retried_by_setting_new(hc_app, sf_settings, db, sf):
    url = sf_settings.database_url
    app_write(url, "INSERT INTO salesforce.invoice__c (name, status__c, external_id__c) "
                   "VALUES ('ok', 'Draft', 'OK'), ('bad', 'Bogus', 'BAD')")
    assert drain(db, sf, FAST).outcomes == {"SUCCESS": 1, "FAILED": 1}
    (log_id, table, record_id, action, message), = sql(
        url, "SELECT id, table_name, record_id, action, sf_message FROM salesforce._trigger_log WHERE state = 'FAILED'")
    assert (table, action) == ("invoice__c", "INSERT") and "(INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST)" in message
    assert not message.startswith("[")                                    # text, not Salesforce's JSON
    assert sql(url, f"SELECT _hc_lastop, _hc_err FROM salesforce.invoice__c WHERE id = {record_id}") == [
        ("FAILED", message)]
    with pytest.raises(psycopg.errors.FeatureNotSupported):               # only retry / ignore are HC's moves
        app_write(url, f"UPDATE salesforce._trigger_log SET state = 'SUCCESS' WHERE id = {log_id}")

    # the app fixes the row without queueing a new change, then retries the failed entry, as on HC
    app_write(url, f"UPDATE salesforce.invoice__c SET status__c = 'Paid' WHERE id = {record_id}", local_only=True)
    assert sql(url, "SELECT count(*) FROM salesforce._trigger_log WHERE state = 'NEW'") == [(0,)]
    with psycopg.connect(url, autocommit=True) as listener:          # the drain's listener is woken
        listener.execute("LISTEN forcebridge_changes")
        app_write(url, f"UPDATE salesforce._trigger_log SET state = 'NEW' WHERE id = {log_id} AND state = 'FAILED'")
        assert [n.channel for n in listener.notifies(timeout=5, stop_after=1)] == ["forcebridge_changes"]
    assert sql(url, f"SELECT state, sf_message FROM salesforce._trigger_log WHERE id = {log_id}") == [("NEW", None)]
    assert drain(db, sf, FAST).outcomes == {"SUCCESS": 1}
    assert sql(url, f"SELECT state FROM salesforce._trigger_log WHERE id = {log_id}") == [("SUCCESS",)]
    assert invoices(sf)["BAD"]["Status__c"] == "Paid"
    assert sql(url, f"SELECT _hc_lastop, _hc_err FROM salesforce.invoice__c WHERE id = {record_id}") == [
        ("INSERTED", None)]


def test_a_local_only_write_is_never_sent(hc_app, sf_settings, db, sf):
    url = sf_settings.database_url
    app_write(url, "INSERT INTO salesforce.invoice__c (name, external_id__c) VALUES ('synced', 'S')")
    drain(db, sf, FAST)
    app_write(url, "INSERT INTO salesforce.invoice__c (name, external_id__c) VALUES ('local', 'L')",
              "UPDATE salesforce.invoice__c SET name = 'changed here only' WHERE external_id__c = 'S'",
              local_only=True)
    assert sql(url, "SELECT count(*) FROM salesforce._trigger_log WHERE state <> 'SUCCESS'") == [(0,)]
    assert drain(db, sf, FAST).claimed == 0
    assert set(invoices(sf)) == {"S"} and invoices(sf)["S"]["Name"] == "synced"
    assert sql(url, "SELECT external_id__c, _hc_lastop FROM salesforce.invoice__c ORDER BY id") == [
        ("S", "INSERTED"), ("L", "SYNCED")]                                   # nothing waits for Salesforce


def test_app_trigger_tells_connector_writes_by_get_xmlbinary(hc_app, sf_settings, sf_app, db, sf):
    url = sf_settings.database_url
    sql(url, """
        CREATE TABLE public.app_audit (name text, xmlbinary text);
        CREATE FUNCTION public.app_audit() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF salesforce.get_xmlbinary() = 'base64' THEN   -- the app's own write, not Connect's
                INSERT INTO public.app_audit VALUES (NEW.name, salesforce.get_xmlbinary());
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER app_audit AFTER INSERT OR UPDATE ON salesforce.invoice__c
        FOR EACH ROW EXECUTE FUNCTION public.app_audit();""")
    app_write(url, "INSERT INTO salesforce.invoice__c (name, external_id__c) VALUES ('mine', 'A')")
    drain(db, sf, FAST)                                                   # writes the sfid back: Connect's write
    sfid = invoices(sf)["A"]["Id"]
    stamp = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    body = envelope(sf_settings.salesforce_org_id, "Invoice__c", [
        {"Id": sfid, "Name": "from salesforce", "External_Id__c": "A", "SystemModstamp": stamp}])
    assert sf_app.test_client().post(f"/outbound/{OUTBOUND_TOKEN}", data=body,
                                     content_type="text/xml").status_code == 200
    assert apply_pending(db).applied == 1                                 # Connect's write from Salesforce
    assert sql(url, "SELECT name FROM salesforce.invoice__c") == [("from salesforce",)]
    assert sql(url, "SELECT name, xmlbinary FROM public.app_audit") == [("mine", "base64")]


def test_insert_on_conflict_on_the_upsert_field(hc_app, sf_settings, db, sf):
    url = sf_settings.database_url
    upsert = ("INSERT INTO salesforce.invoice__c (name, external_id__c) VALUES ('{}', 'U1') "
              "ON CONFLICT (external_id__c) DO UPDATE SET name = EXCLUDED.name")
    app_write(url, upsert.format("first"))
    app_write(url, upsert.format("second"))
    assert sql(url, "SELECT name FROM salesforce.invoice__c") == [("second",)]
    assert drain(db, sf, FAST).outcomes == {"SUCCESS": 1}
    assert invoices(sf)["U1"]["Name"] == "second"


def test_datetimes_and_doubles_are_naive_utc_and_floats_whatever_the_timezone(hc_app, sf_settings, sf_app, sf):
    url = sf_settings.database_url
    dbname = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    with psycopg.connect(url, autocommit=True) as conn:     # the server's sessions default to a far zone
        conn.execute(pgsql.SQL("ALTER DATABASE {} SET TimeZone = 'Pacific/Kiritimati'").format(pgsql.Identifier(dbname)))
    try:
        db2 = Database(url)
        try:
            app_write(url, "INSERT INTO salesforce.invoice__c (name, amount__c, quantity__c, paid_at__c, external_id__c) "
                           "VALUES ('t', 12.25, 3.5, '2026-01-02 03:04:05', 'T')", timezone="America/New_York")
            assert drain(db2, sf, FAST).outcomes == {"SUCCESS": 1}
            remote = sf.query("SELECT Id, Paid_At__c, Amount__c, Quantity__c FROM Invoice__c WHERE External_Id__c = 'T'")[0]
            assert remote["Paid_At__c"].startswith("2026-01-02T03:04:05") and remote["Amount__c"] == 12.25
            # Salesforce -> Postgres: an Outbound Message with an offset lands as UTC wall time
            body = envelope(sf_settings.salesforce_org_id, "Invoice__c", [
                {"Id": remote["Id"], "Name": "t", "External_Id__c": "T", "Paid_At__c": "2026-06-01T12:00:00.000+02:00",
                 "Amount__c": "99.5", "SystemModstamp": "2099-01-01T00:00:00.000Z"}])
            assert sf_app.test_client().post(f"/outbound/{OUTBOUND_TOKEN}", data=body,
                                             content_type="text/xml").status_code == 200
            assert apply_pending(db2).applied == 1
        finally:
            db2.close()
        with psycopg.connect(url) as conn:
            conn.execute("SET TimeZone = 'Asia/Tokyo'")
            row = conn.execute("SELECT paid_at__c, systemmodstamp, amount__c, quantity__c FROM salesforce.invoice__c"
                               ).fetchone()
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(pgsql.SQL("ALTER DATABASE {} RESET TimeZone").format(pgsql.Identifier(dbname)))
    assert row == (dt.datetime(2026, 6, 1, 10, 0, 0), dt.datetime(2099, 1, 1), 99.5, 3.5)
    assert all(type(v) is float for v in row[2:])                          # `amount * 1.1` just works


def test_hc_capture_from_row_queues_rows_written_while_capture_was_off(hc_app, sf_settings, db, sf):
    url = sf_settings.database_url
    app_write(url, "INSERT INTO salesforce.invoice__c (name, amount__c, external_id__c) VALUES ('late', 5, 'C1')",
              local_only=True)
    assert drain(db, sf, FAST).claimed == 0
    app_write(url, "SELECT salesforce.hc_capture_insert_from_row(hstore(t.*), 'invoice__c', "
                   "ARRAY['id', '_hc_lastop', '_hc_err']) FROM salesforce.invoice__c t")
    assert sql(url, "SELECT state, action FROM salesforce._trigger_log") == [("NEW", "INSERT")]
    assert drain(db, sf, FAST).outcomes == {"SUCCESS": 1}
    assert invoices(sf)["C1"]["Amount__c"] == 5

    app_write(url, "UPDATE salesforce.invoice__c SET amount__c = 7, name = 'not sent'", local_only=True)
    app_write(url, "SELECT salesforce.hc_capture_update_from_row(hstore(t.*), 'invoice__c', ARRAY['amount__c']) "
                   "FROM salesforce.invoice__c t")
    assert drain(db, sf, FAST).outcomes == {"SUCCESS": 1}
    assert (invoices(sf)["C1"]["Amount__c"], invoices(sf)["C1"]["Name"]) == (7, "late")
    assert sql(url, "SELECT _hc_lastop FROM salesforce.invoice__c") == [("UPDATED",)]
    with pytest.raises(psycopg.errors.UndefinedTable):
        app_write(url, "SELECT salesforce.hc_capture_insert_from_row(hstore(t.*), 'nope', ARRAY[]::text[]) "
                       "FROM salesforce.invoice__c t")


def insert_outside_capture(url, external_id: str, excluded: str, status: str = "Draft") -> None:
    """Invoice 'late' (Amount 5, Quantity 2) written with capture off, then queued by the app with
    hc_capture_insert_from_row and `excluded` (an SQL array) as its excluded_cols."""
    app_write(url, "INSERT INTO salesforce.invoice__c (name, amount__c, quantity__c, status__c, external_id__c) "
                   f"VALUES ('late', 5, 2, '{status}', '{external_id}')", local_only=True)
    app_write(url, f"SELECT salesforce.hc_capture_insert_from_row(hstore(t.*), 'invoice__c', {excluded}) "
                   f"FROM salesforce.invoice__c t WHERE external_id__c = '{external_id}'")


def created_invoice(sf, external_id: str) -> tuple:
    (created,) = sf.query(f"SELECT Name, Quantity__c, Amount__c FROM Invoice__c WHERE External_Id__c = '{external_id}'")
    return created["Name"], created["Quantity__c"], created["Amount__c"]


def test_hc_capture_insert_from_row_does_not_send_the_excluded_columns(hc_app, sf_settings, db, sf):
    url = sf_settings.database_url
    insert_outside_capture(url, "C2", "ARRAY['id', '_hc_lastop', '_hc_err', 'Amount__c']")
    assert drain(db, sf, FAST).outcomes == {"SUCCESS": 1}
    assert created_invoice(sf, "C2") == ("late", 2, None)
    app_write(url, "UPDATE salesforce.invoice__c SET amount__c = 6")      # changed later: now it is sent
    assert drain(db, sf, FAST).outcomes == {"SUCCESS": 1}
    assert invoices(sf)["C2"]["Amount__c"] == 6


def test_an_excluded_column_stays_unsent_when_a_later_update_creates_the_record(hc_app, sf_settings, db, sf):
    url = sf_settings.database_url
    insert_outside_capture(url, "C3", "ARRAY['amount__c']", status="Nope")
    assert drain(db, sf, FAST).outcomes == {"FAILED": 1}         # not a Status__c value: the insert failed
    app_write(url, "UPDATE salesforce.invoice__c SET name = 'fixed', status__c = 'Draft'")   # claimed alone
    assert drain(db, sf, FAST).outcomes == {"SUCCESS": 1}
    assert created_invoice(sf, "C3") == ("fixed", 2, None)


def test_the_initial_push_leaves_an_insert_with_excluded_columns_to_the_drain(hc_app, sf_settings, db, sf):
    insert_outside_capture(sf_settings.database_url, "C4", "ARRAY['amount__c']")
    m = mapping_store.get(db, hc_app["id"])
    push.initial_push(db, sf, m, push.PushOptions(bulk_threshold=0))   # a Bulk job's CSV: one set of columns
    drain(db, sf, FAST)
    assert created_invoice(sf, "C4") == ("late", 2, None)


MIGRATIONS = pathlib.Path(__file__).resolve().parents[2] / "sql" / "migrations"


def test_migration_converts_existing_mapped_tables_keeping_every_value(tmp_path):
    """A deployment from before migration 0060: timestamptz/numeric columns, sfid UNIQUE constraint, the old
    modstamp index name and a mark-pending trigger naming the columns. The upgrade keeps every value."""
    url, drop = create_database("fb_test_upgrade")
    try:
        before = tmp_path / "migrations"
        before.mkdir()
        for path in MIGRATIONS.glob("*.sql"):
            if path.stem < "0060":
                shutil.copy(path, before / path.name)
        migrate(url, before)
        with psycopg.connect(url) as conn:
            conn.execute("SET TimeZone = 'Europe/Paris'")
            conn.execute("""
                CREATE SCHEMA salesforce;
                CREATE TABLE salesforce.invoice__c (id serial PRIMARY KEY, sfid varchar(18) UNIQUE,
                    systemmodstamp timestamptz, isdeleted boolean, _hc_lastop varchar(32), _hc_err text,
                    amount__c numeric, paid_at__c timestamptz, due_at__c timestamptz);
                CREATE VIEW public.app_due AS SELECT id, due_at__c FROM salesforce.invoice__c;
                CREATE INDEX invoice__c_systemmodstamp_idx ON salesforce.invoice__c (systemmodstamp);
                CREATE TRIGGER fb_mark_pending BEFORE UPDATE ON salesforce.invoice__c FOR EACH ROW
                    WHEN (ROW(NEW.amount__c, NEW.paid_at__c) IS DISTINCT FROM ROW(OLD.amount__c, OLD.paid_at__c))
                    EXECUTE FUNCTION forcebridge.mark_pending();
                INSERT INTO forcebridge.mappings (object_name, table_schema, table_name, direction, fields)
                VALUES ('Invoice__c', 'salesforce', 'invoice__c', 'bidirectional',
                        '[{"name": "Amount__c", "sf_type": "currency"}, {"name": "Paid_At__c", "sf_type": "datetime"},
                          {"name": "Due_At__c", "sf_type": "datetime"}]');
                INSERT INTO salesforce.invoice__c (sfid, systemmodstamp, amount__c, paid_at__c, due_at__c)
                VALUES ('a0X000000000001AAA', '2026-03-01 12:00:00+00', 1234.56, '2026-03-02 08:30:00+00',
                        '2026-04-01 00:00:00+00');""")
        migrate(url)
        with psycopg.connect(url) as conn:
            conn.execute("SET TimeZone = 'America/Los_Angeles'")
            assert conn.execute("SELECT systemmodstamp, amount__c, paid_at__c FROM salesforce.invoice__c").fetchone() == (
                dt.datetime(2026, 3, 1, 12), 1234.56, dt.datetime(2026, 3, 2, 8, 30))
            # the app's view holds due_at__c's type: kept (with a warning), value and view intact
            assert conn.execute("SELECT due_at__c FROM public.app_due").fetchone() == (
                dt.datetime(2026, 4, 1, tzinfo=dt.timezone.utc),)
            names = {r[0] for r in conn.execute(
                "SELECT indexname FROM pg_indexes WHERE schemaname = 'salesforce' AND tablename = 'invoice__c'")}
            assert names == {"invoice__c_pkey", "hcu_idx_invoice__c_sfid", "hc_idx_invoice__c_systemmodstamp"}
            conn.execute("UPDATE salesforce.invoice__c SET amount__c = 1, _hc_err = 'x'")   # the trigger is back
            assert conn.execute("SELECT _hc_lastop, _hc_err FROM salesforce.invoice__c").fetchone() == ("PENDING", None)
        # the worker's start gives the schema Heroku Connect's objects, once
        upgrader = Database(url)
        try:
            # as jobs/worker.py calls it: the capture functions are re-created as today's
            assert mapping_store.bring_up_to_date(upgrader) == ["salesforce.invoice__c"]
            assert mapping_store.bring_up_to_date(upgrader) == []
        finally:
            upgrader.close()
        assert sql(url, "SELECT count(*) FROM salesforce._trigger_log") == [(0,)]
        app_write(url, "INSERT INTO salesforce.invoice__c (amount__c) VALUES (1)")
        app_write(url, "INSERT INTO salesforce.invoice__c (amount__c) VALUES (2)", local_only=True)
        assert sql(url, "SELECT state, action, record_id FROM salesforce._trigger_log") == [("NEW", "INSERT", 2)]
    finally:
        drop()


def test_mappings_that_cannot_get_heroku_connects_objects_are_refused_whole(sf_api, sf_settings):
    url = sf_settings.database_url
    entry = {"object_name": "Invoice__c", "direction": "bidirectional",
             "config": {"access": "read_write", "fields": FIELDS, "upsert_field": "External_Id__c"}}
    r = sf_api.post("/api/v1/mappings", json={**entry, "config": {**entry["config"], "indexes": {"Nope__c": {}}}})
    assert r.status_code == 400 and "Nope__c" in r.get_json()["message"]
    # a table holding duplicates in the upsert field: no unique index, no mapping, every row kept
    sql(url, "CREATE SCHEMA salesforce; CREATE TABLE salesforce.invoice__c (id serial PRIMARY KEY, sfid varchar(18), "
             "systemmodstamp timestamp, isdeleted boolean, _hc_lastop varchar(32), _hc_err text, "
             "external_id__c varchar(255)); INSERT INTO salesforce.invoice__c (external_id__c) VALUES ('D'), ('D')")
    r = sf_api.post("/api/v1/mappings", json=entry)
    assert r.status_code == 400 and "hcu_idx_invoice__c_external_id__c" in r.get_json()["message"]
    assert sql(url, "SELECT count(*) FROM salesforce.invoice__c") == [(2,)]
    assert sf_api.get("/api/v1/mappings").get_json()["mappings"] == []
    # Heroku Connect's own trigger log table (a restored HC schema not adopted yet) is never replaced
    sql(url, "DELETE FROM salesforce.invoice__c WHERE id = 2; CREATE TABLE salesforce._trigger_log (id serial)")
    r = sf_api.post("/api/v1/mappings", json=entry)
    assert r.status_code == 400 and "adopt" in r.get_json()["message"]
    assert sql(url, "SELECT relkind FROM pg_class WHERE oid = 'salesforce._trigger_log'::regclass") == [("r",)]


@pytest.mark.parametrize("to", ["NEW", "IGNORED"])
def test_trigger_log_updates_move_entries_exactly_as_the_state_machine_decides(hc_app, sf_settings, to):
    """forcebridge.trigger_log_update() (plpgsql: an app's UPDATE runs inside Postgres) mirrors
    core.change_states; this keeps the two in step for every state."""
    from core.change_states import Action, State, requested

    url = sf_settings.database_url
    app_write(url, "INSERT INTO salesforce.invoice__c (name, external_id__c) VALUES ('a', 'A')")
    move_captured_changes(url)
    (log_id,), = sql(url, "SELECT id FROM forcebridge.change_log")
    action = Action.RETRY if to == "NEW" else Action.IGNORE
    for state in State:
        if state == to:
            continue
        sql(url, f"UPDATE forcebridge.change_log SET state = '{state}' WHERE id = {log_id}")
        allowed = requested(state, action, via_trigger_log=True) == State(to)
        try:
            app_write(url, f"UPDATE salesforce._trigger_log SET state = '{to}' WHERE id = {log_id}")
            moved = True
        except psycopg.errors.FeatureNotSupported:
            moved = False
        assert moved == allowed, (state, to)
        assert sql(url, f"SELECT state FROM forcebridge.change_log WHERE id = {log_id}") == [(to if moved else state,)]
