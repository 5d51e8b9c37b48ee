"""GET /api/v1/jobs[/<id>]: the long operations the API queued for the worker (jobs/api_jobs.py), and how
to start one from a view (`start`)."""
from __future__ import annotations

from flask import Blueprint, abort, jsonify, request

from jobs import api_jobs
from webapp.context import ctx

bp = Blueprint("jobs", __name__)   # nested in webapp/api.py's /api/v1 tree (its gate, its errors)


def start(kind: str, mapping_id: int, params: dict | None = None, requested_by: str = "api") -> dict:
    """Queue a job and ring the worker; the job as JSON (state `queued`, `url` to follow it)."""
    job = api_jobs.request(ctx().db, kind, mapping_id, params, requested_by)
    ctx().enqueue("run_api_job", job["id"])
    return job


def accepted(job: dict):
    """202 with the job and where to look it up."""
    return jsonify(job), 202, {"Location": job["url"]}


@bp.get("/jobs")
def list_jobs():
    mapping_id = request.args.get("mapping_id", type=int)
    if mapping_id is not None and not 0 <= mapping_id <= 2_147_483_647:
        abort(400, description="mapping_id is not a mapping's id")
    limit = max(1, min(request.args.get("limit", 20, type=int), 1000))
    return jsonify(jobs=api_jobs.recent(ctx().db, mapping_id, limit))


@bp.get("/jobs/<int:job_id>")
def get_job(job_id: int):
    job = api_jobs.get(ctx().db, job_id) if job_id <= 2**63 - 1 else None
    if job is None:
        abort(404, description=f"no job {job_id}")
    return jsonify(job)
