"""Races between the write path and Salesforce: echoes and conflicts while a call is in flight, stale
drains, failures that are not Salesforce's."""
from __future__ import annotations

import dataclasses
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from core.change_states import RecordResult
from core.changes import Outcome, coalesce
from core import soql
from gateway import change_log, mapping_store
from jobs import drift, load, poll, row_filters
from jobs.apply import applying
from jobs.drain import DrainResult, _complete, _start, claim, drain, finish, plan, renew_lease
from jobs.inbound import apply_pending
from jobs.poll import PollResult
from tests.conftest import OUTBOUND_TOKEN
from tests.integration.test_capture import sql, writing_mapping
from tests.integration.test_echo_and_conflicts import om, synced_record
from tests.integration.test_write_path import (FAST, FIELDS, db, invoices, sf, sf_api, sf_app,  # noqa: F401
                                               sf_settings)
from tests.support.messages import envelope


def stamp(offset_s: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() + offset_s))


def notify(sf_app, emulator, sfid, name, modstamp) -> None:
    body = om(emulator.org_id, sfid, name, 1, modstamp, "E")
    assert sf_app.test_client().post(f"/outbound/{OUTBOUND_TOKEN}", data=body,
                                     content_type="text/xml").status_code == 200


def test_echo_of_a_write_in_flight_does_not_drop_a_newer_local_change(sf_api, sf_app, sf_settings, db, sf,
                                                                      emulator):
    url, sfid = synced_record(sf_api, sf_settings, db, sf)
    sql(url, "UPDATE salesforce.invoice__c SET name = 'L1'")
    with ThreadPoolExecutor(max_workers=2) as pool:
        flight = _start(db, sf, claim(db, FAST, "t"), pool, FAST, "t")
        for *_, call in flight.calls:
            call.result()                                                   # L1 is in Salesforce now
        sql(url, "UPDATE salesforce.invoice__c SET name = 'L2'")            # the user writes again
        notify(sf_app, emulator, sfid, "L1", stamp(3600))                   # L1's echo, before our finish
        apply_pending(db)
        _complete(db, flight, FAST, DrainResult())
    assert sql(url, "SELECT name FROM salesforce.invoice__c") == [("L2",)]
    drain(db, sf, FAST)
    assert invoices(sf)["E"]["Name"] == "L2"
    assert sql(url, "SELECT count(*) FROM forcebridge.conflicts") == [(0,)]


def test_salesforce_win_over_a_write_in_flight_sticks(sf_api, sf_app, sf_settings, db, sf, emulator):
    url, sfid = synced_record(sf_api, sf_settings, db, sf, rule="salesforce_wins")
    sql(url, "UPDATE salesforce.invoice__c SET name = 'local'")
    with ThreadPoolExecutor(max_workers=2) as pool:
        flight = _start(db, sf, claim(db, FAST, "t"), pool, FAST, "t")
        notify(sf_app, emulator, sfid, "remote", stamp(60))                 # Salesforce changed it meanwhile
        apply_pending(db)
        assert sql(url, "SELECT name FROM salesforce.invoice__c") == [("remote",)]
        for *_, call in flight.calls:
            call.result()                                                   # our 'local' lands after it
        _complete(db, flight, FAST, DrainResult())
    notify(sf_app, emulator, sfid, "local", stamp(120))                     # the echo of that write
    apply_pending(db)
    drain(db, sf, FAST)
    apply_pending(db)
    assert invoices(sf)["E"]["Name"] == "remote"
    assert sql(url, "SELECT name FROM salesforce.invoice__c") == [("remote",)]


def test_a_drain_whose_lease_lapsed_does_not_overwrite_the_new_owner(sf_api, sf_settings, db, sf, emulator):
    url, _ = synced_record(sf_api, sf_settings, db, sf)
    sql(url, "UPDATE salesforce.invoice__c SET name = 'v1'")
    lapsed = claim(db, dataclasses.replace(FAST, lease_seconds=0), "old")     # its lease is over at once
    with ThreadPoolExecutor(max_workers=2) as pool:
        flight = _start(db, sf, claim(db, FAST, "new"), pool, FAST, "new")    # another drain takes it over
        old_writes, _ = plan(db, sf, flight.planned[0][0], coalesce(lapsed))
        # the old drain's call timed out: it would requeue the change the new owner is sending
        finish(db, flight.planned[0][0], [RecordResult(w.change, Outcome("REQUEUED", error=[{"statusCode": "TIMEOUT"}]), w)
                                           for w in old_writes], FAST, "old")
        _complete(db, flight, FAST, DrainResult())
    assert sql(url, "SELECT state FROM forcebridge.change_log ORDER BY id DESC LIMIT 1") == [("SUCCESS",)]
    assert drain(db, sf, FAST).claimed == 0                                     # nothing is sent twice


def test_a_call_that_breaks_outside_salesforce_requeues_at_once(sf_api, sf_settings, db, sf, emulator, monkeypatch):
    url, _ = synced_record(sf_api, sf_settings, db, sf)
    sql(url, "UPDATE salesforce.invoice__c SET name = 'v1'")

    def broken(*args, **kwargs):
        raise ValueError("Expecting value: line 1 column 1 (char 0)")     # a body that is not JSON
    monkeypatch.setattr(sf, "write_collections", broken)
    assert drain(db, sf, dataclasses.replace(FAST, retry_base_seconds=60)).outcomes == {"REQUEUED": 1}
    (state, error), = sql(url, "SELECT state, error FROM forcebridge.change_log ORDER BY id DESC LIMIT 1")
    assert state == "REQUEUED" and "ValueError" in error[0]["message"]     # not PENDING until the lease ends
    monkeypatch.undo()
    sql(url, "UPDATE forcebridge.change_log SET next_attempt_at = now()")
    drain(db, sf, FAST)
    assert invoices(sf)["E"]["Name"] == "v1"


def test_a_renewed_claim_is_not_taken_over(sf_api, sf_settings, db, sf, emulator):
    url, _ = synced_record(sf_api, sf_settings, db, sf)
    sql(url, "UPDATE salesforce.invoice__c SET name = 'v1'")
    assert len(claim(db, dataclasses.replace(FAST, lease_seconds=0), "slow")) == 1   # lease over at once
    renew_lease(db, FAST, "slow")                                     # ...but its drain is still working
    assert claim(db, FAST, "other") == []


def _created_before_write_back(db, sf, url, inbound) -> tuple[int, str]:
    """A row inserted in Postgres is created in Salesforce; `inbound(sfid)` brings the new record into Postgres
    after the call returned and before the drain writes the sfid back. Returns (the row's id, the sfid)."""
    (row_id,), = sql(url, "SELECT id FROM salesforce.invoice__c")
    with ThreadPoolExecutor(max_workers=2) as pool:
        flight = _start(db, sf, claim(db, FAST, "t"), pool, FAST, "t")
        (_, outcome), = [done for _, call in flight.calls for batch in call.result() for done in batch]
        inbound(outcome.sfid)
        _complete(db, flight, FAST, DrainResult())
    return row_id, outcome.sfid


@pytest.mark.parametrize("reader", ["poll", "drift repair"])
def test_a_record_read_back_before_its_sfid_is_written_merges_into_the_original_row(sf_api, sf_settings, db, sf,
                                                                                     emulator, reader):
    """Without an upsert field nothing links the record to its row until the write-back: the copy a poll or a
    read by Id inserted meanwhile is merged into the app's row, and what Salesforce changed since is read again."""
    m = writing_mapping(sf_api, fields=FIELDS, direction="bidirectional")
    load.run(db, sf, db.fetchone("open_load", {"mapping_id": m["id"]})["id"])     # nothing yet: the poll may run
    url = sf_settings.database_url
    sql(url, "INSERT INTO salesforce.invoice__c (name, amount__c) VALUES ('new', 1)")
    users = emulator.salesforce(client="user")

    def read_back(sfid):
        users.Invoice__c.update(sfid, {"Status__c": "Paid"})               # someone in Salesforce, at once
        if reader == "poll":
            poll.poll(db, sf, mapping_store.get(db, m["id"]), force=True)
        else:
            drift.fetch_by_ids(db, sf, mapping_store.get(db, m["id"]), [sfid], PollResult(m["id"]))
        assert sql(url, "SELECT count(*) FROM salesforce.invoice__c") == [(2,)]   # the race: a copy
    row_id, sfid = _created_before_write_back(db, sf, url, read_back)
    assert sql(url, "SELECT id, sfid, name, _hc_lastop FROM salesforce.invoice__c") == [
        (row_id, sfid, "new", "INSERTED")]
    row_filters.check_pending(db, sf)                                       # the record read again by Id
    assert sql(url, "SELECT id, sfid, name, status__c FROM salesforce.invoice__c") == [(row_id, sfid, "new", "Paid")]
    assert drain(db, sf, FAST).claimed == 0
    assert [r["Name"] for r in sf.query("SELECT Name FROM Invoice__c")] == ["new"]


@pytest.mark.parametrize("upsert", [{"upsert_field": "External_Id__c"}, {}], ids=["upsert", "create"])
def test_an_echo_without_the_external_id_merges_and_a_newer_local_change_still_goes(sf_api, sf_app, sf_settings,
                                                                                     db, sf, emulator, upsert):
    """With an upsert field an echo carrying the external id finds the row (conflicts._link_by_external_id);
    one without it inserted a copy. The app changed the row again meanwhile: that change is kept and sent."""
    writing_mapping(sf_api, fields=FIELDS, direction="bidirectional", **upsert)
    url = sf_settings.database_url
    sql(url, "INSERT INTO salesforce.invoice__c (name, amount__c) VALUES ('L1', 1)")

    def echo(sfid):
        sql(url, "UPDATE salesforce.invoice__c SET name = 'L2'")            # the app writes again
        body = envelope(emulator.org_id, "Invoice__c", [{"Id": sfid, "Name": "L1", "Amount__c": 1,
                                                         "SystemModstamp": stamp(60)}])
        assert sf_app.test_client().post(f"/outbound/{OUTBOUND_TOKEN}", data=body,
                                         content_type="text/xml").status_code == 200
        apply_pending(db)
        assert sql(url, "SELECT count(*) FROM salesforce.invoice__c") == [(2,)]
    row_id, sfid = _created_before_write_back(db, sf, url, echo)
    assert sql(url, "SELECT id, sfid, name, _hc_lastop FROM salesforce.invoice__c") == [(row_id, sfid, "L2", "PENDING")]
    drain(db, sf, FAST)
    row_filters.check_pending(db, sf)
    assert [(r["Id"], r["Name"]) for r in sf.query("SELECT Id, Name FROM Invoice__c")] == [(sfid, "L2")]
    assert sql(url, "SELECT id, sfid, name FROM salesforce.invoice__c") == [(row_id, sfid, "L2")]


def test_a_change_the_app_made_to_the_copy_moves_to_the_original_row(sf_api, sf_settings, db, sf, emulator):
    m = writing_mapping(sf_api, fields=FIELDS, direction="bidirectional")
    url = sf_settings.database_url
    sql(url, "INSERT INTO salesforce.invoice__c (name, amount__c) VALUES ('new', 1)")

    def read_back_then_edit_the_copy(sfid):
        drift.fetch_by_ids(db, sf, mapping_store.get(db, m["id"]), [sfid], PollResult(m["id"]))
        sql(url, "UPDATE salesforce.invoice__c SET amount__c = 7 WHERE sfid IS NOT NULL")   # the app saw two rows
    row_id, sfid = _created_before_write_back(db, sf, url, read_back_then_edit_the_copy)
    assert sql(url, "SELECT id, sfid, name, amount__c, _hc_lastop FROM salesforce.invoice__c") == [
        (row_id, sfid, "new", 7, "PENDING")]
    drain(db, sf, FAST)
    assert [(r["Id"], r["Name"], r["Amount__c"]) for r in sf.query("SELECT Id, Name, Amount__c FROM Invoice__c")] == [
        (sfid, "new", 7)]


def test_an_upsert_that_matched_a_record_another_row_holds_leaves_that_row(sf_api, sf_settings, db, sf, emulator):
    """Not the race: the app's external id matched a record Postgres already holds under another one (changed in
    Salesforce since). That row is the app's too and stays; the new row does not take its sfid."""
    writing_mapping(sf_api, fields=FIELDS, direction="bidirectional", upsert_field="External_Id__c")
    users = emulator.salesforce(client="user")
    sfid = users.Invoice__c.create({"Name": "old", "External_Id__c": "NEW"})["id"]
    url = sf_settings.database_url
    sql(url, "INSERT INTO salesforce.invoice__c (sfid, name, external_id__c) VALUES (%s, 'old', 'OLD')", (sfid,),
        origin="salesforce")
    sql(url, "INSERT INTO salesforce.invoice__c (name, external_id__c) VALUES ('new', 'NEW')")
    drain(db, sf, FAST)
    assert sql(url, "SELECT sfid, name, external_id__c FROM salesforce.invoice__c ORDER BY id") == [
        (sfid, "old", "OLD"), (None, "new", "NEW")]



def test_an_edit_of_the_copy_in_flight_during_the_merge_follows_the_row(sf_api, sf_settings, db, sf, emulator,
                                                                        monkeypatch):
    """The app's edit of the copy was claimed by another drain (PENDING) when the merge ran: it moves to the row
    like the copy's other open entries, so its retry (the call broke) sends the row's values."""
    m = writing_mapping(sf_api, fields=FIELDS, direction="bidirectional")
    url = sf_settings.database_url
    sql(url, "INSERT INTO salesforce.invoice__c (name, amount__c) VALUES ('new', 1)")

    def broken(*args, **kwargs):
        raise ValueError("Expecting value: line 1 column 1 (char 0)")
    with ThreadPoolExecutor(max_workers=1) as pool:
        edits = []

        def read_back_then_edit_the_copy_in_flight(sfid):
            drift.fetch_by_ids(db, sf, mapping_store.get(db, m["id"]), [sfid], PollResult(m["id"]))
            sql(url, "UPDATE salesforce.invoice__c SET amount__c = 7 WHERE sfid IS NOT NULL")
            monkeypatch.setattr(sf, "write_collections", broken)
            edits.append(_start(db, sf, claim(db, FAST, "edit"), pool, FAST, "edit"))
        _, sfid = _created_before_write_back(db, sf, url, read_back_then_edit_the_copy_in_flight)
        _complete(db, edits[0], FAST, DrainResult())
    monkeypatch.undo()
    sql(url, "UPDATE forcebridge.change_log SET next_attempt_at = now()")
    assert drain(db, sf, FAST).outcomes == {"SUCCESS": 1}
    assert [(r["Id"], r["Amount__c"]) for r in sf.query("SELECT Id, Amount__c FROM Invoice__c")] == [(sfid, 7)]


def _waiting_on_a_lock(url, worker) -> None:
    """Until `worker` (a Future) is done or a session of this database waits on a lock (the guard's 60 s only
    keeps a broken run from hanging: nothing is asserted on time)."""
    for _ in range(600):
        if worker.done() or sql(url, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                     "AND wait_event_type = 'Lock'") != [(0,)]:
            return
        time.sleep(0.1)
    raise AssertionError("the other session neither finished nor waited")


def test_a_copy_committed_between_the_merge_and_the_write_back_still_merges(sf_api, sf_settings, db, sf, emulator,
                                                                            monkeypatch):
    """Review 2, finding 6, case A: the inbound read commits its copy after the write-back looked for one and
    before it writes the sfid. It waits for the write-back instead, and then finds the row."""
    m = writing_mapping(sf_api, fields=FIELDS, direction="bidirectional")
    url = sf_settings.database_url
    sql(url, "INSERT INTO salesforce.invoice__c (name, amount__c) VALUES ('new', 1)")
    write_back = change_log.write_back_results
    with ThreadPoolExecutor(max_workers=1) as pool:
        reads = []

        def read_back_after_the_merge(sfid):
            def hook(*args, **kwargs):
                reads.append(pool.submit(drift.fetch_by_ids, db, sf, mapping_store.get(db, m["id"]), [sfid],
                                         PollResult(m["id"])))
                _waiting_on_a_lock(url, reads[0])
                write_back(*args, **kwargs)
            monkeypatch.setattr(change_log, "write_back_results", hook)
        row_id, sfid = _created_before_write_back(db, sf, url, read_back_after_the_merge)
        reads[0].result()
    assert sql(url, "SELECT id, sfid, name FROM salesforce.invoice__c") == [(row_id, sfid, "new")]


def test_a_copy_uncommitted_when_the_write_back_runs_is_merged_once_committed(sf_api, sf_settings, db, sf, emulator):
    """Case B: the inbound insert of the copy is not committed yet when the write-back writes the sfid (before
    the lock: a unique violation, the write-back rolled back and the create sent again)."""
    m = writing_mapping(sf_api, fields=FIELDS, direction="bidirectional")
    url = sf_settings.database_url
    sql(url, "INSERT INTO salesforce.invoice__c (name, amount__c) VALUES ('new', 1)")
    (row_id,), = sql(url, "SELECT id FROM salesforce.invoice__c")
    mapping = mapping_store.get(db, m["id"])
    with ThreadPoolExecutor(max_workers=3) as pool:
        flight = _start(db, sf, claim(db, FAST, "t"), pool, FAST, "t")
        (_, outcome), = [done for _, call in flight.calls for batch in call.result() for done in batch]
        with applying(db) as conn:                      # the inbound read's transaction, open
            poll.apply_records(db, conn, mapping, sf.query(soql.by_ids(mapping, [outcome.sfid])), "drift",
                               PollResult(m["id"]))
            assert sql(url, "SELECT count(*) FROM salesforce.invoice__c") == [(1,)]    # not committed yet
            write_back = pool.submit(_complete, db, flight, FAST, DrainResult())
            _waiting_on_a_lock(url, write_back)
        write_back.result()
    assert sql(url, "SELECT id, sfid, name FROM salesforce.invoice__c") == [(row_id, outcome.sfid, "new")]
    assert sql(url, "SELECT state FROM forcebridge.change_log") == [("SUCCESS",)]
    assert drain(db, sf, FAST).claimed == 0
    assert len(sf.query("SELECT Id FROM Invoice__c")) == 1
