"""Long operations started from the API (poll now, push, reconcile, reload) are jobs: 202 with a job to follow
at /api/v1/jobs/<id>, run by the worker (driven by hand here), never inside the web request."""
from __future__ import annotations

import pytest

from jobs import api_jobs
from tests.integration.test_loading import (api, create_mapping, db, loaded_mapping, salesforce_accounts,  # noqa: F401
                                            sf, sf_app, sf_settings, sql)
from tests.integration.test_capture import INVOICE_FIELDS


def accepted(response) -> dict:
    assert response.status_code == 202, response.get_json()
    job = response.get_json()
    job = job.get("job", job)
    assert response.headers["Location"] == job["url"] == f"/api/v1/jobs/{job['id']}"
    return job


def test_poll_now_is_queued_and_its_result_is_the_job_s(api, db, sf, emulator, sf_settings, enqueued):
    m = loaded_mapping(api, db, sf, emulator, count=10)
    emulator.salesforce(client="user").Account.update(sorted(salesforce_accounts(sf))[0], {"Name": "changed"})
    calls = emulator.admin("GET", "/_emulator/stats")["total"]
    job = accepted(api.post(f"/api/v1/mappings/{m.id}/poll"))
    assert (job["kind"], job["state"], job["mapping_id"]) == ("poll", "queued", m.id)
    assert ("run_api_job", (job["id"],)) in enqueued.calls
    assert emulator.admin("GET", "/_emulator/stats")["total"] == calls       # the request called nobody
    assert api.get(job["url"]).get_json()["state"] == "queued"

    done = api_jobs.run(db, sf_settings, job["id"])
    assert done["state"] == "done" and done["result"]["changed"] == 1 and done["attempts"] == 1
    assert api.get(job["url"]).get_json() == done
    assert api_jobs.run(db, sf_settings, job["id"]) is None                   # a finished job never runs again
    assert [j["id"] for j in api.get(f"/api/v1/jobs?mapping_id={m.id}").get_json()["jobs"]] == [job["id"]]


def test_reconcile_reports_through_its_job(api, db, sf, emulator, sf_settings):
    m = loaded_mapping(api, db, sf, emulator, count=10)
    job = accepted(api.post(f"/api/v1/mappings/{m.id}/reconcile", json={"repair": True, "async": False}))
    assert job["params"] == {"repair": True}
    done = api_jobs.run(db, sf_settings, job["id"])
    assert done["result"]["in_sync"] and done["result"]["salesforce_records"] == 10


def test_push_is_a_job_and_the_drain_is_rung_after_it(sf_app, api, db, sf_settings, enqueued):
    from jobs.queue import create_queue

    r = api.post("/api/v1/mappings", json={"object_name": "Invoice__c", "direction": "pg_to_sf",
                                           "config": {"access": "read_write", "fields": INVOICE_FIELDS,
                                                      "upsert_field": "External_Id__c"}})
    m = r.get_json()
    sql(sf_settings.database_url, "ALTER TABLE salesforce.invoice__c DISABLE TRIGGER USER")
    sql(sf_settings.database_url, "INSERT INTO salesforce.invoice__c (name) VALUES ('before capture')")
    sql(sf_settings.database_url, "ALTER TABLE salesforce.invoice__c ENABLE TRIGGER USER")
    job = accepted(api.post(f"/api/v1/mappings/{m['id']}/push"))
    queue = create_queue(sf_settings, immediate=False)
    queue.tasks["run_api_job"](job["id"])                       # as the worker runs it: the task, then the drain
    task = queue.huey.dequeue()
    assert queue.huey.execute(task) == "done"
    assert api.get(job["url"]).get_json()["result"]["queued"] == 1
    assert queue.huey.dequeue().name.endswith("drain_outbound")


def test_a_job_that_cannot_run_fails_with_its_reason_and_a_missing_one_is_404(api, db, sf_settings):
    m = create_mapping(api)
    job = accepted(api.post(f"/api/v1/mappings/{m['id']}/poll"))
    api.delete(f"/api/v1/mappings/{m['id']}")
    done = api_jobs.run(db, sf_settings, job["id"])
    assert done["state"] == "failed" and f"mapping {m['id']} no longer exists" in done["error"]
    assert api.get("/api/v1/jobs/999999").status_code == 404
    assert api.post("/api/v1/mappings/999999/poll").status_code == 404


def test_a_job_whose_worker_died_is_run_again_and_a_lost_doorbell_is_rung_again(api, db, sf, emulator, sf_settings):
    m = loaded_mapping(api, db, sf, emulator, count=3)
    job = accepted(api.post(f"/api/v1/mappings/{m.id}/poll"))
    assert api_jobs.waiting(db, api_jobs.JobOptions(queued_seconds=3600)) == []          # just queued
    assert api_jobs.waiting(db, api_jobs.JobOptions(queued_seconds=0)) == [job["id"]]     # its doorbell was lost
    # a worker claimed it and died: its lease lapses
    sql(sf_settings.database_url, "UPDATE forcebridge.api_jobs SET state = 'running', runner = 'dead', "
                                  "lease_until = now() - interval '1 second'")
    assert api_jobs.waiting(db) == [job["id"]]
    done = api_jobs.run(db, sf_settings, job["id"])
    assert done["state"] == "done" and done["attempts"] == 1
    # a job running under a live lease is nobody else's to run
    sql(sf_settings.database_url, "UPDATE forcebridge.api_jobs SET state = 'running', lease_until = now() + interval '1 hour'")
    assert api_jobs.run(db, sf_settings, job["id"]) is None and api_jobs.waiting(db) == []


@pytest.mark.parametrize("path", ["poll", "reconcile"])
def test_without_salesforce_nothing_is_queued(client, enqueued, path):
    headers = {"Authorization": "Bearer test-api-token"}
    created = client.post("/api/v1/mappings", headers=headers, json={
        "object_name": "Account", "config": {"fields": {"Name": {"type": "string", "length": 80}}}}).get_json()
    r = client.post(f"/api/v1/mappings/{created['id']}/{path}", headers=headers)
    assert r.status_code == 409 and "not configured" in r.get_json()["message"]
    assert not [c for c in enqueued.calls if c[0] == "run_api_job"]
