"""Alerts at work: read the facts from Postgres, decide (core/alerts.py), send through every channel
(gateway/notify.py), store each condition's state. Run each minute by the worker and, for "no live
worker", by the web process; one evaluator at a time (advisory lock)."""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
import uuid

from psycopg.types.json import Jsonb

from core import alerts as core
from gateway import notify
from gateway.db import Database
from jobs import api_usage, budget
from jobs.heartbeat import ALIVE_SECONDS
from settings import Settings

log = logging.getLogger("forcebridge.alerts")


def config(db: Database) -> dict:
    """{"channels": [{id, kind, target}], "thresholds": Thresholds}"""
    row = db.fetchone("get_document", {"key": "alerts"})
    doc = row["value"] if row else {}
    return {"channels": list(doc.get("channels", [])), "thresholds": core.Thresholds.from_document(doc.get("thresholds"))}


def _save(db: Database, channels: list, thresholds: core.Thresholds) -> None:
    db.execute("put_document", {"key": "alerts", "value": Jsonb(
        {"channels": channels, "thresholds": thresholds.__dict__})})


def add_channel(db: Database, form: dict) -> dict:
    channel = {"id": uuid.uuid4().hex[:12], **core.parse_channel(form)}
    current = config(db)
    _save(db, current["channels"] + [channel], current["thresholds"])
    return channel


def remove_channel(db: Database, channel_id: str) -> bool:
    current = config(db)
    kept = [c for c in current["channels"] if c.get("id") != channel_id]
    _save(db, kept, current["thresholds"])
    return len(kept) != len(current["channels"])


def set_thresholds(db: Database, form: dict) -> core.Thresholds:
    thresholds = core.parse_thresholds(form)
    _save(db, config(db)["channels"], thresholds)
    return thresholds


def facts(db: Database, now: dt.datetime, settings: Settings | None = None) -> core.Facts:
    f = db.fetchone("alert_failures")
    workers = db.fetchone("live_workers", {"seconds": ALIVE_SECONDS})
    drift = db.fetchall("alert_drift")
    plan = budget.current_plan(db, fresh=True)
    cdc = db.fetchone("get_document", {"key": "cdc_subscriber"})   # written by the CDC subscriber, when there is one
    cdc = cdc["value"] if cdc else {}
    return core.Facts(
        failed_writes=f["failed_writes"], failed_writes_newest=f["failed_writes_newest"],
        failed_writes_since=f["failed_writes_since"], failed_notifications=f["failed_notifications"],
        failed_notifications_newest=f["failed_notifications_newest"],
        failed_notifications_since=f["failed_notifications_since"],
        oldest_pending_sf=f["oldest_pending_sf"], oldest_pending_pg=f["oldest_pending_pg"],
        send_window_minutes=math.ceil(budget.send_window_seconds(db, settings) / 60) if settings else 0,
        workers_alive=workers["alive"], workers_last_seen=workers["last_seen"],
        drift_differences=sum(r["differences"] for r in drift), drift_objects=tuple(r["object_name"] for r in drift),
        drift_since=min((r["checked_at"] for r in drift), default=None),
        budget_share=plan.share_of_budget if plan.budget else None, budget_since=None,
        salesforce=api_usage.health(db),
        cdc_connected=cdc.get("connected"), cdc_since=core.parse_time(cdc.get("since")))


def states(db: Database) -> dict:
    return {r["condition"]: core.State(r["condition"], r["open"], r["since"], r["count"], r["detail"],
                                       r["watermark"], r["last_sent_at"], r["cleared_at"])
            for r in db.fetchall("alert_states")}


def deliver(settings: Settings, channels: list, alert: core.Alert) -> dict:
    """Every channel; returns channel id -> error (absent when delivered)."""
    errors = {}
    for channel in channels:
        try:
            notify.send(settings, channel, alert)
        except notify.DeliveryError as exc:
            errors[channel.get("id", channel["kind"])] = str(exc)
            log.warning("alert %s not delivered to %s: %s", alert.condition, channel["kind"], exc)
    return errors


def check(db: Database, settings: Settings, now: dt.datetime | None = None) -> list[core.Alert]:
    """Evaluate every condition and send what is due; returns what was sent. An alert no channel took is
    not marked sent, so it goes again on the next check."""
    now = now or dt.datetime.now(dt.timezone.utc)
    with db.transaction() as lock:
        if not db.run(lock, "lock_alerts").fetchone()["locked"]:
            return []
        cfg = config(db)
        observed = core.observe(facts(db, now, settings), cfg["thresholds"], now)
        decision = core.decide(observed, states(db), cfg["thresholds"], now, settings.public_url)
        sent = []
        for alert in decision.alerts:
            errors = deliver(settings, cfg["channels"], alert)
            if cfg["channels"] and len(errors) == len(cfg["channels"]):
                # nobody heard it: an opening is kept (the console and the API show it) but not marked sent;
                # a repeat or a recovery is not recorded; each goes again at the next check
                if alert.status == "open":
                    decision.states[alert.condition] = dataclasses.replace(
                        decision.states[alert.condition], last_sent_at=None)
                else:
                    decision.states.pop(alert.condition, None)
                continue
            sent.append(alert)
        for state in decision.states.values():
            db.execute("put_alert_state", state.__dict__)
    for alert in sent:
        log.info("alert %s: %s", alert.status, alert.title)
    return sent


def send_test(db: Database, settings: Settings) -> dict:
    """A test alert to every channel: channel id -> error, or "" when delivered."""
    cfg = config(db)
    alert = core.test_alert(settings.public_url, dt.datetime.now(dt.timezone.utc))
    errors = deliver(settings, cfg["channels"], alert)
    return {c["id"]: errors.get(c["id"], "") for c in cfg["channels"]}


def as_json(db: Database) -> dict:
    """/api/v1/alerts: each condition's state, the thresholds, the channels (kind and target)."""
    cfg = config(db)
    known = states(db)
    return {"alerts": [{"condition": key, "title": core.CONDITIONS[key][0],
                        "open": known[key].open if key in known else False,
                        "since": _iso(known[key].since) if key in known and known[key].open else None,
                        "count": known[key].count if key in known else 0,
                        "detail": known[key].detail if key in known else "",
                        "last_sent_at": _iso(known[key].last_sent_at) if key in known else None,
                        "cleared_at": _iso(known[key].cleared_at) if key in known else None}
                       for key in core.CONDITIONS],
            "thresholds": cfg["thresholds"].__dict__,
            "channels": [{"id": c["id"], "kind": c["kind"], "target": shown_target(c)} for c in cfg["channels"]]}


def shown_target(channel: dict) -> str:
    """A webhook URL is a secret (Slack's carries its token in the path): only its host is shown."""
    if channel["kind"] == "email":
        return channel["target"]
    scheme, _, rest = channel["target"].partition("://")
    return f"{scheme}://{rest.split('/')[0]}/…"


def _iso(value):
    return value.isoformat() if value else None
