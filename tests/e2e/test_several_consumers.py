"""Several machines: three consumer processes on one Redis, one of them the scheduler, under load both
ways (Outbound Messages in, app writes out to the Salesforce emulator): every change applied once."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
import requests

from tests.conftest import API_TOKEN
from tests.support.deployment import Deployment, account_records, create_mapping, send_messages
from tests.support.processes import start_web, start_worker, wait_for
from tests.support.processes import no_leftover_processes  # noqa: F401  (autouse: stops leftover processes)

INVOICES = 600


@pytest.fixture
def deployment(clean_db, tmp_path, emulator):
    emulator.reset()
    dep = Deployment.create(clean_db, "redis", tmp_path)
    dep.salesforce = {"SF_INSTANCE_URL": emulator.url, "SF_USERNAME": emulator.username,
                      "SF_PASSWORD": emulator.password, "SF_SECURITY_TOKEN": emulator.security_token,
                      "SF_CA_BUNDLE": str(emulator.ca_path), "DRAIN_LEASE_SECONDS": "30"}
    yield dep
    dep.forget_queue()


def writing_mapping(base_url: str) -> None:
    r = requests.post(f"{base_url}/api/v1/mappings", timeout=30, headers={"Authorization": f"Bearer {API_TOKEN}"},
                      json={"object_name": "Invoice__c", "direction": "pg_to_sf",
                            "config": {"access": "read_write", "upsert_field": "External_Id__c",
                                       "fields": {"Name": {}, "Amount__c": {}, "External_Id__c": {}}}})
    assert r.status_code == 201, r.text


def app_writes(database_url: str, transactions: int, per_transaction: int) -> None:
    """What an application does to a mapped table: many small transactions."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        for t in range(transactions):
            with conn.transaction():
                conn.execute("INSERT INTO salesforce.invoice__c (name, amount__c, external_id__c) "
                             "SELECT 'inv ' || g, g, 'EXT-' || g FROM generate_series(%s::int, %s::int) g",
                             (t * per_transaction + 1, (t + 1) * per_transaction))


def test_three_consumers_on_one_redis_apply_every_change_once(deployment, tmp_path, emulator):
    env = deployment.env(**deployment.salesforce)
    web = start_web({**env, "WEB_CONCURRENCY": "2"}, tmp_path / "web.log")
    consumers = [start_worker(env, tmp_path / "worker-scheduler.log")]
    consumers += [start_worker(env, tmp_path / f"worker-{i}.log", "--no-periodic") for i in (2, 3)]
    try:
        # A consumer stopped before it installs its signal handlers dies of SIGTERM (-15): on a busy
        # machine the other two can finish all the work first, so wait until each has started.
        wait_for(lambda: all("Periodic tasks are" in c.text() for c in consumers), timeout=120,
                 what="every consumer to start", logs=consumers)
        create_mapping(web.url)
        writing_mapping(web.url)
        records = account_records(1000)
        with ThreadPoolExecutor(1) as pool:
            writer = pool.submit(app_writes, deployment.database_url, 30, INVOICES // 30)
            assert send_messages(web.url, records, per_message=25, senders=4) == 1000
            writer.result()

        wait_for(lambda: deployment.inbox_states() == {"applied": 1000}, timeout=120,
                 what="every notification to apply", logs=consumers)
        wait_for(lambda: deployment.query("SELECT count(*) FROM forcebridge.change_log WHERE state <> 'SUCCESS' "
                                          "UNION ALL SELECT count(*) FROM forcebridge.change_capture")
                 == [(0,), (0,)], timeout=120, what="every change to reach Salesforce", logs=consumers)
    finally:
        codes = [c.stop() for c in consumers]
        web.stop()
    assert codes == [0, 0, 0], [c.text()[-3000:] for c in consumers]

    # Inbound: each notification applied by exactly one consumer, once.
    assert deployment.query("SELECT count(*), count(DISTINCT sfid) FROM salesforce.account") == [(1000, 1000)]
    assert deployment.query("SELECT DISTINCT attempts FROM forcebridge.inbox") == [(1,)]
    assert deployment.query("SELECT sum(count) FROM forcebridge.stats_hourly "
                            "WHERE direction = 'sf_to_pg' AND outcome = 'synced'") == [(1000,)]
    # Outbound: every app write reached Salesforce once, by one claim.
    assert deployment.query("SELECT count(*), max(attempts) FROM forcebridge.change_log") == [(INVOICES, 1)]
    remote = emulator.salesforce().query_all("SELECT External_Id__c FROM Invoice__c")["records"]
    assert sorted(r["External_Id__c"] for r in remote) == sorted(f"EXT-{g}" for g in range(1, INVOICES + 1))
    # One scheduler for the deployment.
    assert ["Periodic tasks are enabled" in c.text() for c in consumers] == [True, False, False]
