"""The listener wakes the drain on commit; finished log entries are archived, then purged."""
from __future__ import annotations

import dataclasses
import threading

from jobs.drain import archive, drain, next_retry_in
from jobs.listener import Listener
from tests.integration.test_capture import sql, writing_mapping
from tests.integration.test_write_path import (FAST, FIELDS, collection_calls, db, invoices,  # noqa: F401
                                               sf, sf_api, sf_app, sf_settings)


def test_a_commit_wakes_the_drain_and_an_idle_system_calls_nobody(sf_api, sf_settings, db, sf, emulator):
    writing_mapping(sf_api, fields=FIELDS, upsert_field="External_Id__c")
    url = sf_settings.database_url
    drained = threading.Event()
    wakes = []

    def on_change():
        result = drain(db, sf, FAST)
        wakes.append(result.claimed)
        if result.claimed:
            drained.set()

    listener = Listener(url, on_change)
    listener.start()
    try:
        assert listener.listening.wait(10)
        assert collection_calls(emulator) == 0          # woke once at start, found nothing, called nobody
        sql(url, "INSERT INTO salesforce.invoice__c (name, external_id__c) VALUES ('heard', 'H')")
        assert drained.wait(10), "the notification did not wake the drain"
    finally:
        listener.stop()
    assert invoices(sf)["H"]["Name"] == "heard"
    assert collection_calls(emulator) == 1


def test_finished_entries_move_to_the_archive_and_are_purged(sf_api, sf_settings, db, sf):
    writing_mapping(sf_api, fields=FIELDS, upsert_field="External_Id__c")
    url = sf_settings.database_url
    sql(url, "INSERT INTO salesforce.invoice__c (name, status__c) VALUES ('ok', 'Draft'), ('bad', 'Bogus')")
    drain(db, sf, FAST)
    archive(db, after_hours=24, purge_days=30)
    assert sql(url, "SELECT count(*) FROM forcebridge.change_log") == [(2,)]      # too young to move
    sql(url, "UPDATE forcebridge.change_log SET finished_at = finished_at - interval '25 hours'")
    archive(db, after_hours=24, purge_days=30)
    # the failure stays in the live table until somebody retries or ignores it
    assert sql(url, "SELECT state FROM forcebridge.change_log") == [("FAILED",)]
    assert sql(url, "SELECT state FROM forcebridge.change_log_archive") == [("SUCCESS",)]
    sql(url, "UPDATE forcebridge.change_log_archive SET archived_at = archived_at - interval '31 days'")
    archive(db, after_hours=24, purge_days=30)
    assert sql(url, "SELECT count(*) FROM forcebridge.change_log_archive") == [(0,)]


def test_a_change_waiting_for_its_retry_is_sent_when_due_without_a_new_commit(sf_api, sf_settings, db, sf, emulator):
    writing_mapping(sf_api, fields=FIELDS, upsert_field="External_Id__c")
    url = sf_settings.database_url
    emulator.admin("POST", "/_emulator/faults", {"rules": {"composite.*": {"errors": {"REQUEST_LIMIT_EXCEEDED": 1}}}})
    done = threading.Event()
    options = dataclasses.replace(FAST, retry_base_seconds=0.2)

    def on_change():
        result = drain(db, sf, options)
        if result.outcomes.get("REQUEUED"):
            emulator.admin("DELETE", "/_emulator/faults")     # the limit resets; nobody commits anything
        if result.outcomes.get("SUCCESS"):
            done.set()

    listener = Listener(url, on_change, next_wake=lambda: next_retry_in(db))
    listener.start()
    try:
        assert listener.listening.wait(10)
        sql(url, "INSERT INTO salesforce.invoice__c (name, external_id__c) VALUES ('later', 'L')")
        assert done.wait(15), "the retry was not sent when it came due"
    finally:
        listener.stop()
    assert invoices(sf)["L"]["Name"] == "later"


def test_a_stopping_worker_claims_nothing_more(sf_api, sf_settings, db, sf, emulator):
    writing_mapping(sf_api, fields=FIELDS, upsert_field="External_Id__c")
    sql(sf_settings.database_url, "INSERT INTO salesforce.invoice__c (name) VALUES ('after shutdown')")
    stop = threading.Event()
    stop.set()
    assert drain(db, sf, FAST, stop=stop).claimed == 0
    assert sql(sf_settings.database_url, "SELECT state FROM forcebridge.open_changes") == [("NEW",)]
    assert collection_calls(emulator) == 0
