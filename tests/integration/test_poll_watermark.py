"""The poll's watermark follows Salesforce's clock, not only the newest change: after a mass change on a quiet org
later polls read nothing, a late commit within the overlap is still read, the watermark never moves back (but a
CDC cover poll still moves it back on purpose). An emulator of its own: these tests advance its clock."""
from __future__ import annotations

import email.utils

import pytest
import requests

from core.convert import parse_datetime
from gateway import mapping_store
from gateway.salesforce import Salesforce
from jobs import load, poll
from tests.conftest import API_TOKEN
from tests.emulator_fixture import start_emulator
from tests.integration.test_loading import connect, make_app, open_load, seed, sql

POLL_INTERVAL = 600       # an Outbound Message mapping's poll: every 10 minutes
MASS_CHANGE = 2500        # more than one REST page (2,000): read again, it costs two calls


@pytest.fixture(scope="module")
def org(tmp_path_factory):
    with start_emulator(tmp_path_factory.mktemp("watermark") / "org", "--session-seconds", "100000000") as running:
        yield running


@pytest.fixture
def polled(org, settings, enqueued):
    """(db, sf, mapping) of a loaded Account mapping on the module's emulator."""
    org.reset()
    sf_settings = connect(org, settings)
    app = make_app(sf_settings, enqueued)
    db = app.extensions["forcebridge"].db
    sf = Salesforce(sf_settings, backoff=0.01)
    try:
        seed(org, 20)
        r = app.test_client().post("/api/v1/mappings", headers={"Authorization": f"Bearer {API_TOKEN}"}, json={
            "object_name": "Account", "config": {"access": "read_only", "fields": {"Name": {}}}})
        m = mapping_store.get(db, r.get_json()["id"])
        load.run(db, sf, open_load(db, m.id)["id"])
        yield db, sf, m
    finally:
        sf.close()
        db.close()


def later(org, seconds=POLL_INTERVAL):
    org.admin("POST", "/_emulator/clock", {"advance": seconds})


def watermark(db, m):
    return db.fetchone("get_poll_state", {"mapping_id": m.id})["watermark"]


def test_after_a_mass_change_later_polls_of_a_quiet_org_read_nothing(org, polled):
    db, sf, m = polled
    seed(org, MASS_CHANGE, fields={"Name": "data load {n}"})
    later(org)
    first = poll.poll(db, sf, m, force=True)
    assert (first.changed, first.api_calls) == (MASS_CHANGE, 2)          # (and the 20 loaded in the overlap)
    marks = [watermark(db, m)]
    for _ in range(3):
        later(org)
        quiet = poll.poll(db, sf, m, force=True)
        assert (quiet.read, quiet.deleted, quiet.api_calls) == (0, 0, 1)      # one empty page, not 2,500 again
        marks.append(watermark(db, m))
    assert marks == sorted(marks) and marks[-1] > marks[0]


def test_a_mass_change_read_by_a_bulk_job_is_not_read_again(org, polled):
    db, sf, m = polled
    seed(org, MASS_CHANGE, fields={"Name": "data load {n}"})
    later(org)
    first = poll.poll(db, sf, m, force=True, bulk_above=1000)       # more than 1,000: one Bulk job
    assert first.changed == MASS_CHANGE
    later(org)
    quiet = poll.poll(db, sf, m, force=True, bulk_above=1000)      # the last count says many: a Bulk job again
    assert quiet.read == 0
    later(org)
    again = poll.poll(db, sf, m, force=True, bulk_above=1000)
    assert (again.read, again.api_calls) == (0, 1)


def test_a_late_commit_stamped_within_the_overlap_is_still_read(org, polled):
    db, sf, m = polled
    later(org)
    assert poll.poll(db, sf, m, force=True).changed == 0
    # a transaction that started 50 s ago commits now: its stamp is older than the watermark's Salesforce time
    org.admin("POST", "/_emulator/seed", {"sobject": "Account", "count": 1, "fields": {"Name": "committed late"},
                                          "stampedSecondsAgo": 50})
    later(org)
    assert poll.poll(db, sf, m, force=True).changed == 1
    assert sql(db.url, "SELECT count(*) FROM salesforce.account WHERE name = 'committed late'") == [(1,)]


def test_a_cdc_cover_poll_still_reads_from_where_it_moved_the_watermark(org, polled):
    db, sf, m = polled
    before = watermark(db, m)
    seed(org, 5, fields={"Name": "missed by CDC {n}"})
    later(org)
    first = poll.poll(db, sf, m, force=True)
    assert first.changed == 5
    later(org)
    moved = watermark(db, m)
    with db.transaction() as conn:
        db.run(conn, "cdc_poll_from", {"mapping_id": m.id, "since": before})
    assert watermark(db, m) == before
    reread = poll.poll(db, sf, m, force=True)
    assert reread.read == first.read and watermark(db, m) > moved      # from where CDC said, as the first did
    # a poll that read from a later watermark does not move one moved back meanwhile forward
    with db.transaction() as conn:
        db.run(conn, "cdc_poll_from", {"mapping_id": m.id, "since": before})
        db.run(conn, "advance_poll", {"mapping_id": m.id, "watermark": moved, "deleted_since": None,
                                      "read_from": moved})
    assert watermark(db, m) == before


def test_the_emulator_dates_its_answers_by_its_own_clock(org):
    later(org, 3 * 3600)
    now = org.admin("GET", "/_emulator/clock")["now"]
    r = requests.get(f"{org.url}/services/data", verify=str(org.ca_path), timeout=10)
    assert len(r.raw.headers.getlist("Date")) == 1
    sent = email.utils.parsedate_to_datetime(r.headers["Date"])
    assert abs((sent - parse_datetime(now)).total_seconds()) < 60      # not the machine's clock, 3 h behind
