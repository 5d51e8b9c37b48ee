"""Setup: what to paste into Salesforce, which fields to select, and a check that the endpoint answers."""
from __future__ import annotations

import datetime as dt
import ipaddress
import secrets
from urllib.parse import urlsplit

import requests
from flask import Blueprint, render_template, request, url_for

import json

from core import configuration
from core.mapping import MappingError, sf_source
from core.setup_check import acknowledged, sample_message
from gateway import adopt, mapping_store
from jobs import cdc_source, load
from webapp.context import ctx

bp = Blueprint("setup", __name__, url_prefix="/setup")
CHECK_TIMEOUT = 10


def public_base() -> str | None:
    """PUBLIC_URL (or Render's RENDER_EXTERNAL_URL) when it is an http(s) URL, else None."""
    base = ctx().settings.public_url.rstrip("/")
    parts = urlsplit(base)
    if parts.scheme in ("http", "https") and parts.hostname and not parts.query and not parts.fragment:
        return base
    return None


def outbound_url() -> str | None:
    """The endpoint's URL under PUBLIC_URL; without it, as this browser reached us (shown, never posted to:
    the Host header is the client's to choose)."""
    token = ctx().settings.outbound_token
    if not token:
        return None
    base = public_base()
    if base is None:
        return url_for("outbound.receive", token=token, _external=True)
    return base + url_for("outbound.receive", token=token)


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


@bp.get("")
def index():
    url = outbound_url()
    reading = [m for m in mapping_store.list_all(ctx().db) if m.reads]
    return render_template("setup/page.html", url=url,
                           mappings=[m for m in reading if sf_source(m) != "cdc"],
                           cdc_mappings=[m for m in reading if sf_source(m) == "cdc"],
                           cdc=cdc_source.status(ctx().db),
                           settings=ctx().settings, public_url=public_base(),
                           adoptions=ctx().db.fetchall("list_adoptions"),
                           plain_http=bool(url) and url.startswith("http:") and not _is_loopback(url))


@bp.post("/test-message")
def test_message():
    """Post a sample message to our own public URL (from settings, never from the request's Host), see it
    ACKed and stored, then remove it again."""
    url = outbound_url()
    settings = ctx().settings
    if not url:
        return render_template("setup/_check.html", ok=False, steps=[
            ("OUTBOUND_TOKEN is not set, so the Outbound Message endpoint is off.", False)])
    if public_base() is None:
        return render_template("setup/_check.html", ok=False, steps=[
            ("PUBLIC_URL is not set (or not an http(s) URL): set it to the address Salesforce reaches this "
             "service at, e.g. https://connector.example.com, and restart. On Render it is set for you.", False)])
    if not settings.salesforce_org_id:
        return render_template("setup/_check.html", ok=False, steps=[
            ("SALESFORCE_ORG_ID is not set; every message would be refused.", False)])
    notification_id = "FBCHECK" + secrets.token_hex(6)
    body = sample_message(settings.salesforce_org_id, notification_id,
                          dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"))
    steps = []
    try:
        response = requests.post(url, data=body, timeout=CHECK_TIMEOUT,
                                 headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'})
    except requests.RequestException as exc:
        steps.append((f"Could not reach {url}: {exc}", False))
        return render_template("setup/_check.html", ok=False, steps=steps)
    steps.append((f"POST {url} answered HTTP {response.status_code}.", response.ok))
    acked = response.ok and acknowledged(response.text)
    steps.append(("Salesforce would get an ACK." if acked else f"No ACK: {response.text[:300]}", acked))
    stored = ctx().db.fetchone("delete_notification", {"id": notification_id})
    steps.append(("The message was committed to the inbox before the ACK (test row removed again)."
                  if stored else "The message is not in the inbox.", bool(stored)))
    return render_template("setup/_check.html", ok=all(ok for _, ok in steps), steps=steps)


def adopt_schema(schema: str, doc: dict | None = None) -> adopt.Adoption:
    """Take over a restored Heroku Connect schema (CLI `connect adopt` and the Setup page). `doc`: the
    connection's export, whose mappings are created in the same transaction (else they must exist)."""
    from webapp.mappings import plan_document

    connection, steps = (None, None)
    if doc is not None:
        connection, steps = plan_document(doc, schema=schema)
        connection = configuration.connection_to_store(connection) if connection else None
    done = adopt.adopt(ctx().db, schema, steps, request_load=lambda conn, m: load.request_in(conn, m, "adopted"),
                       connection=connection)
    ctx().enqueue("drain_outbound")        # what Connect had not sent goes now
    if done.loads_requested:
        ctx().enqueue("run_loads")
    return done


@bp.post("/adopt")
def adopt_form():
    schema = request.form.get("schema", "").strip()
    upload = request.files.get("config")
    try:
        doc = json.loads(upload.read()) if upload is not None and upload.filename else None
        done = adopt_schema(schema, doc)
    except RecursionError:
        return render_template("setup/_adopt.html", error="the export is nested too deeply"), 400
    except (ValueError, MappingError, adopt.AdoptError, mapping_store.ImportFailed) as exc:
        return render_template("setup/_adopt.html", error=str(exc)), 400
    return render_template("setup/_adopt.html", done=done)
