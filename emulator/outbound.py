"""Outbound Messages: rules, a notification queue persisted in the data dir, and a sender thread
that POSTs SOAP batches of up to 100 notifications and retries them the way Salesforce does."""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import pathlib
import random
import re
import sqlite3
import threading
from typing import Callable, Iterable, Sequence
from xml.etree import ElementTree
from xml.sax.saxutils import escape

import requests
from flask import Blueprint, current_app, jsonify, request

from emulator import ids

log = logging.getLogger(__name__)

MAX_PER_MESSAGE = 100          # "A single SOAP message can include up to 100 notifications."
ACK_TIMEOUT = 60.0             # emulated seconds Salesforce waits for the listener's answer
FIRST_RETRY = 30.0             # unofficial schedule "30s, 1m, 2m, 4m etc up to 2 hours"
MAX_RETRY_INTERVAL = 2 * 3600.0
GIVE_UP_AFTER = 24 * 3600.0
API_VERSION = "59.0"           # version in Enterprise/Partner URLs, simple-salesforce's default
ACTION_PREFIX = "04k"
NOTIFICATION_PREFIX = "04l"
TRIGGERING_KINDS = frozenset({"created", "updated"})

SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
OUTBOUND_NS = "http://soap.sforce.com/2005/09/outbound"


# ---------------------------------------------------------------- pure core

@dataclasses.dataclass(frozen=True)
class Rule:
    """One Outbound Message definition: which object's changes go where, with which fields."""
    id: str
    sobject: str
    fields: tuple[str, ...]
    endpoint_url: str
    exclude_user_ids: tuple[str, ...] = ()
    exclude_clients: tuple[str, ...] = ()
    instance_url: str = "https://127.0.0.1"
    ca_bundle: str | None = None
    active: bool = True

    def to_json(self) -> dict:
        return {
            "id": self.id, "object": self.sobject, "fields": list(self.fields),
            "endpoint_url": self.endpoint_url, "exclude_user_ids": list(self.exclude_user_ids),
            "exclude_clients": list(self.exclude_clients), "instance_url": self.instance_url,
            "ca_bundle": self.ca_bundle, "active": self.active,
        }

    @classmethod
    def from_json(cls, body: dict) -> "Rule":
        return cls(
            id=body["id"], sobject=body["object"], fields=tuple(body["fields"]),
            endpoint_url=body["endpoint_url"],
            exclude_user_ids=tuple(body.get("exclude_user_ids") or ()),
            exclude_clients=tuple(body.get("exclude_clients") or ()),
            instance_url=body.get("instance_url") or "https://127.0.0.1",
            ca_bundle=body.get("ca_bundle"), active=bool(body.get("active", True)),
        )


@dataclasses.dataclass(frozen=True)
class Queued:
    """A notification waiting in the queue (times are emulated epoch seconds)."""
    id: str
    rule_id: str
    sobject: str
    record_id: str
    created_at: float
    due_at: float
    attempts: int


def rule_matches(rule: Rule, change) -> bool:
    """Whether a committed change queues a notification for this rule."""
    if not rule.active or change.kind not in TRIGGERING_KINDS:
        return False
    if rule.sobject.lower() != change.sobject.lower():
        return False
    if change.user_id and ids_equal_any(change.user_id, rule.exclude_user_ids):
        return False
    return not (change.client and change.client in rule.exclude_clients)


def ids_equal_any(record_id: str, candidates: Iterable[str]) -> bool:
    """Compare Ids the way Salesforce does: 15- and 18-character forms are the same Id."""
    return any(record_id[:15] == other[:15] for other in candidates)


def retry_delay(attempts: int) -> float:
    """Seconds to wait after the `attempts`-th failed delivery: 30 s doubling, capped at 2 h."""
    return min(FIRST_RETRY * 2 ** max(attempts - 1, 0), MAX_RETRY_INTERVAL)


def is_expired(created_at: float, now: float) -> bool:
    """Salesforce drops a notification it could not deliver within 24 hours."""
    return now - created_at >= GIVE_UP_AFTER


def plan_messages(due: Sequence[Queued], shuffle: Callable[[list], None] | None = None
                  ) -> list[list[Queued]]:
    """Group due notifications by rule (one object per message), at most 100 per message.

    Queue order is kept unless `shuffle` (chaos: reorder) rearranges it first.
    """
    ordered = list(due)
    if shuffle:
        shuffle(ordered)
    by_rule: dict[str, list[Queued]] = {}
    for item in ordered:
        by_rule.setdefault(item.rule_id, []).append(item)
    messages = []
    for items in by_rule.values():
        messages.extend(items[i:i + MAX_PER_MESSAGE] for i in range(0, len(items), MAX_PER_MESSAGE))
    if shuffle:
        shuffle(messages)
    return messages


def soap_text(value, field_type: str) -> str:
    """A field value as Salesforce writes it in an Outbound Message (real captures)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if field_type in ("double", "currency", "percent") and isinstance(value, (int, float)):
        return repr(float(value))
    if field_type == "datetime" and isinstance(value, str):
        return re.sub(r"(\+0000|\+00:00)$", "Z", value)
    return str(value)


def sobject_fields(record: dict | None, record_id: str, fields: Sequence[str],
                   field_types: dict[str, str]) -> list[tuple[str, str]]:
    """(name, text) pairs: Id first, then the rule's fields alphabetically, null fields omitted.

    A record deleted before sending carries its Id only ("the notification will not contain
    any data").
    """
    pairs = [("Id", record_id)]
    if record is None:
        return pairs
    for name in sorted(f for f in fields if f != "Id"):
        value = record.get(name)
        if value is not None:
            pairs.append((name, soap_text(value, field_types.get(name, "string"))))
    return pairs


def service_urls(instance_url: str, org_id: str, api_version: str = API_VERSION) -> tuple[str, str]:
    """(EnterpriseUrl, PartnerUrl), both ending in the 15-character org id."""
    base = instance_url.rstrip("/")
    return (f"{base}/services/Soap/c/{api_version}/{org_id[:15]}",
            f"{base}/services/Soap/u/{api_version}/{org_id[:15]}")


def build_message(org_id: str, action_id: str, instance_url: str, sobject: str,
                  notifications: Sequence[tuple[str, list[tuple[str, str]]]],
                  session_id: str | None = None) -> bytes:
    """The SOAP envelope Salesforce POSTs, laid out like the real captures."""
    if not 1 <= len(notifications) <= MAX_PER_MESSAGE:
        raise ValueError("a message carries 1 to 100 notifications")
    enterprise_url, partner_url = service_urls(instance_url, org_id)
    session = (f"<SessionId>{escape(session_id)}</SessionId>" if session_id
               else '<SessionId xsi:nil="true"/>')
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<soapenv:Envelope xmlns:soapenv="{SOAP_NS}" xmlns:xsd="http://www.w3.org/2001/XMLSchema"'
        ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n'
        ' <soapenv:Body>\n'
        f'  <notifications xmlns="{OUTBOUND_NS}">\n'
        f'   <OrganizationId>{org_id}</OrganizationId>\n'
        f'   <ActionId>{action_id}</ActionId>\n'
        f'   {session}\n'
        f'   <EnterpriseUrl>{escape(enterprise_url)}</EnterpriseUrl>\n'
        f'   <PartnerUrl>{escape(partner_url)}</PartnerUrl>\n'
    ]
    for notification_id, pairs in notifications:
        parts.append(
            '   <Notification>\n'
            f'    <Id>{notification_id}</Id>\n'
            f'    <sObject xsi:type="sf:{sobject}" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">\n')
        parts.extend(f'     <sf:{name}>{escape(text)}</sf:{name}>\n' for name, text in pairs)
        parts.append('    </sObject>\n   </Notification>\n')
    parts.append('  </notifications>\n </soapenv:Body>\n</soapenv:Envelope>\n')
    return "".join(parts).encode("utf-8")


def is_ack(status_code: int, body: bytes) -> bool:
    """Delivered only on HTTP 200 whose notificationsResponse/Ack is true; anything else is retried."""
    if status_code != 200:
        return False
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        return False
    ack = root.find(f".//{{{OUTBOUND_NS}}}notificationsResponse/{{{OUTBOUND_NS}}}Ack")
    return ack is not None and (ack.text or "").strip() in ("true", "1")


# ---------------------------------------------------------------- persisted queue

def load_queries(path: pathlib.Path) -> dict[str, str]:
    """Named statements from a .sql file (`-- name: x` headers)."""
    queries, name, lines = {}, None, []
    for line in path.read_text().splitlines():
        header = re.match(r"--\s*name:\s*(\w+)", line)
        if header:
            if name:
                queries[name] = "\n".join(lines).strip()
            name, lines = header.group(1), []
        elif name and not line.startswith("--"):
            lines.append(line)
    if name:
        queries[name] = "\n".join(lines).strip()
    return queries


QUERIES = load_queries(pathlib.Path(__file__).with_name("outbound.sql"))


def _epoch(moment: dt.datetime) -> float:
    return moment.timestamp()


class OutboundQueue:
    """Rules, queued notifications, counters and settings in <data>/outbound.sqlite3; thread-safe."""

    def __init__(self, path: pathlib.Path):
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # Survives a crash of the emulator (not of the machine) without an fsync per notification.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(QUERIES["schema"])
        self._numbers = self.counters()

    def _run(self, query: str, **params):
        with self._lock:
            return self._db.execute(QUERIES[query], params).fetchall()

    def transaction(self):
        return _Transaction(self)

    def rules(self) -> list[Rule]:
        return [Rule.from_json(json.loads(body)) for (body,) in self._run("rules")]

    def put_rule(self, rule: Rule) -> None:
        self._run("put_rule", id=rule.id, body=json.dumps(rule.to_json()))

    def delete_rule(self, rule_id: str) -> None:
        self._run("delete_rule", id=rule_id)

    def take_number(self, counter: str) -> int:
        """The next value of a persisted sequence (Ids must never repeat across restarts)."""
        with self._lock:
            number = self._numbers.get(counter, 0) + 1
            self._numbers[counter] = number
            self._run("bump_counter", name=counter, by=1)
            return number

    def enqueue(self, rule: Rule, record_id: str, now: float, make_id: Callable[[int], str]) -> str:
        """Queue one notification; its Id comes from the persisted "ids" sequence in the same commit."""
        with self._lock, self.transaction():
            number = self._numbers.get("ids", 0) + 1
            notification_id = make_id(number)
            self._run("enqueue", id=notification_id, rule_id=rule.id, sobject=rule.sobject,
                      record_id=record_id, created_at=now)
            self._run("bump_counter", name="ids", by=1)
            self._run("bump_counter", name="enqueued", by=1)
            self._numbers["ids"] = number
            return notification_id

    def due(self, now: float, limit: int) -> list[Queued]:
        return [Queued(*row) for row in self._run("due", now=now, limit=limit)]

    def next_due(self) -> float | None:
        return self._run("next_due")[0][0]

    def queued(self, limit: int = 1000) -> list[dict]:
        keys = ("id", "rule_id", "object", "record_id", "created_at", "due_at", "attempts", "last_error")
        return [dict(zip(keys, row)) for row in self._run("queued", limit=limit)]

    def queued_count(self) -> int:
        return self._run("queued_count")[0][0]

    def forget(self, items: Iterable[Queued], counter: str) -> None:
        with self._lock, self.transaction():
            count = 0
            for item in items:
                self._run("forget", id=item.id)
                count += 1
            self._run("bump_counter", name=counter, by=count)

    def reschedule(self, items: Iterable[Queued], due_at: Callable[[int], float], error: str) -> None:
        """After a failed delivery: one more attempt each, next try at due_at(attempts)."""
        with self._lock, self.transaction():
            for item in items:
                attempts = item.attempts + 1
                self._run("reschedule", id=item.id, attempts=attempts, due_at=due_at(attempts),
                          last_error=error)

    def bump(self, counter: str, by: int = 1) -> None:
        self._run("bump_counter", name=counter, by=by)

    def counters(self) -> dict[str, int]:
        return dict(self._run("counters"))

    def settings(self) -> dict:
        return {name: json.loads(value) for name, value in self._run("settings")}

    def put_setting(self, name: str, value) -> None:
        self._run("put_setting", name=name, value=json.dumps(value))

    def close(self) -> None:
        with self._lock:
            self._db.close()


class _Transaction:
    def __init__(self, queue: OutboundQueue):
        self.queue = queue

    def __enter__(self):
        self.queue._lock.acquire()
        self.queue._db.execute("BEGIN")

    def __exit__(self, exc_type, *_):
        try:
            self.queue._db.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self.queue._lock.release()


# ---------------------------------------------------------------- sender

@dataclasses.dataclass
class Chaos:
    """Seeded misbehaviour Salesforce is allowed: duplicates and out-of-order delivery."""
    seed: int = 0
    redeliver: float = 0.0     # probability that an acknowledged message is sent once more
    reorder: bool = False

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def post_message(session: requests.Session, url: str, body: bytes, timeout: float,
                 verify) -> tuple[int, bytes]:
    """The one place the emulator talks HTTP to a listener."""
    response = session.post(url, data=body, timeout=timeout, verify=verify, headers={
        "Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'})
    return response.status_code, response.content


class OutboundSender:
    """Queues notifications for matching changes and delivers them from a background thread.

    deliver_due() does one pass and can be driven by hand in tests; start() runs it in a loop.
    """

    POLL_SECONDS = 0.05        # real seconds; upper bound on how late a due message goes out
    MAX_PER_PASS = 5_000       # bounds memory and lets pause/stop act between passes

    def __init__(self, org, queue: OutboundQueue | None = None,
                 post: Callable[..., tuple[int, bytes]] = post_message):
        self.org = org
        self.clock = org.clock
        self.queue = queue or OutboundQueue(pathlib.Path(org.data_dir) / "outbound.sqlite3")
        self._post = post
        self._http = requests.Session()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pass_lock = threading.Lock()
        self._rules = {rule.id: rule for rule in self.queue.rules()}
        settings = self.queue.settings()
        self.paused = bool(settings.get("paused", False))
        self.ca_bundle = settings.get("ca_bundle")
        self.chaos = Chaos(**settings.get("chaos", {}))
        self._rng = random.Random(self.chaos.seed)

    # rules and settings ------------------------------------------------
    def rules(self) -> list[Rule]:
        return list(self._rules.values())

    def rule(self, rule_id: str) -> Rule | None:
        return self._rules.get(rule_id)

    def new_rule_id(self) -> str:
        return self._make_id(ACTION_PREFIX, "rule_ids")

    def put_rule(self, rule: Rule) -> None:
        self.queue.put_rule(rule)
        self._rules[rule.id] = rule

    def delete_rule(self, rule_id: str) -> None:
        self.queue.delete_rule(rule_id)
        self._rules.pop(rule_id, None)

    def set_paused(self, paused: bool) -> None:
        self.paused = paused
        self.queue.put_setting("paused", paused)
        self._wake.set()

    def set_chaos(self, chaos: Chaos) -> None:
        self.chaos = chaos
        self._rng = random.Random(chaos.seed)
        self.queue.put_setting("chaos", chaos.to_json())

    def set_ca_bundle(self, path: str | None) -> None:
        self.ca_bundle = path
        self.queue.put_setting("ca_bundle", path)

    def status(self) -> dict:
        counters = self.queue.counters()
        names = ("enqueued", "sent", "acked", "retries", "dropped", "messages", "failed_messages",
                 "redelivered")
        return {"queued": self.queue.queued_count(), **{n: counters.get(n, 0) for n in names},
                "paused": self.paused, "chaos": self.chaos.to_json(), "rules": len(self._rules)}

    # queueing ------------------------------------------------------------
    def on_change(self, change) -> None:
        """Org.subscribe callback: one notification per matching rule."""
        now = None      # read once, and only for a change some rule wants (most changes: none)
        queued = False
        for rule in list(self._rules.values()):
            if rule_matches(rule, change):
                if now is None:
                    now = _epoch(self.clock.now())
                self.queue.enqueue(rule, change.record_id, now, self._id_maker(NOTIFICATION_PREFIX))
                queued = True
        if queued:
            self._wake.set()

    def _make_id(self, prefix: str, counter: str) -> str:
        return self._id_maker(prefix)(self.queue.take_number(counter))

    def _id_maker(self, prefix: str) -> Callable[[int], str]:
        return lambda number: ids.make_id(prefix, self.org.org_id[3:5], number)

    # delivery ------------------------------------------------------------
    def deliver_due(self) -> int:
        """Send every due notification once; returns the number of HTTP messages posted."""
        with self._pass_lock:
            now = _epoch(self.clock.now())
            due = self.queue.due(now, self.MAX_PER_PASS)
            if len(due) == self.MAX_PER_PASS:
                self._wake.set()           # more are due: go again right after this pass
            expired = [item for item in due if is_expired(item.created_at, now)]
            orphans = [item for item in due if item.rule_id not in self._rules]
            if expired or orphans:
                self.queue.forget(expired + orphans, "dropped")
            gone = {item.id for item in expired + orphans}
            live = [item for item in due if item.id not in gone]
            shuffle = self._rng.shuffle if self.chaos.reorder else None
            messages = plan_messages(live, shuffle)
            for items in messages:
                self._deliver(self._rules[items[0].rule_id], items)
            return len(messages)

    def _deliver(self, rule: Rule, items: list[Queued]) -> None:
        try:
            body = self._render(rule, items)
        except Exception as exc:       # e.g. the object's describe changed: retry, then drop, as for a dead listener
            log.exception("cannot build outbound message for rule %s", rule.id)
            self._failed(items, f"cannot build the message: {exc}"[:500])
            return
        retried = sum(1 for item in items if item.attempts)
        self.queue.bump("messages")
        self.queue.bump("sent", len(items))
        if retried:
            self.queue.bump("retries", retried)
        error = self._send(rule, body)
        if error is None:
            self.queue.forget(items, "acked")
            if self.chaos.redeliver and self._rng.random() < self.chaos.redeliver:
                self.queue.bump("redelivered", len(items))
                self._send(rule, body)
            return
        self.queue.bump("failed_messages")
        self._failed(items, error)

    def _failed(self, items: list[Queued], error: str) -> None:
        now = _epoch(self.clock.now())
        self.queue.reschedule(items, lambda attempts: now + retry_delay(attempts), error)

    def _render(self, rule: Rule, items: list[Queued]) -> bytes:
        field_types = self._field_types(rule.sobject)
        # A field dropped from a user-defined describe since the rule was made is left out.
        fields = [f for f in rule.fields if f != "Id" and f in field_types]
        wanted = ["Id", *fields]
        notifications = []
        for item in items:
            # Latest values at send time, not at trigger time.
            record = self.org.get(rule.sobject, item.record_id, fields=wanted)
            notifications.append((item.id, sobject_fields(record, item.record_id, fields,
                                                          field_types)))
        return build_message(self.org.org_id, rule.id, rule.instance_url, rule.sobject, notifications)

    def _field_types(self, sobject: str) -> dict[str, str]:
        return {f["name"]: f["type"] for f in self.org.describe(sobject)["fields"]}

    def _send(self, rule: Rule, body: bytes) -> str | None:
        """None when acknowledged, else why not."""
        verify = rule.ca_bundle or self.ca_bundle or True
        try:
            status, answer = self._post(self._http, rule.endpoint_url, body,
                                        self.clock.real_seconds(ACK_TIMEOUT), verify)
        except requests.RequestException as exc:
            return f"{type(exc).__name__}: {exc}"[:500]
        if is_ack(status, answer):
            return None
        return f"HTTP {status}: {answer[:200].decode('utf-8', 'replace')}"

    # thread ----------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="outbound-sender", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._http.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self.paused:
                try:
                    self.deliver_due()
                except Exception:          # the sender must outlive any one bad record or rule
                    log.exception("outbound delivery pass failed")
            self._wake.wait(self._idle_seconds())
            self._wake.clear()

    def _idle_seconds(self) -> float:
        next_due = self.queue.next_due()
        if next_due is None or self.paused:
            return self.POLL_SECONDS
        wait = self.clock.real_seconds(max(next_due - _epoch(self.clock.now()), 0.0))
        return max(min(wait, self.POLL_SECONDS), 0.001)


# ---------------------------------------------------------------- admin API

admin_bp = Blueprint("outbound_admin", __name__, url_prefix="/_emulator/outbound")


def init_app(app) -> None:
    """Called by create_app after registering admin_bp: the org's sender, subscribed and running."""
    org = app.config["ORG"]
    sender = OutboundSender(org)
    org.subscribe(sender.on_change)
    app.extensions["emulator.outbound"] = sender
    app.config.setdefault("SHUTDOWN_HOOKS", []).append(sender.stop)
    sender.start()


def sender_for_app() -> OutboundSender:
    return current_app.extensions["emulator.outbound"]


def _bad_request(message: str):
    return jsonify({"error": message}), 400


def _rule_from_request(body: dict, rule_id: str, org, default_instance: str) -> Rule | str:
    """A Rule from admin JSON, or the reason it is not valid."""
    sobject = body.get("object")
    if sobject not in org.sobject_names():
        return f"unknown object {sobject!r}"
    known = {f["name"]: f["name"] for f in org.describe(sobject)["fields"]}
    by_lower = {name.lower(): name for name in known}
    fields = []
    for name in body.get("fields") or []:
        if name.lower() not in by_lower:
            return f"unknown field {sobject}.{name}"
        fields.append(by_lower[name.lower()])
    url = body.get("endpoint_url") or ""
    if not re.match(r"^https?://", url):
        return "endpoint_url must be an http:// or https:// URL"
    return Rule(
        id=rule_id, sobject=sobject, fields=tuple(dict.fromkeys(fields)), endpoint_url=url,
        exclude_user_ids=tuple(body.get("exclude_user_ids") or ()),
        exclude_clients=tuple(body.get("exclude_clients") or ()),
        instance_url=body.get("instance_url") or default_instance,
        ca_bundle=body.get("ca_bundle"), active=bool(body.get("active", True)))


@admin_bp.get("/rules")
def list_rules():
    return jsonify([rule.to_json() for rule in sender_for_app().rules()])


@admin_bp.post("/rules")
def create_rule():
    sender = sender_for_app()
    body = request.get_json(silent=True) or {}
    rule = _rule_from_request(body, sender.new_rule_id(), sender.org, request.host_url)
    if isinstance(rule, str):
        return _bad_request(rule)
    sender.put_rule(rule)
    return jsonify(rule.to_json()), 201


@admin_bp.get("/rules/<rule_id>")
def get_rule(rule_id):
    rule = sender_for_app().rule(rule_id)
    return (jsonify(rule.to_json()), 200) if rule else (jsonify({"error": "no such rule"}), 404)


@admin_bp.route("/rules/<rule_id>", methods=["PUT", "PATCH"])
def update_rule(rule_id):
    sender = sender_for_app()
    current = sender.rule(rule_id)
    if current is None:
        return jsonify({"error": "no such rule"}), 404
    body = request.get_json(silent=True) or {}
    if request.method == "PATCH":
        body = {**current.to_json(), **body}
    rule = _rule_from_request(body, rule_id, sender.org, current.instance_url)
    if isinstance(rule, str):
        return _bad_request(rule)
    sender.put_rule(rule)
    return jsonify(rule.to_json())


@admin_bp.delete("/rules/<rule_id>")
def delete_rule(rule_id):
    sender_for_app().delete_rule(rule_id)
    return "", 204


@admin_bp.post("/pause")
def pause():
    sender_for_app().set_paused(True)
    return jsonify(sender_for_app().status())


@admin_bp.post("/resume")
def resume():
    sender_for_app().set_paused(False)
    return jsonify(sender_for_app().status())


@admin_bp.put("/chaos")
def set_chaos():
    body = request.get_json(silent=True) or {}
    try:
        chaos = Chaos(seed=int(body.get("seed", 0)), redeliver=float(body.get("redeliver", 0.0)),
                      reorder=bool(body.get("reorder", False)))
    except (TypeError, ValueError):
        return _bad_request("chaos takes seed (int), redeliver (0..1), reorder (bool)")
    if not 0.0 <= chaos.redeliver <= 1.0:
        return _bad_request("redeliver is a probability between 0 and 1")
    sender_for_app().set_chaos(chaos)
    return jsonify(chaos.to_json())


@admin_bp.put("/settings")
def put_settings():
    body = request.get_json(silent=True) or {}
    sender = sender_for_app()
    if "ca_bundle" in body:
        sender.set_ca_bundle(body["ca_bundle"])
    return jsonify({"ca_bundle": sender.ca_bundle})


@admin_bp.get("/status")
def status():
    return jsonify(sender_for_app().status())


@admin_bp.get("/queue")
def queue():
    """The oldest queued notifications (?limit=, default 1000)."""
    return jsonify(sender_for_app().queue.queued(request.args.get("limit", 1000, type=int)))


@admin_bp.post("/deliver")
def deliver():
    """Run one delivery pass now (handy with a paused sender or a stopped clock)."""
    return jsonify({"messages": sender_for_app().deliver_due(), **sender_for_app().status()})
