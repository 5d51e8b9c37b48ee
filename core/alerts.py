"""Alerts (pure): which conditions hold, given what Postgres says; what to send (raise, repeat, recovery)
given what was sent before; the message each channel gets."""
from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass, field, replace

# condition -> (what it says, the console page that shows it)
CONDITIONS = {
    "failed_writes": ("Writes to Salesforce failed", "/errors"),
    "failed_notifications": ("Notifications from Salesforce failed", "/errors"),
    "lag_sf_to_pg": ("Salesforce → Postgres is behind", "/"),
    "lag_pg_to_sf": ("Postgres → Salesforce is behind", "/"),
    "no_worker": ("No worker is running", "/"),
    "cdc_disconnected": ("The CDC subscriber is disconnected", "/"),
    "drift_found": ("A drift check found differences", "/errors"),
    "budget_80": ("API use is above 80% of the budget", "/"),
    "budget_100": ("API use is above the budget", "/"),
    "salesforce_unreachable": ("Salesforce is unreachable", "/"),
    "credentials_refused": ("Salesforce refuses the credentials", "/setup"),
}
# Conditions about items that pile up: repeated only when new ones arrived since the last alert.
NEW_SINCE_LAST = frozenset({"failed_writes", "failed_notifications"})
CHANNEL_KINDS = ("webhook", "slack", "email")
_EMAIL_RE = re.compile(r"^[^@\s,;]+@[^@\s,;]+\.[^@\s,;]+$")


class AlertConfigError(ValueError):
    def __init__(self, field_name: str, message: str):
        super().__init__(message)
        self.field = field_name


@dataclass(frozen=True)
class Thresholds:
    lag_minutes_sf_to_pg: int = 15
    lag_minutes_pg_to_sf: int = 15
    repeat_minutes: int = 60          # an open alert is not sent again sooner than this

    @classmethod
    def from_document(cls, doc: dict | None) -> "Thresholds":
        doc = doc or {}
        return cls(**{k: int(doc[k]) for k in cls.__dataclass_fields__ if k in doc})


def parse_thresholds(form: dict) -> Thresholds:
    values = {}
    for name, low, high in (("lag_minutes_sf_to_pg", 1, 10_080), ("lag_minutes_pg_to_sf", 1, 10_080),
                            ("repeat_minutes", 1, 10_080)):
        raw = str(form.get(name, "")).strip()
        if not raw.isdigit() or not low <= int(raw) <= high:
            raise AlertConfigError(name, f"{name}: whole minutes from {low} to {high}")
        values[name] = int(raw)
    return Thresholds(**values)


def parse_channel(form: dict) -> dict:
    """A channel from the Setup form or the API: {kind, target}; a refusal names the field."""
    kind = str(form.get("kind", "")).strip()
    target = str(form.get("target", "")).strip()
    if kind not in CHANNEL_KINDS:
        raise AlertConfigError("kind", f"kind: one of {', '.join(CHANNEL_KINDS)}")
    if not target or len(target) > 2000:
        raise AlertConfigError("target", "target: a URL, or an email address for email")
    if kind == "email":
        addresses = [a.strip() for a in target.split(",") if a.strip()]
        if not addresses or not all(_EMAIL_RE.match(a) for a in addresses):
            raise AlertConfigError("target", "target: email addresses, separated by commas")
        target = ", ".join(addresses)
    elif not re.match(r"^https?://[^\s/]+", target):
        raise AlertConfigError("target", "target: an http(s) URL")
    return {"kind": kind, "target": target}


@dataclass(frozen=True)
class Facts:
    """What the evaluator read; None where it is not known (then the condition does not hold)."""
    failed_writes: int = 0
    failed_writes_newest: int = 0            # the newest failed change's id
    failed_writes_since: dt.datetime | None = None
    failed_notifications: int = 0
    failed_notifications_newest: int = 0     # the newest failure, as microseconds since the epoch
    failed_notifications_since: dt.datetime | None = None
    oldest_pending_sf: dt.datetime | None = None     # oldest notification waiting to be applied
    oldest_pending_pg: dt.datetime | None = None     # oldest change waiting to be sent
    send_window_minutes: int = 0                     # the write path holds part-filled calls this long on purpose
    workers_alive: int | None = None
    workers_last_seen: dt.datetime | None = None
    # None until a CDC subscriber reports: it writes forcebridge.documents 'cdc_subscriber' = {connected, since}
    cdc_connected: bool | None = None
    cdc_since: dt.datetime | None = None
    drift_differences: int = 0
    drift_objects: tuple[str, ...] = ()
    drift_since: dt.datetime | None = None
    budget_share: float | None = None
    budget_since: dt.datetime | None = None
    salesforce: dict | None = None                   # {state: ok|unreachable|refused, since, message}


@dataclass(frozen=True)
class Observation:
    condition: str
    active: bool
    since: dt.datetime | None = None
    count: int = 0
    detail: str = ""
    watermark: int = 0


@dataclass(frozen=True)
class State:
    """One condition as Postgres keeps it (forcebridge.alert_state)."""
    condition: str
    open: bool = False
    since: dt.datetime | None = None
    count: int = 0
    detail: str = ""
    watermark: int = 0
    last_sent_at: dt.datetime | None = None
    cleared_at: dt.datetime | None = None


@dataclass(frozen=True)
class Alert:
    """What is sent: status is open (first time), still open (a repeat), recovered, or test."""
    condition: str
    status: str
    title: str
    since: dt.datetime | None
    count: int
    detail: str
    link: str

    def text(self) -> str:
        head = {"open": "ALERT", "still open": "STILL OPEN", "recovered": "RECOVERED", "test": "TEST"}[self.status]
        since = f" since {self.since:%Y-%m-%d %H:%M} UTC" if self.since else ""
        count = f" ({self.count:,})" if self.count else ""
        return f"[ForceBridge] {head}: {self.title}{count}{since}. {self.detail} {self.link}".replace("  ", " ").strip()

    def as_json(self) -> dict:
        return {"condition": self.condition, "status": self.status, "title": self.title,
                "since": self.since.isoformat() if self.since else None, "count": self.count,
                "detail": self.detail, "link": self.link, "text": self.text()}


def _minutes(delta: dt.timedelta) -> int:
    return int(delta.total_seconds() // 60)


def observe(facts: Facts, thresholds: Thresholds, now: dt.datetime) -> list[Observation]:
    """Every condition, holding or not."""
    out = [
        Observation("failed_writes", facts.failed_writes > 0, facts.failed_writes_since, facts.failed_writes,
                    f"{facts.failed_writes:,} changes could not be written to Salesforce.",
                    facts.failed_writes_newest),
        Observation("failed_notifications", facts.failed_notifications > 0, facts.failed_notifications_since,
                    facts.failed_notifications,
                    f"{facts.failed_notifications:,} notifications could not be applied.",
                    facts.failed_notifications_newest),
    ]
    window = facts.send_window_minutes
    for key, oldest, limit, held in (
            ("lag_sf_to_pg", facts.oldest_pending_sf, thresholds.lag_minutes_sf_to_pg, 0),
            ("lag_pg_to_sf", facts.oldest_pending_pg, thresholds.lag_minutes_pg_to_sf + window, window)):
        behind = _minutes(now - oldest) if oldest else 0
        threshold = f"threshold {limit - held}" + (f", plus the send window's {held}" if held else "")
        out.append(Observation(key, oldest is not None and behind >= limit, oldest, behind,
                               f"The oldest change has waited {behind} minutes ({threshold})."))
    out.append(Observation("no_worker", facts.workers_alive == 0, facts.workers_last_seen, 0,
                           "No worker process has beaten for a while; start `python -m jobs.worker`."))
    out.append(Observation("cdc_disconnected", facts.cdc_connected is False, facts.cdc_since, 0,
                           "Changes arrive only through Outbound Messages and polls."))
    out.append(Observation("drift_found", facts.drift_differences > 0, facts.drift_since, facts.drift_differences,
                           f"Records differ in {', '.join(facts.drift_objects)}."))
    share = facts.budget_share or 0.0
    for key, level in (("budget_80", 0.8), ("budget_100", 1.0)):
        out.append(Observation(key, share >= level, facts.budget_since, int(math.floor(share * 100)),
                               f"ForceBridge used {share:.0%} of its API budget in the last 24 hours."))
    sf = facts.salesforce or {}
    since = parse_time(sf.get("since"))
    out.append(Observation("salesforce_unreachable", sf.get("state") == "unreachable", since, 0,
                           str(sf.get("message", ""))[:300]))
    out.append(Observation("credentials_refused", sf.get("state") == "refused", since, 0,
                           str(sf.get("message", ""))[:300]))
    return out


def parse_time(value) -> dt.datetime | None:
    if isinstance(value, dt.datetime) or value is None:
        return value
    try:
        return dt.datetime.fromisoformat(str(value))
    except ValueError:
        return None


@dataclass
class Decision:
    alerts: list = field(default_factory=list)      # Alert
    states: dict = field(default_factory=dict)      # condition -> State to store (changed ones)


def decide(observations: list[Observation], states: dict, thresholds: Thresholds, now: dt.datetime,
           base_url: str = "") -> Decision:
    """What to send now. Opening and clearing always send; an open alert is sent again only after
    `repeat_minutes`, and those about failures only when new ones arrived (with how many are new)."""
    repeat = dt.timedelta(minutes=thresholds.repeat_minutes)
    out = Decision()
    for o in observations:
        state = states.get(o.condition) or State(o.condition)
        title, path = CONDITIONS[o.condition]
        link = base_url.rstrip("/") + path

        def alert(status, count=o.count, detail=o.detail, since=o.since):
            return Alert(o.condition, status, title, since, count, detail, link)

        if o.active and not state.open:
            out.alerts.append(alert("open"))
            out.states[o.condition] = State(o.condition, True, o.since or now, o.count, o.detail, o.watermark,
                                            now, None)
        elif o.active and state.last_sent_at is None:
            # opened while no channel took it: it goes out as new until one does
            out.alerts.append(alert("open", since=state.since))
            out.states[o.condition] = replace(state, count=o.count, detail=o.detail, watermark=o.watermark,
                                              last_sent_at=now)
        elif o.active:
            due = now - state.last_sent_at >= repeat
            if o.condition in NEW_SINCE_LAST:
                new = o.watermark > state.watermark
                if due and new:
                    out.alerts.append(alert("still open", detail=f"New since the last alert. {o.detail}",
                                            since=state.since))
                    out.states[o.condition] = replace(state, count=o.count, detail=o.detail,
                                                      watermark=o.watermark, last_sent_at=now)
                elif o.count != state.count:
                    out.states[o.condition] = replace(state, count=o.count, detail=o.detail)
            elif due:
                out.alerts.append(alert("still open", since=state.since))
                out.states[o.condition] = replace(state, count=o.count, detail=o.detail, last_sent_at=now)
            elif o.count != state.count:
                out.states[o.condition] = replace(state, count=o.count, detail=o.detail)
        elif state.open:
            out.alerts.append(alert("recovered", count=0, detail="Back to normal.", since=state.since))
            out.states[o.condition] = replace(state, open=False, count=0, cleared_at=now, last_sent_at=now)
    return out


def test_alert(base_url: str, now: dt.datetime) -> Alert:
    return Alert("test", "test", "A test alert from the Setup page", now, 0,
                 "If you read this, the channel works.", base_url.rstrip("/") + "/setup")


def slack_body(alert: Alert) -> dict:
    """Slack's incoming-webhook format: text (mrkdwn), a link to the console page."""
    mark = {"open": ":red_circle:", "still open": ":red_circle:", "recovered": ":large_green_circle:",
            "test": ":information_source:"}[alert.status]
    since = f" since {alert.since:%Y-%m-%d %H:%M} UTC" if alert.since else ""
    count = f" ({alert.count:,})" if alert.count else ""
    link = f" <{alert.link}|Open the console>" if alert.link.startswith("http") else f" {alert.link}"
    return {"text": f"{mark} *{alert.status.upper()}: {alert.title}*{count}{since}\n{alert.detail}{link}"}


def email_subject(alert: Alert) -> str:
    return f"[ForceBridge] {alert.status.upper()}: {alert.title}"
