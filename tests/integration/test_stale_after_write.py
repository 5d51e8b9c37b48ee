"""A Salesforce state older than our last successful write of a record does not undo that write in Postgres
(docs/architecture.md, "Never backwards after our own write"): the write-back does not advance the row's
SystemModstamp and the echo of our write rarely comes, so without this rule a late Outbound Message (or a poll
that read the record before our write) passed the never-backwards test and put back values Salesforce no
longer holds."""
from __future__ import annotations

from psycopg import sql as psql

from core import soql
from gateway import mapping_store, staging
from jobs import load, poll
from jobs.apply import applying
from jobs.drain import drain
from jobs.inbound import apply_pending
from jobs.poll import PollResult
from tests.conftest import OUTBOUND_TOKEN
from tests.integration.test_capture import sql
from tests.integration.test_echo_and_conflicts import synced_record
from tests.integration.test_write_path import FAST, db, invoices, sf, sf_api, sf_app, sf_settings  # noqa: F401
from tests.integration.test_write_races import stamp
from tests.support.messages import envelope


def notify(sf_app, emulator, sfid, name, amount, modstamp) -> None:
    body = envelope(emulator.org_id, "Invoice__c", [{"Id": sfid, "Name": name, "Amount__c": amount,
                                                     "External_Id__c": "E", "SystemModstamp": modstamp}])
    assert sf_app.test_client().post(f"/outbound/{OUTBOUND_TOKEN}", data=body,
                                     content_type="text/xml").status_code == 200
    apply_pending(sf_app.extensions["forcebridge"].db)


def _created_long_ago(sf_api, sf_settings, db, sf) -> tuple[str, str]:
    """synced_record, its create an hour old (Salesforce holds no state of a record older than its create)."""
    url, sfid = synced_record(sf_api, sf_settings, db, sf)
    sql(url, "UPDATE forcebridge.change_log SET created_at = created_at - interval '1 hour'")
    return url, sfid


def _written(sf_api, sf_app, sf_settings, db, sf, emulator) -> tuple[str, str]:
    """A synced record at an old stamp, then the app's change of its name written to Salesforce."""
    url, sfid = _created_long_ago(sf_api, sf_settings, db, sf)
    notify(sf_app, emulator, sfid, "v0", 1, stamp(-600))                  # the row's state: 10 minutes old
    assert sql(url, "SELECT name, amount__c FROM salesforce.invoice__c") == [("v0", 1)]
    sql(url, "UPDATE salesforce.invoice__c SET name = 'app'")
    assert drain(db, sf, FAST).outcomes == {"SUCCESS": 1}
    assert invoices(sf)["E"]["Name"] == "app"
    return url, sfid


def test_a_late_state_from_before_our_write_does_not_undo_it(sf_api, sf_app, sf_settings, db, sf, emulator):
    url, sfid = _written(sf_api, sf_app, sf_settings, db, sf, emulator)
    # a Salesforce user's change of the amount, 5 minutes ago (before our write): its Outbound Message was
    # retried and arrives only now, carrying the name as it was then
    notify(sf_app, emulator, sfid, "v0", 5, stamp(-300))
    assert sql(url, "SELECT name, amount__c FROM salesforce.invoice__c") == [("app", 5)]   # its amount lands
    assert invoices(sf)["E"]["Name"] == "app"
    assert drain(db, sf, FAST).claimed == 0                                 # nothing goes back to Salesforce


def test_a_salesforce_change_after_our_write_still_wins(sf_api, sf_app, sf_settings, db, sf, emulator):
    url, sfid = _written(sf_api, sf_app, sf_settings, db, sf, emulator)
    notify(sf_app, emulator, sfid, "user", 1, stamp(60))                    # a user's change after ours
    assert sql(url, "SELECT name FROM salesforce.invoice__c") == [("user",)]
    notify(sf_app, emulator, sfid, "v0", 1, stamp(-300))                    # then a late one from before both
    assert sql(url, "SELECT name FROM salesforce.invoice__c") == [("user",)]   # never backwards, as always


def test_a_poll_that_read_before_our_write_does_not_undo_it(sf_api, sf_settings, db, sf, emulator):
    url, sfid = _created_long_ago(sf_api, sf_settings, db, sf)
    (m,) = sf_api.get("/api/v1/mappings").get_json()["mappings"]
    mapping = mapping_store.get(db, m["id"])
    read = sf.query(soql.by_ids(mapping, [sfid]))                           # the poll reads the record...
    read[0]["SystemModstamp"] = stamp(-60)                                  # (as it was stamped a minute ago)
    sql(url, "UPDATE salesforce.invoice__c SET name = 'app'")
    assert drain(db, sf, FAST).outcomes == {"SUCCESS": 1}                   # ...our write goes out...
    with applying(db) as conn:                                              # ...and the poll applies after it
        poll.apply_records(db, conn, mapping, read, "poll", PollResult(m["id"]))
    assert sql(url, "SELECT name FROM salesforce.invoice__c") == [("app",)]
    assert invoices(sf)["E"]["Name"] == "app"


def test_a_bulk_poll_that_read_before_our_write_does_not_undo_it(sf_api, sf_settings, db, sf, emulator,
                                                                  monkeypatch):
    url, _ = _created_long_ago(sf_api, sf_settings, db, sf)
    (m,) = sf_api.get("/api/v1/mappings").get_json()["mappings"]
    load.run(db, sf, db.fetchone("open_load", {"mapping_id": m["id"]})["id"])     # the poll may run
    # stamps on Postgres's clock, not the emulator's (other tests move the shared emulator's clock forward)
    sql(url, "UPDATE salesforce.invoice__c SET systemmodstamp = (now() AT TIME ZONE 'UTC') - interval '2 minutes'",
        origin="salesforce")                                                # the row's state: 2 minutes old
    sql(url, "UPDATE forcebridge.poll_state SET last_polled_at = now() - interval '1 hour', last_changed = 5000")
    staged = poll.stage_bulk_query

    def read_then_write(db_, sf_, name, *args, **kwargs):
        job = staged(db_, sf_, name, *args, **kwargs)                       # the Bulk job read the record...
        sql(url, psql.SQL("UPDATE {} SET systemmodstamp = now() - interval '1 minute'").format(
            staging.ident(name)))                                         # (as stamped a minute ago)
        sql(url, "UPDATE salesforce.invoice__c SET name = 'app'")
        assert drain(db, sf, FAST).outcomes == {"SUCCESS": 1}               # ...our write goes out...
        return job                                                          # ...and the poll merges after it
    monkeypatch.setattr(poll, "stage_bulk_query", read_then_write)
    assert poll.poll(db, sf, mapping_store.get(db, m["id"]), force=True, bulk_above=0).read == 1
    assert sql(url, "SELECT name FROM salesforce.invoice__c") == [("app",)]
    assert invoices(sf)["E"]["Name"] == "app"
