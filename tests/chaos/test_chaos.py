"""The short chaos run inside `make test`: the whole system as processes, load on both sides, every kind
of fault this system can recover from, then the verdict (`make chaos` runs the long one)."""
from __future__ import annotations

import json

import pytest

from gateway.db import migrate
from tests.chaos import faults
from tests.chaos.run import Scenario, run
from tests.support.postgres import create_database


@pytest.fixture
def chaos_db():
    url, drop = create_database("fb_chaos")
    migrate(url)
    yield url
    drop()


def test_short_chaos_run_loses_nothing_and_duplicates_nothing(chaos_db, tmp_path):
    scenario = Scenario(seconds=20, rate=4, seed=8, fault_every=1.0, converge_limit=40)
    result = run(scenario, chaos_db, tmp_path)
    logs = result.pop("logs", "")
    print(json.dumps(result, sort_keys=True, default=str))
    assert result["ok"], f"{json.dumps(result, default=str, indent=1)}\n{logs}"
    assert result["changes"] > 50 and result["faults"] == result["planned_faults"]
    assert set(result["faults_by_kind"]) == set(faults.available_kinds(result["poll"]))   # each kind at least once
    assert (result["lost"], result["duplicated"], result["not_applied"]) == (0, 0, 0)
    # what the org refused (validation and duplicate rules) waits on its row with Salesforce's reason
    assert all(any(code in reason for code in faults.REFUSAL_CODES) for _, reason in result["refused"])


def test_short_chaos_run_with_a_cdc_mapping_loses_nothing_and_duplicates_nothing(chaos_db, tmp_path):
    """The same load and faults (consumers killed: the CDC subscriber among them) with the mapping on Change
    Data Capture instead of Outbound Messages (issue 13)."""
    scenario = Scenario(seconds=20, rate=4, seed=8, fault_every=1.0, converge_limit=60, source="cdc")
    result = run(scenario, chaos_db, tmp_path)
    logs = result.pop("logs", "")
    print(json.dumps(result, sort_keys=True, default=str))
    assert result["ok"], f"{json.dumps(result, default=str, indent=1)}\n{logs}"
    assert result["changes"] > 50 and (result["lost"], result["duplicated"]) == (0, 0)
    import psycopg
    with psycopg.connect(chaos_db) as conn:
        events, = conn.execute("SELECT coalesce(sum(events), 0) FROM forcebridge.cdc_subscriptions").fetchone()
        applied, = conn.execute("SELECT count(*) FROM forcebridge.inbox").fetchone()
    assert events > 20 and applied == 0        # every Salesforce change came as a change event, none by message


def test_the_fault_schedule_is_the_same_for_the_same_seed():
    kinds = faults.available_kinds(has_poll=False)
    first = faults.schedule(3, 30, kinds, 2.0)
    assert first == faults.schedule(3, 30, kinds, 2.0) != faults.schedule(4, 30, kinds, 2.0)
    assert {f.kind for f in first} == set(kinds)          # a round long enough injects every kind
