"""Long operations started from the API (poll now, push, reconcile, reload): the web request queues a row in
forcebridge.api_jobs and answers 202; the worker runs it here and stores its result, so no web request outlives
gunicorn's timeout. States: queued -> running -> done | failed. A job whose worker died (its lease lapsed) or
whose doorbell was lost is run again by the backstop; every operation is safe to run twice."""
from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass

from psycopg.types.json import Jsonb

from gateway import mapping_store
from gateway.db import Database
from gateway.salesforce import for_settings
from jobs import drift, load, poll, push
from jobs.sync_tasks import load_options, push_options

log = logging.getLogger("forcebridge.api_jobs")

KINDS = ("poll", "push", "reconcile", "reload")
QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"


@dataclass(frozen=True)
class JobOptions:
    lease_seconds: int = 120          # renewed every third of it while the job runs
    queued_seconds: int = 60          # a job queued this long without a run had its doorbell lost


class JobFailed(RuntimeError):
    """The operation cannot run (mapping gone, Salesforce not configured): the job ends `failed`."""


def request(db: Database, kind: str, mapping_id: int, params: dict | None = None, requested_by: str = "api") -> dict:
    """Queue a job; the caller rings the worker (`run_api_job`) with its id."""
    if kind not in KINDS:
        raise ValueError(f"unknown job kind {kind!r}")
    row = db.fetchone("insert_api_job", {"kind": kind, "mapping_id": mapping_id, "params": Jsonb(params or {}),
                                         "requested_by": requested_by})
    return as_json(row)


def get(db: Database, job_id: int) -> dict | None:
    row = db.fetchone("get_api_job", {"id": job_id})
    return as_json(row) if row else None


def recent(db: Database, mapping_id: int | None = None, limit: int = 20) -> list[dict]:
    return [as_json(r) for r in db.fetchall("list_api_jobs", {"mapping_id": mapping_id, "limit": limit})]


def as_json(row: dict) -> dict:
    return {"id": row["id"], "kind": row["kind"], "mapping_id": row["mapping_id"], "params": row["params"],
            "state": row["state"], "result": row["result"], "error": row["error"], "attempts": row["attempts"],
            "requested_by": row["requested_by"], "created_at": _iso(row["created_at"]),
            "started_at": _iso(row["started_at"]), "finished_at": _iso(row["finished_at"]),
            "url": f"/api/v1/jobs/{row['id']}"}


def _iso(value):
    return value.isoformat() if value else None


def waiting(db: Database, options: JobOptions = JobOptions()) -> list[int]:
    """Jobs the backstop rings again: queued long ago, or running under a lapsed lease."""
    return [r["id"] for r in db.fetchall("api_jobs_waiting", {"queued_seconds": options.queued_seconds})]


def run(db: Database, settings, job_id: int, options: JobOptions = JobOptions()) -> dict | None:
    """Claim the job and run it; returns its final row as JSON, or None when it was not there to claim (done,
    or another worker runs it). An operation that raises ends the job `failed` with the error's text."""
    runner = uuid.uuid4().hex
    row = db.fetchone("claim_api_job", {"id": job_id, "runner": runner, "lease_seconds": options.lease_seconds})
    if row is None:
        return None
    stop = threading.Event()
    renewer = threading.Thread(target=_renew, args=(db, job_id, runner, options, stop), daemon=True,
                               name=f"api-job-{job_id}-lease")
    renewer.start()
    try:
        result, error, state = _perform(db, settings, row), None, DONE
    except Exception as exc:    # noqa: BLE001 - every failure is the job's answer, never a lost job
        log.warning("job %s (%s of mapping %s) failed: %r", job_id, row["kind"], row["mapping_id"], exc)
        result, error, state = None, f"{type(exc).__name__}: {exc}"[:2000], FAILED
    finally:
        stop.set()
        renewer.join()
    done = db.fetchone("finish_api_job", {"id": job_id, "runner": runner, "state": state, "error": error,
                                          "result": None if result is None else Jsonb(result)})
    return as_json(done) if done else None


def _renew(db: Database, job_id: int, runner: str, options: JobOptions, stop: threading.Event) -> None:
    while not stop.wait(max(1.0, options.lease_seconds / 3)):
        try:
            db.execute("renew_api_job", {"id": job_id, "runner": runner, "lease_seconds": options.lease_seconds})
        except Exception as exc:  # noqa: BLE001 - Postgres away for a moment: the next renewal may work
            log.warning("could not renew the lease of job %s: %r", job_id, exc)


def _perform(db: Database, settings, row: dict) -> dict:
    m = mapping_store.get(db, row["mapping_id"])
    if m is None:
        raise JobFailed(f"mapping {row['mapping_id']} no longer exists")
    sf = for_settings(settings)
    kind, params = row["kind"], row["params"] or {}
    if kind == "push":
        return push.initial_push(db, sf, m, push_options(settings))
    if sf is None:
        raise JobFailed("Salesforce is not configured (SF_INSTANCE_URL / SF_USERNAME ...)")
    if kind == "poll":
        r = poll.poll(db, sf, m, force=True)
        return {"mapping_id": m.id, "changed": r.changed, "deleted": r.deleted, "failed": r.failed,
                "api_calls": r.api_calls, "skipped": r.skipped}
    if kind == "reconcile":
        report = drift.check(db, sf, m, repair=bool(params.get("repair")), options=load_options(settings))
        return drift.as_json({**report, "object_name": m.object_name})
    return _reload(db, sf, settings, params["load_id"])


def _reload(db: Database, sf, settings, load_id: int) -> dict:
    """The load the request queued, run to its end; a load another runner holds continues there (its progress
    is at /api/v1/loads/<id> either way)."""
    note = None
    try:
        done = load.run(db, sf, load_id, load_options(settings))
    except load.LoadBusy:
        done, note = None, "run by another worker"
    progress = load.progress_of(done or db.fetchone("get_load", {"id": load_id}))
    return {**progress, "note": note} if note else progress
