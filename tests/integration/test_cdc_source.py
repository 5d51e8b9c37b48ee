"""Change Data Capture end to end (issue 13): changes made in the emulator reach Postgres through the Pub/Sub API
(gRPC, TLS), the CDC source on the inbound seam and the one apply path; the replay id is stored with them."""
from __future__ import annotations

import dataclasses
import threading
import time

import pytest

from core import trends
from gateway import mapping_store
from jobs import cdc_source
from tests.emulator_fixture import start_emulator
from tests.integration.test_loading import make_app, sql

CONTACT_FIELDS = {"FirstName": {}, "LastName": {}, "Email": {}, "Phone": {}, "MailingCity": {},
                  "LastModifiedDate": {}}


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    with start_emulator(tmp_path_factory.mktemp("cdcsrc") / "org", "--pubsub-keepalive", "0.2") as running:
        yield running


def cdc_settings(settings, emu):
    return dataclasses.replace(
        settings, sf_instance_url=emu.url, sf_username=emu.username, sf_password=emu.password,
        sf_security_token=emu.security_token, sf_ca_bundle=str(emu.ca_path), salesforce_org_id=emu.org_id,
        sf_pubsub_url=emu.pubsub)


@pytest.fixture
def env(settings, emu, enqueued):
    s = cdc_settings(settings, emu)
    app = make_app(s, enqueued)
    db = app.extensions["forcebridge"].db
    client = app.test_client()
    headers = {"Authorization": f"Bearer {s.api_token}"}
    r = client.post("/api/v1/mappings", headers=headers, json={
        "object_name": "Contact", "config": {"access": "read_only", "fields": CONTACT_FIELDS, "sf_source": "cdc",
                                             "keep_deleted_rows": True}})
    assert r.status_code == 201, r.get_json()
    yield s, db, r.get_json()
    app.extensions["forcebridge"].db.close()


class Running:
    def __init__(self, settings, db, **options):
        self.stop = threading.Event()
        self.thread = threading.Thread(target=cdc_source.run, args=(settings, self.stop),
                                       kwargs={"db": db, "check_seconds": 0.2, "standby_seconds": 0.2,
                                               "backoff_base": 0.05, "backoff_cap": 0.2, **options}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(15)


def wait_for(check, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


def connected(db):
    row = db.fetchone("get_document", {"key": "cdc_subscriber"})
    return row and row["value"].get("connected")


def contacts(url):
    return {r[0]: r[1:] for r in sql(url, "SELECT sfid, firstname, lastname, email, phone, mailingcity, isdeleted "
                                          "FROM salesforce.contact")}


def test_create_update_null_delete_undelete_reach_postgres(env, emu):
    settings, db, mapping = env
    url = settings.database_url
    user = emu.salesforce(client="user")
    with Running(settings, db):
        wait_for(lambda: connected(db))
        cid = user.Contact.create({"FirstName": "Ada", "LastName": "Lovelace", "Email": "ada@example.com",
                                   "Phone": "555", "MailingCity": "London"})["id"]
        wait_for(lambda: contacts(url).get(cid) == ("Ada", "Lovelace", "ada@example.com", "555", "London", False))
        user.Contact.update(cid, {"Phone": None, "MailingCity": "Paris"})        # a nulled field, a compound one
        wait_for(lambda: contacts(url).get(cid) == ("Ada", "Lovelace", "ada@example.com", None, "Paris", False))
        user.Contact.delete(cid)
        wait_for(lambda: (contacts(url).get(cid) or ())[-1:] == (True,))
        emu.admin("POST", "/_emulator/undelete", {"sobject": "Contact", "id": cid})
        wait_for(lambda: contacts(url).get(cid) == ("Ada", "Lovelace", "ada@example.com", None, "Paris", False))
        position = db.fetchone("cdc_subscription_state", {"topic": cdc_source.TOPIC})
        assert position["replay_id"] is not None and position["events"] >= 4


def test_a_transaction_of_several_records_and_echoes(env, emu):
    settings, db, mapping = env
    url = settings.database_url
    user = emu.salesforce(client="user")
    ours = emu.salesforce(client="forcebridge")
    with Running(settings, db):
        wait_for(lambda: connected(db))
        result = user.restful("composite/sobjects", method="POST", json={"allOrNone": True, "records": [
            {"attributes": {"type": "Contact"}, "LastName": f"Many {i}", "Email": f"m{i}@example.com"}
            for i in range(5)]})
        ids = [r["id"] for r in result]
        wait_for(lambda: all(contacts(url).get(i) for i in ids))
        # our own write: its event is an echo, dropped (the row is not touched by it)
        sql(url, "UPDATE salesforce.contact SET phone = 'local' WHERE sfid = %s", (ids[0],))
        ours.Contact.update(ids[0], {"Phone": "echo"})
        user.Contact.update(ids[1], {"Phone": "after"})
        wait_for(lambda: contacts(url)[ids[1]][3] == "after")
        assert contacts(url)[ids[0]][3] == "local"


def test_gap_events_read_the_records_again_through_rest(env, emu):
    settings, db, mapping = env
    url = settings.database_url
    user = emu.salesforce(client="user")
    with Running(settings, db):
        wait_for(lambda: connected(db))
        cid = user.Contact.create({"LastName": "Gap", "Email": "gap@example.com"})["id"]
        wait_for(lambda: contacts(url).get(cid))
        sql(url, "UPDATE salesforce.contact SET email = 'stale' WHERE sfid = %s", (cid,))
        emu.admin("POST", "/_emulator/pubsub/gap", {"sobject": "Contact", "ids": [cid], "changeType": "GAP_UPDATE"})
        wait_for(lambda: contacts(url)[cid][2] == "gap@example.com")
        # the pending re-read is deleted after its work is done (jobs/cdc_source.py drain_pending), a moment later
        wait_for(lambda: db.fetchone("cdc_pending_count")["n"] == 0)


def test_an_update_of_a_record_postgres_lacks_is_read_whole(env, emu):
    settings, db, mapping = env
    url = settings.database_url
    user = emu.salesforce(client="user")
    with Running(settings, db):
        wait_for(lambda: connected(db))
        cid = user.Contact.create({"LastName": "Whole", "Email": "w@example.com", "Phone": "1"})["id"]
        wait_for(lambda: contacts(url).get(cid))
        sql(url, "DELETE FROM salesforce.contact WHERE sfid = %s", (cid,))
        user.Contact.update(cid, {"Phone": "2"})
        wait_for(lambda: (contacts(url).get(cid) or (None,) * 4)[3] == "2")
        assert contacts(url)[cid][2] == "w@example.com"          # not only the changed field


def test_a_refused_replay_id_falls_back_to_a_poll_and_says_so(env, emu):
    settings, db, mapping = env
    with db.transaction() as conn:
        conn.execute("INSERT INTO forcebridge.cdc_subscriptions (topic, replay_id, last_commit_at) "
                     "VALUES (%s, %s, now() - interval '80 hours')", (cdc_source.TOPIC, b"\x00\x00\x00\x00\xff\xff\xff\xff"))
    with Running(settings, db):
        doc = wait_for(lambda: (db.fetchone("get_document", {"key": "cdc_subscriber"}) or {}).get("value", {})
                       .get("refused"))
        assert "replay id" in doc and "Contact" in doc
        wait_for(lambda: connected(db))
    state = db.fetchone("cdc_subscription_state", {"topic": cdc_source.TOPIC})
    assert state["refused_at"] is not None


def test_no_cdc_mapping_no_subscription(settings, emu, enqueued):
    s = cdc_settings(settings, emu)
    app = make_app(s, enqueued)
    db = app.extensions["forcebridge"].db
    try:
        assert not cdc_source.wanted(s, db)
        m = mapping_store.list_all(db)
        assert m == []
    finally:
        db.close()


def worker_env(settings, emu, tmp_path):
    import os
    return dict(os.environ, DATABASE_URL=settings.database_url, SF_INSTANCE_URL=emu.url, SF_USERNAME=emu.username,
                SF_PASSWORD=emu.password, SF_SECURITY_TOKEN=emu.security_token, SF_CA_BUNDLE=str(emu.ca_path),
                SF_PUBSUB_URL=emu.pubsub, SALESFORCE_ORG_ID=emu.org_id, SECRET_KEY="x",
                FORCEBRIDGE_INSTANCE=str(tmp_path), HUEY_URL=f"sqlite:///{tmp_path / 'h.db'}")


def start_worker(env, tmp_path, n):
    import subprocess
    import sys

    from tests.emulator_fixture import REPO
    log = open(tmp_path / f"worker{n}.log", "w")
    return subprocess.Popen([sys.executable, "-m", "jobs.worker", "-w", "1", "-n"], cwd=REPO, env=env,
                            stdout=log, stderr=subprocess.STDOUT)


def events_applied(db):
    row = db.fetchone("cdc_subscription_state", {"topic": cdc_source.TOPIC})
    return row["events"] if row else 0


def test_worker_killed_mid_stream_restarts_and_applies_every_event_exactly_once(env, emu, tmp_path):
    """The real worker process (jobs.worker) subscribes because a mapping says sf_source cdc; kill -9 it in
    the middle of a stream of changes, start another: every event applied, none twice (the events counter is
    stored in the transaction that stores the replay id and what the events brought)."""
    import signal

    settings, db, mapping = env
    url = settings.database_url
    user = emu.salesforce(client="user")
    environment = worker_env(settings, emu, tmp_path)
    worker = start_worker(environment, tmp_path, 1)
    try:
        wait_for(lambda: connected(db), timeout=40)
        before = events_applied(db)
        ids = []
        for i in range(40):
            ids.append(user.Contact.create({"LastName": f"Kill {i}", "Email": f"k{i}@example.com"})["id"])
            user.Contact.update(ids[-1], {"Phone": f"p{i}"})
            if i == 15:
                wait_for(lambda: events_applied(db) > before + 4)
                worker.send_signal(signal.SIGKILL)
                worker.wait()
                # its last word was "connected"; with no worker holding the subscription the console says unknown
                stale = wait_for(lambda: cdc_source.status(db)["stale"] and cdc_source.status(db))
                assert not stale["connected"] and stale["stale_since"] is not None
        assert events_applied(db) < before + 80            # the rest came while no worker ran
        worker = start_worker(environment, tmp_path, 2)
        wait_for(lambda: events_applied(db) >= before + 80, timeout=60)
        time.sleep(1.0)                                    # anything more would be a duplicate
        assert events_applied(db) == before + 80
        rows = contacts(url)
        assert all(rows[cid][3] == f"p{i}" for i, cid in enumerate(ids))
        assert sql(url, "SELECT count(*), count(DISTINCT sfid) FROM salesforce.contact WHERE lastname LIKE 'Kill %%'") \
            == [(40, 40)]
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()


def test_gap_overflow_polls_the_object(env, emu):
    from gateway.salesforce import Salesforce
    from jobs import load

    settings, db, mapping = env
    url = settings.database_url
    user = emu.salesforce(client="user")
    cid = user.Contact.create({"LastName": "Overflow", "Email": "o@example.com"})["id"]
    sf = Salesforce(settings, backoff=0.01)
    try:
        load.run_pending(db, sf, load.LoadOptions())
    finally:
        sf.close()
    assert contacts(url)[cid][2] == "o@example.com"
    sql(url, "UPDATE salesforce.contact SET email = 'lost' WHERE sfid = %s", (cid,))
    with Running(settings, db):
        wait_for(lambda: connected(db))
        emu.admin("POST", "/_emulator/pubsub/gap", {"sobject": "Contact", "ids": [cid], "changeType": "GAP_OVERFLOW"})
        wait_for(lambda: contacts(url)[cid][2] == "o@example.com")
        wait_for(lambda: db.fetchone("cdc_pending_count")["n"] == 0)
    state = db.fetchone("get_poll_state", {"mapping_id": mapping["id"]})
    assert state["last_polled_at"] is not None


def test_the_console_shows_the_source_per_mapping_and_the_subscriber(settings, emu, enqueued):
    from tests.support.console import BASE, PASSWORD, sign_in

    s = dataclasses.replace(cdc_settings(settings, emu), admin_password=PASSWORD)
    app = make_app(s, enqueued)
    db = app.extensions["forcebridge"].db
    try:
        api = app.test_client()
        headers = {"Authorization": f"Bearer {s.api_token}"}
        for name, fields, source in (("Contact", CONTACT_FIELDS, "cdc"), ("Account", {"Name": {}}, None)):
            config = {"access": "read_only", "fields": fields, **({"sf_source": source} if source else {})}
            assert api.post("/api/v1/mappings", headers=headers,
                            json={"object_name": name, "config": config}).status_code == 201
        browser = app.test_client()
        sign_in(browser)
        listing = browser.get("/mappings", base_url=BASE).text
        assert "from Change Data Capture" in listing and "from Outbound Messages" in listing
        assert "Change Data Capture" in browser.get("/", base_url=BASE).text          # not started yet
        user = emu.salesforce(client="user")
        with Running(s, db):
            wait_for(lambda: connected(db))
            cid = user.Contact.create({"LastName": "Console"})["id"]
            wait_for(lambda: contacts(s.database_url).get(cid))
            page = browser.get("/", base_url=BASE).text
        assert 'id="cdc"' in page and "connected" in page and "Replay position" in page
        assert cdc_source.status(db)["events_last_hour"] >= 1
        # the Overview's "this hour" and Trends' CDC series count the same events (an echo included)
        with Running(s, db):
            wait_for(lambda: connected(db))
            emu.salesforce(client="forcebridge").Contact.update(cid, {"Phone": "echo"})
            wait_for(lambda: events_applied(db) >= 2)
        shaped = trends.hourly_series(db.fetchall("hourly_stats", {"hours": 1, "mapping_id": None}))
        cdc_series = next(x for x in shaped["series"] if x["key"] == "sf_to_pg:cdc_events")
        assert cdc_source.status(db)["events_last_hour"] == cdc_series["counts"][-1] == 2
    finally:
        db.close()


def test_three_workers_one_subscriber_and_failover_when_it_dies(env, emu, tmp_path):
    import signal

    settings, db, mapping = env
    url = settings.database_url
    user = emu.salesforce(client="user")
    environment = worker_env(settings, emu, tmp_path)
    workers = [start_worker(environment, tmp_path, n) for n in range(3)]
    try:
        wait_for(lambda: connected(db), timeout=40)
        time.sleep(1.0)          # the standbys have asked for the lock by now
        held = sql(url, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = 1128547139 "
                        "AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")
        assert held == [(1,)]
        before = events_applied(db)
        first = user.Contact.create({"LastName": "Failover 0"})["id"]
        wait_for(lambda: contacts(url).get(first))
        elected = db.fetchone("cdc_subscription_state", {"topic": cdc_source.TOPIC})["subscriber"]
        pid = int(elected.split(":")[1])
        victim = next(w for w in workers if w.pid == pid)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        ids = [user.Contact.create({"LastName": f"Failover {i}"})["id"] for i in range(1, 11)]
        wait_for(lambda: all(contacts(url).get(i) for i in ids), timeout=60)
        after = db.fetchone("cdc_subscription_state", {"topic": cdc_source.TOPIC})["subscriber"]
        assert after != elected and int(after.split(":")[1]) in [w.pid for w in workers if w is not victim]
        time.sleep(1.0)
        assert events_applied(db) == before + 11                # each event once, across the failover
    finally:
        for w in workers:
            if w.poll() is None:
                w.send_signal(signal.SIGKILL)
                w.wait()


def test_the_mapping_form_sets_the_salesforce_source(settings, emu, enqueued):
    from tests.support.console import BASE, PASSWORD, csrf_of, sign_in

    s = dataclasses.replace(cdc_settings(settings, emu), admin_password=PASSWORD)
    app = make_app(s, enqueued)
    db = app.extensions["forcebridge"].db
    try:
        r = app.test_client().post("/api/v1/mappings", headers={"Authorization": f"Bearer {s.api_token}"},
                                   json={"object_name": "Contact", "config": {"access": "read_only",
                                                                              "fields": CONTACT_FIELDS}})
        mapping_id = r.get_json()["id"]
        browser = app.test_client()
        sign_in(browser)
        form = browser.get(f"/mappings/{mapping_id}/edit", base_url=BASE).text
        assert 'name="sf_source"' in form
        data = {"csrf_token": csrf_of(browser), "field": list(CONTACT_FIELDS), "direction": "sf_to_pg",
                "conflict_rule": "last_writer_wins", "sf_source": "cdc"}
        assert browser.post(f"/mappings/{mapping_id}", base_url=BASE, data=data).status_code == 303
        assert mapping_store.get(db, mapping_id).extra["sf_source"] == "cdc"
        assert cdc_source.wanted(s, db)
        data["sf_source"] = "pigeon"
        refused = browser.post(f"/mappings/{mapping_id}", base_url=BASE, data=data)
        assert refused.status_code == 422 and "sf_source" in refused.text
        assert mapping_store.get(db, mapping_id).extra["sf_source"] == "cdc"
    finally:
        db.close()


@pytest.mark.parametrize("fault", [("/_emulator/pubsub/faults", {"resetStreams": "UNAVAILABLE"}),
                                   ("/_emulator/pubsub/faults", {"unavailable": 3}),
                                   ("/_emulator/sessions/expire", {})])
def test_stream_faults_are_recovered_every_event_once(env, emu, fault):
    settings, db, mapping = env
    url = settings.database_url
    user = emu.salesforce(client="user")
    with Running(settings, db):
        wait_for(lambda: connected(db))
        before = events_applied(db)
        first = user.Contact.create({"LastName": "Fault A"})["id"]
        wait_for(lambda: contacts(url).get(first))
        emu.admin("POST", *fault) if fault[1] else emu.admin("POST", fault[0])
        second = user.Contact.create({"LastName": "Fault B"})["id"]
        wait_for(lambda: contacts(url).get(second), timeout=30)
        time.sleep(0.5)
        assert events_applied(db) == before + 2


# prefetch: two batches of credit at the start, each batch renewed as it arrives; the server may send both
# first batches' worth in one response (the credit allows it)
@pytest.mark.parametrize("prefetch, ahead", [(False, 0), (True, 4)])
def test_prefetch_asks_for_the_next_batch_while_this_one_is_applied(tmp_path, prefetch, ahead):
    from gateway.pubsub import PubSubClient
    from gateway.salesforce import Salesforce
    from settings import Settings

    with start_emulator(tmp_path / "org") as own:
        settings = Settings.from_env(database_url="", sf_instance_url=own.url, sf_username=own.username,
                                     sf_password=own.password, sf_security_token=own.security_token,
                                     sf_ca_bundle=str(own.ca_path), sf_pubsub_url=own.pubsub, salesforce_org_id="")
        user = own.salesforce(client="user")
        for i in range(8):
            user.Contact.create({"LastName": f"Prefetch {i}"})
        rest = Salesforce(settings)
        client = PubSubClient(settings, rest)
        try:
            stream = client.subscribe("/data/ContactChangeEvent", preset="EARLIEST", batch=2, prefetch=prefetch)
            first = next(stream)
            assert len(first.changes) == 2 or (prefetch and len(first.changes) == 4)
            time.sleep(0.5)                          # the caller "applies" the first batch
            assert own.admin("GET", "/_emulator/pubsub")["delivered"] == ahead + len(first.changes)
            stream.close()
        finally:
            client.close()
            rest.close()


def test_the_delivery_allocation_exceeded_pauses_the_subscriber_polls_meanwhile_and_resumes(env, emu):
    """Salesforce ends the stream when the org's delivery allocation is used up: the subscriber says so (console,
    the document the "CDC subscriber disconnected" alert reads), stays away for a while instead of flapping, the
    backstop poll brings the changes meanwhile, and the subscription resumes from its replay id afterwards."""
    from gateway.salesforce import Salesforce
    from jobs import load

    settings, db, mapping = env
    url = settings.database_url
    user = emu.salesforce(client="user")
    sf = Salesforce(settings, backoff=0.01)
    try:
        load.run_pending(db, sf, load.LoadOptions())       # the poll starts from the load's watermark
    finally:
        sf.close()
    try:
        with Running(settings, db, allocation_pause=3.0, cover_seconds=0.3):
            wait_for(lambda: connected(db))
            before = events_applied(db)
            emu.admin("POST", "/_emulator/pubsub/faults", {"allocationExceeded": True})
            wait_for(lambda: cdc_source.status(db)["state"] == "allocation_exceeded")
            doc = db.fetchone("get_document", {"key": "cdc_subscriber"})["value"]
            assert doc["connected"] is False and "limit.exceeded" in doc["error"]
            cid = user.Contact.create({"LastName": "Over allocation", "Email": "over@example.com"})["id"]
            wait_for(lambda: contacts(url).get(cid))                   # brought by the poll
            assert events_applied(db) == before
            emu.admin("POST", "/_emulator/limits", {"deliveredEvents": 0})   # the rolling window moved on
            wait_for(lambda: connected(db), timeout=30)
            wait_for(lambda: events_applied(db) == before + 1)        # the event too, from the stored replay id
        assert cdc_source.status(db)["state"] == "stopped"
    finally:
        emu.admin("POST", "/_emulator/limits", {"deliveredEvents": 0})


def test_a_change_postgres_refuses_lands_on_the_errors_page_and_the_stream_goes_on(settings, emu, enqueued):
    from gateway.salesforce import Salesforce
    from jobs import inbound
    from tests.support.console import BASE, PASSWORD, csrf_of, sign_in

    s = dataclasses.replace(cdc_settings(settings, emu), admin_password=PASSWORD)
    app = make_app(s, enqueued)
    db = app.extensions["forcebridge"].db
    try:
        assert app.test_client().post("/api/v1/mappings", headers={"Authorization": f"Bearer {s.api_token}"}, json={
            "object_name": "Contact", "config": {"access": "read_only", "fields": CONTACT_FIELDS,
                                                 "sf_source": "cdc"}}).status_code == 201
        sql(s.database_url, "ALTER TABLE salesforce.contact ADD CONSTRAINT not_refused CHECK (lastname <> 'Refused')")
        user = emu.salesforce(client="user")
        with Running(s, db):
            wait_for(lambda: connected(db))
            refused = user.Contact.create({"LastName": "Refused", "Email": "no@example.com"})["id"]
            accepted = user.Contact.create({"LastName": "Accepted"})["id"]
            wait_for(lambda: contacts(s.database_url).get(accepted))      # the stream did not stop
        assert refused not in contacts(s.database_url)
        browser = app.test_client()
        sign_in(browser)
        page = browser.get("/errors", base_url=BASE).text
        assert refused in page and "not_refused" in page and 'data-source="cdc"' in page
        [failed] = db.fetchall("list_notifications", {"state": "failed", "limit": 10})
        assert failed["sfid"] == refused and failed["notification_id"].startswith("cdc:")
        # fixed in Postgres, retried from the Errors page: the record is read whole by Id and applied
        sql(s.database_url, "ALTER TABLE salesforce.contact DROP CONSTRAINT not_refused")
        retried = browser.post(f"/errors/notifications/{failed['notification_id']}/retry", base_url=BASE,
                               data={"csrf_token": csrf_of(browser)})
        assert retried.status_code in (200, 303)
        inbound.apply_pending(db)
        assert inbox_state(s.database_url, failed["notification_id"])[0] == "refetching"
        sf = Salesforce(s, backoff=0.01)
        try:
            assert cdc_source.drain_pending(db, sf)["fetched"] == 1     # what the subscriber does after each batch
        finally:
            sf.close()
        assert contacts(s.database_url)[refused][1:3] == ("Refused", "no@example.com")
        assert inbox_state(s.database_url, failed["notification_id"]) == ("applied", None)
    finally:
        db.close()


def test_an_object_not_selected_for_cdc_is_named_on_the_overview(env, emu, enqueued):
    from tests.support.console import BASE, PASSWORD, sign_in

    settings, db, mapping = env
    emu.admin("PUT", "/_emulator/pubsub/entities", {"entities": ["Account"]})
    app = make_app(dataclasses.replace(settings, admin_password=PASSWORD), enqueued)
    try:
        with Running(settings, db):
            wait_for(lambda: connected(db))
            assert wait_for(lambda: cdc_source.status(db)["unselected"]) == ["Contact"]
            browser = app.test_client()
            sign_in(browser)
            page = browser.get("/", base_url=BASE).text
            assert 'data-state="unselected"' in page and "Salesforce: Contact." in page
        emu.admin("PUT", "/_emulator/pubsub/entities", {"entities": None})
        with Running(settings, db):
            wait_for(lambda: connected(db) and cdc_source.status(db)["unselected"] == [])
    finally:
        emu.admin("PUT", "/_emulator/pubsub/entities", {"entities": None})
        app.extensions["forcebridge"].db.close()


def test_the_allocation_pause_moves_the_poll_back_once_and_its_polls_keep_the_budget(env, emu, monkeypatch):
    """Each 10-minute turn of the pause polls; only the first moves the watermark back to the last applied event
    (else every turn reads again everything since the pause began). The polls wait while the API budget pauses
    polls and are counted as polls."""
    from gateway.pubsub import AllocationExceeded
    from gateway.salesforce import Salesforce
    from jobs import load

    settings, db, mapping = env
    url = settings.database_url
    sf = Salesforce(settings, backoff=0.01)
    try:
        load.run_pending(db, sf, load.LoadOptions())
        sql(url, "INSERT INTO forcebridge.cdc_subscriptions (topic, last_commit_at) VALUES (%s, now() - interval "
                 "'1 hour')", (cdc_source.TOPIC,))
        exceeded = cdc_source.on_exceeded(db)
        error = AllocationExceeded("RESOURCE_EXHAUSTED", "sfdc.platform.eventbus.grpc.subscription.limit.exceeded",
                                   "used up")
        moved_back = ("SELECT p.watermark = s.last_commit_at FROM forcebridge.poll_state p, "
                      "forcebridge.cdc_subscriptions s WHERE p.mapping_id = %s")
        with db.transaction() as conn:
            exceeded(conn, error, first=True)
        assert sql(url, moved_back, (mapping["id"],)) == [(True,)]
        monkeypatch.setattr(cdc_source.budget, "allows", lambda db, kind: kind != "polls")
        assert cdc_source.drain_pending(db, sf)["waiting"] == 1                 # the budget's poll pause holds it
        monkeypatch.undo()
        sf.take_usage()
        assert cdc_source.drain_pending(db, sf)["polled"] == 1
        assert {kind for (_, kind, _) in sf.take_usage()[0]} == {"polls"}
        sql(url, "UPDATE forcebridge.poll_state SET watermark = now()")      # later polls got further
        for _ in range(2):                                                     # later turns of the pause
            with db.transaction() as conn:
                exceeded(conn, error, first=False)
        assert sql(url, moved_back, (mapping["id"],)) == [(False,)]
        assert db.fetchone("cdc_pending_count")["n"] == 1                      # one poll queued, not two
    finally:
        sf.close()


def test_the_unselected_objects_outlive_a_disconnection_in_the_document(env, emu):
    settings, db, mapping = env
    cdc_source._on_state(db, "connected", None)
    with db.transaction() as conn:
        cdc_source.write_document(db, conn, True, unselected=["Contact"])
    cdc_source._on_state(db, "reconnecting", "UNAVAILABLE")
    assert cdc_source.status(db)["unselected"] == ["Contact"]


@pytest.fixture
def refusing(settings, emu, enqueued):
    """A CDC mapping of Contact that deletes rows (no keep_deleted_rows), Ada in Postgres, and a user's table whose
    foreign key restricts deleting her."""
    s = cdc_settings(settings, emu)
    app = make_app(s, enqueued)
    db = app.extensions["forcebridge"].db
    assert app.test_client().post("/api/v1/mappings", headers={"Authorization": f"Bearer {s.api_token}"}, json={
        "object_name": "Contact", "config": {"access": "read_only", "fields": CONTACT_FIELDS,
                                             "sf_source": "cdc"}}).status_code == 201
    user = emu.salesforce(client="user")
    with Running(s, db) as running:
        wait_for(lambda: connected(db))
        ada = user.Contact.create({"LastName": "Lovelace", "Email": "ada@example.com"})["id"]
        wait_for(lambda: contacts(s.database_url).get(ada))
        yield s, db, user, ada, running
    db.close()


def failed_notifications(db):
    return db.fetchall("list_notifications", {"state": "failed", "limit": 10})


def retry(db, failed):
    from jobs import inbound

    assert db.fetchone("retry_notification", {"id": failed["notification_id"]})      # the Errors page's Retry
    inbound.apply_pending(db)


def inbox_state(url, nid):
    [(state, error)] = sql(url, "SELECT state, error FROM forcebridge.inbox WHERE notification_id = %s", (nid,))
    return state, error


def test_a_refused_update_retried_after_a_later_change_reads_the_record_whole(refusing, emu):
    """An update event carries only the changed fields and LastModifiedDate: replayed after a later change was
    applied it would be refused by the never-backwards rule, yet marked applied. Retry reads the record instead."""
    s, db, user, ada, running = refusing
    url = s.database_url
    sql(url, "ALTER TABLE salesforce.contact ADD CONSTRAINT no_bad CHECK (email <> 'bad@example.com')")
    user.Contact.update(ada, {"Email": "bad@example.com"})                 # refused by Postgres
    [failed] = wait_for(lambda: failed_notifications(db))
    emu.admin("POST", "/_emulator/clock", {"advance": 5})                  # a later change, a later stamp
    user.Contact.update(ada, {"Phone": "555"})
    wait_for(lambda: contacts(url)[ada][3] == "555")
    assert contacts(url)[ada][2] == "ada@example.com"
    sql(url, "ALTER TABLE salesforce.contact DROP CONSTRAINT no_bad")      # fixed in Postgres, then Retry
    retry(db, failed)
    wait_for(lambda: inbox_state(url, failed["notification_id"])[0] == "applied")   # the subscriber read it whole
    assert contacts(url)[ada][1:5] == ("Lovelace", "bad@example.com", "555", None)


def test_a_refused_delete_fails_alone_and_retry_deletes(refusing):
    """A foreign key of the user's own restricts deleting a row: the delete is kept on the Errors page, the stream
    goes on; once the user's row is gone, Retry deletes (the record read by Id: Salesforce no longer has it)."""
    s, db, user, ada, running = refusing
    url = s.database_url
    sql(url, "DROP TABLE IF EXISTS public.orders")
    sql(url, "CREATE TABLE public.orders (contact varchar(18) REFERENCES salesforce.contact (sfid) "
             "ON DELETE RESTRICT)")
    sql(url, "INSERT INTO public.orders VALUES (%s)", (ada,))
    user.Contact.delete(ada)
    after = user.Contact.create({"LastName": "After"})["id"]
    wait_for(lambda: contacts(url).get(after))                            # the stream did not stall
    [failed] = failed_notifications(db)
    assert failed["sfid"] == ada and "refused the delete" in failed["error"] and ada in contacts(url)
    retry(db, failed)
    wait_for(lambda: inbox_state(url, failed["notification_id"])[0] == "failed")      # still restricted
    assert "orders" in inbox_state(url, failed["notification_id"])[1] and ada in contacts(url)
    sql(url, "DELETE FROM public.orders")
    retry(db, failed)
    wait_for(lambda: inbox_state(url, failed["notification_id"])[0] == "applied")
    assert ada not in contacts(url)
