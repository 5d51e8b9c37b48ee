"""Loads, polls, pushes and drift checks: the /api/v1 endpoints, `flask --app webapp sync ...`, and the
functions the console calls (reload_mapping, load_progress, poll_status, drift_reports)."""
from __future__ import annotations

import sys
import time

import click
from flask import Blueprint, abort, jsonify, request

from core.loading import poll_settings, progress, progress_bar
from gateway import mapping_store
from gateway.salesforce import for_settings
from jobs import drift, load, poll, push
from jobs.sync_tasks import load_options, push_options
from webapp import api_jobs
from webapp.context import ctx

# Nested in webapp/api.py's /api/v1 tree (its gate and error answers); the CLI group is `flask sync`.
bp = Blueprint("sync", __name__, cli_group="sync")


# -- for the console and the API ------------------------------------------------------------------------
def reload_mapping(mapping_id: int, requested_by: str = "console") -> dict:
    """Queue a (re)load and a job that runs it (the worker); returns the load's progress row and the job."""
    row = load.request(ctx().db, mapping_id, requested_by)
    job = api_jobs.start("reload", mapping_id, {"load_id": row["id"]}, requested_by)
    return {**load.progress_of(row), "job": job}


def load_progress(mapping_id: int | None = None, limit: int = 20) -> list[dict]:
    """Newest loads first: state, loaded/total, percent, rate (records/s), ETA, error."""
    return [load.progress_of(r) for r in ctx().db.fetchall("list_loads", {"mapping_id": mapping_id, "limit": limit})]


def poll_status() -> list[dict]:
    out = []
    for r in ctx().db.fetchall("list_poll_state"):
        m = mapping_store.get(ctx().db, r["mapping_id"])
        out.append({"mapping_id": r["mapping_id"], "object_name": r["object_name"],
                    "interval_seconds": poll_settings(m).seconds if m else None,
                    "delete_detection": poll_settings(m).delete_mode if m else None,
                    "watermark": _iso(r["watermark"]), "last_polled_at": _iso(r["last_polled_at"]),
                    "next_poll_at": _iso(r["next_poll_at"]), "last_changed": r["last_changed"],
                    "last_deleted": r["last_deleted"], "last_api_calls": r["last_api_calls"],
                    "api_calls_total": r["api_calls_total"], "api_used": r["api_used"],
                    "api_limit": r["api_limit"], "last_error": r["last_error"]})
    return out


def drift_reports(mapping_id: int | None = None, limit: int = 20) -> list[dict]:
    return [drift.as_json(r) for r in ctx().db.fetchall("list_drift_reports", {"mapping_id": mapping_id,
                                                                                "limit": limit})]


def _iso(value):
    return value.isoformat() if value else None


def _salesforce():
    sf = for_settings(ctx().settings)
    if sf is None:
        abort(409, description="Salesforce is not configured (SF_INSTANCE_URL / SF_USERNAME ...)")
    return sf


def _mapping(mapping_id: int):
    m = mapping_store.get(ctx().db, mapping_id)
    if m is None:
        abort(404, description=f"no mapping {mapping_id}")
    return m


_QUERY_FLAGS = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False, "": False}


def _flag(name: str) -> bool:
    """?name=true|false (a query string has only text) or a JSON body's {"name": true|false} (a real boolean:
    "false" must never read as true); anything else is a 400 naming the flag."""
    if name in request.args:
        value = _QUERY_FLAGS.get(request.args[name].lower())
        if value is None:
            abort(400, description=f"{name} must be true or false")
        return value
    if not request.content_length:
        return False
    try:
        body = request.get_json(silent=True)
    except RecursionError:
        body = None
    if not isinstance(body, dict):
        abort(400, description="the body must be a JSON object")
    value = body.get(name, False)
    if not isinstance(value, bool):
        abort(400, description=f"{name} must be true or false (a JSON boolean)")
    return value


# -- the JSON API ---------------------------------------------------------------------------------------
@bp.post("/mappings/<int:mapping_id>/reload")
def reload(mapping_id: int):
    m = _mapping(mapping_id)
    if not m.reads:
        abort(409, description=f"mapping {mapping_id} does not read from Salesforce")
    queued = reload_mapping(mapping_id, "api")
    return jsonify(queued), 202, {"Location": queued["job"]["url"]}


def _list_args() -> tuple[int | None, int]:
    """?mapping_id= (a mapping's id or nothing) and ?limit= (clamped to 1..1000, default 20)."""
    mapping_id = request.args.get("mapping_id", type=int)
    if mapping_id is not None and not 0 <= mapping_id <= 2_147_483_647:
        abort(400, description="mapping_id is not a mapping's id")
    return mapping_id, max(1, min(request.args.get("limit", 20, type=int), 1000))


@bp.get("/loads")
def loads():
    return jsonify(loads=load_progress(*_list_args()))


@bp.get("/loads/<int:load_id>")
def one_load(load_id: int):
    row = ctx().db.fetchone("get_load", {"id": load_id})
    if row is None:
        abort(404, description=f"no load {load_id}")
    return jsonify(load.progress_of(row))


# Poll, push and reconcile run in the worker (jobs/api_jobs.py): 202 with the job to follow at /api/v1/jobs/<id>.
@bp.post("/mappings/<int:mapping_id>/poll")
def poll_now(mapping_id: int):
    _salesforce()
    return api_jobs.accepted(api_jobs.start("poll", _mapping(mapping_id).id))


@bp.get("/polls")
def polls():
    return jsonify(polls=poll_status())


@bp.post("/mappings/<int:mapping_id>/push")
def push_now(mapping_id: int):
    m = _mapping(mapping_id)
    if not m.writes:
        abort(409, description=f"mapping {mapping_id} does not write to Salesforce")
    return api_jobs.accepted(api_jobs.start("push", m.id))


@bp.post("/mappings/<int:mapping_id>/reconcile")
def reconcile(mapping_id: int):
    """The check runs in the worker; its report is the job's result. `"async"` is still read (a real boolean)
    for clients of the release that ran the check in the request: every check is asynchronous now."""
    m = _mapping(mapping_id)
    repair = _flag("repair")
    _flag("async")
    _salesforce()
    return api_jobs.accepted(api_jobs.start("reconcile", m.id, {"repair": repair}))


@bp.get("/drift")
def drift_list():
    return jsonify(reports=drift_reports(*_list_args()))


# -- flask --app webapp sync ... ------------------------------------------------------------------------
def _cli_mapping(object_name: str):
    m = mapping_store.get_by_object(ctx().db, object_name)
    if m is None:
        raise click.ClickException(f"no mapping for {object_name}")
    sf = for_settings(ctx().settings)
    if sf is None:
        raise click.ClickException("Salesforce is not configured (SF_INSTANCE_URL, SF_USERNAME, ...)")
    return m, sf


class _Bar:
    """The terminal progress bar: one line redrawn after each page."""

    def __init__(self):
        self.started = time.monotonic()

    def __call__(self, row: dict) -> None:
        p = progress(int(row["loaded"]), row["total"], time.monotonic() - self.started)
        end = "\n" if not sys.stderr.isatty() else ""
        click.echo(f"\r{progress_bar(p)}", err=True, nl=False)
        if end:
            click.echo("", err=True)


@bp.cli.command("load")
@click.argument("object_name")
@click.option("--page-size", type=int, default=None, help="records per Bulk results page (maxRecords)")
def load_command(object_name: str, page_size: int | None):
    """Load (or reload) a mapped object from Salesforce, with a progress bar; continues an unfinished load."""
    m, sf = _cli_mapping(object_name)
    row = load.request(ctx().db, m.id, "cli")
    options = load_options(ctx().settings, on_page=_Bar())
    if page_size:
        options = load.LoadOptions(page_size=page_size, rest_max=options.rest_max, on_page=options.on_page)
    click.echo(f"load {row['id']} of {m.object_name} ({row['state']}, {row['loaded']:,} rows staged)", err=True)
    try:
        done = load.run(ctx().db, sf, row["id"], options)
    except load.LoadBusy as exc:
        raise click.ClickException(f"{exc}; watch it with GET /api/v1/loads/{row['id']}")
    p = load.progress_of(done)
    click.echo("", err=True)
    click.echo(f"{done['state']}: {p['loaded']:,} records loaded, {done['merged'] or 0:,} rows written, "
               f"{p['rate'] or 0:,.0f} records/s")


@bp.cli.command("reconcile")
@click.argument("object_name")
@click.option("--repair", is_flag=True, help="fetch what is missing or older, delete what Salesforce deleted")
def reconcile_command(object_name: str, repair: bool):
    """Compare Salesforce and Postgres record by record (Id and SystemModstamp) and list what differs."""
    m, sf = _cli_mapping(object_name)
    report = drift.as_json({**drift.check(ctx().db, sf, m, repair=repair, options=load_options(ctx().settings)),
                            "object_name": m.object_name})
    click.echo(f"Salesforce records: {report['salesforce_records']:,}   Postgres rows: {report['postgres_rows']:,}")
    for key in ("missing_in_postgres", "deleted_in_salesforce", "older_in_postgres", "not_yet_in_salesforce"):
        sample = report["samples"].get({"missing_in_postgres": "missing", "deleted_in_salesforce": "extra",
                                        "older_in_postgres": "stale"}.get(key, ""), [])
        click.echo(f"  {key.replace('_', ' ')}: {report[key]:,}" + (f"  e.g. {', '.join(sample[:5])}" if sample else ""))
    if report["repaired"]:
        click.echo(f"repaired: {report['repaired']}")
    click.echo("in sync" if report["in_sync"] else ("differences found" + ("" if repair else
                                                                         "; run again with --repair to fix them")))


@bp.cli.command("poll")
@click.argument("object_name")
def poll_command(object_name: str):
    """Poll one mapping now (changes by SystemModstamp, then deletes)."""
    m, sf = _cli_mapping(object_name)
    result = poll.poll(ctx().db, sf, m, force=True)
    click.echo(f"{result.changed} changed, {result.deleted} deleted, {result.api_calls} API calls"
               + (f" ({result.skipped})" if result.skipped else ""))


@bp.cli.command("push")
@click.argument("object_name")
def push_command(object_name: str):
    """Send rows without sfid to Salesforce (Bulk API 2.0 above PUSH_BULK_THRESHOLD rows)."""
    m, sf = _cli_mapping(object_name)
    click.echo(push.initial_push(ctx().db, sf, m, push_options(ctx().settings)))
