"""The emulator's Pub/Sub API (gRPC, eventbus.v1.PubSub): Change Data Capture events for every committed
change, however it was made, with Salesforce's replay, flow control, keepalives, retention and errors.

Events are written by a capture hook in the same SQLite transaction as the change (emulator/store.py
Org.capture), so an event exists exactly when its change does, and survive restarts. Replay ids are 8
opaque bytes. Any position the bus has handed out is a valid CUSTOM starting point: an event's replay id, or
the latest_replay_id of a keepalive (the interface definition says clients resubscribe from it). Events older
than the retention (72 h of the emulator's clock) are purged, and a position at or before a purged event, or
one never handed out, is refused as Salesforce refuses it (INVALID_ARGUMENT, error-code
sfdc.platform.eventbus.grpc.subscription.fetch.replayid.corrupted).

The server runs inside the emulator's worker process, beside the org, on its own port, with TLS from the
emulator's CA; `python -m emulator` prints EMULATOR_PUBSUB=host:port once it listens.
"""
from __future__ import annotations

import json
import logging
import struct
import threading
import time
import uuid
from concurrent import futures

from flask import Blueprint, current_app, has_request_context, jsonify, request

from emulator import ids
from emulator.change_events import KIND_TO_TYPE, EventSchema, event_values, topic_name

log = logging.getLogger(__name__)

ALL_CHANGES = "/data/ChangeEvents"
RETENTION_SECONDS = 72 * 3600
KEEPALIVE_SECONDS = 270          # emulated seconds between keepalives on an idle stream (Salesforce: "within 270 s")
MAX_BATCH = 100                  # events per FetchResponse, and the most one FetchRequest may ask for
API_VERSION = "62.0"
ERROR_CORRUPTED = "sfdc.platform.eventbus.grpc.subscription.fetch.replayid.corrupted"
ERROR_REPLAY_MISSING = "sfdc.platform.eventbus.grpc.subscription.fetch.replayid.validation.failed"
ERROR_REQUESTED = "sfdc.platform.eventbus.grpc.fetch.requested.events.invalid"
ERROR_AUTH = "sfdc.platform.eventbus.grpc.service.auth.error"
ERROR_TOPIC = "sfdc.platform.eventbus.grpc.subscription.topic.notfound"
ERROR_TOPIC_CHANGED = "sfdc.platform.eventbus.grpc.subscription.topic.mismatch"
ERROR_UNAVAILABLE = "sfdc.platform.eventbus.grpc.service.unavailable"
# The delivery allocation (DailyDeliveredPlatformEvents) used up: Salesforce's documented error code and message;
# the gRPC status is not documented, RESOURCE_EXHAUSTED is our choice (docs/emulator.md).
ERROR_LIMIT_EXCEEDED = "sfdc.platform.eventbus.grpc.subscription.limit.exceeded"
LIMIT_EXCEEDED_MESSAGE = "You have exceeded the event delivery limit for your org."

# No index but the replay number: a per-object stream reads forward from its position and skips others.
_SCHEMA_SQL = (
    "CREATE TABLE IF NOT EXISTS cdc_events (replay INTEGER PRIMARY KEY, entity TEXT NOT NULL, "
    "at_ms INTEGER NOT NULL, event_id TEXT NOT NULL, body TEXT NOT NULL)",
)


def encode_replay(number: int) -> bytes:
    return struct.pack(">Q", number)


def decode_replay(replay_id: bytes) -> int | None:
    if len(replay_id) != 8:
        return None
    return struct.unpack(">Q", replay_id)[0]


def change_origin(client: str | None) -> str:
    """`com/salesforce/api/<api>/<version>[;client=<id>]` for a write made inside an HTTP request."""
    api, version = "rest", API_VERSION
    if has_request_context():
        parts = request.path.strip("/").split("/")
        if len(parts) > 2 and parts[1] == "data" and parts[2].startswith("v"):
            version = parts[2][1:]
        if "/jobs/ingest" in request.path:
            api = "bulkapi"
    elif threading.current_thread().name.startswith("bulk2-ingest-"):      # emulator/bulk2.py's job runner
        api = "bulkapi"
    return f"com/salesforce/api/{api}/{version}" + (f";client={client}" if client else "")


class EventBus:
    """The org's change events: written in the change's transaction, read by streams, purged by age."""

    def __init__(self, org, retention_seconds: float = RETENTION_SECONDS, entities: list[str] | None = None):
        self.org = org
        self.retention_ms = int(retention_seconds * 1000)
        self.schemas = {sobj.name: EventSchema(sobj) for sobj in org.types.values()}
        self.by_schema_id = {s.schema_id: s for s in self.schemas.values()}
        self.by_topic = {topic_name(name): name for name in self.schemas}
        self.wakeup = threading.Condition()
        self.delivered = 0
        # Entities selected for Change Data Capture (None: every object, the emulator's default); only they
        # record events and have a per-object channel. Kept in the org's meta table, as Salesforce keeps it.
        self.initial_selection = self._names(entities) if entities is not None else None
        with org.transaction() as conn:
            for statement in _SCHEMA_SQL:
                conn.execute(statement)
            row = conn.execute("SELECT value FROM meta WHERE key = 'cdc_next_replay'").fetchone()
            self._next = int(row[0]) if row else 1
            if entities is not None:
                self._store_selection(conn, self.initial_selection)
            row = conn.execute("SELECT value FROM meta WHERE key = 'cdc_entities'").fetchone()
            self.selected: frozenset[str] | None = frozenset(json.loads(row[0])) if row and row[0] != "null" else None
        org.capture(self._capture)
        org.subscribe(self._committed)

    # ------------------------------------------------------------------ writing

    def _now_ms(self) -> int:
        return int(self.org.clock.now().timestamp() * 1000)

    # ------------------------------------------------------------------ entity selection

    def _names(self, entities) -> frozenset[str]:
        """Objects' API names as the org spells them; ValueError for an object the org does not have."""
        if not isinstance(entities, (list, tuple, set, frozenset)):
            raise ValueError("entities: a list of object names, or null for every object")
        names = set()
        for name in entities:
            sobject = self.org.types.get(str(name).lower())
            if sobject is None or sobject.name not in self.schemas:
                raise ValueError(f"{name!r} is not an object of this org")
            names.add(sobject.name)
        return frozenset(names)

    @staticmethod
    def _store_selection(conn, names: frozenset[str] | None) -> None:
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('cdc_entities', ?)",
                     (json.dumps(sorted(names)) if names is not None else "null",))

    def select(self, entities) -> frozenset[str] | None:
        """Select these objects for Change Data Capture (None: every object); events only for them from now."""
        names = self._names(entities) if entities is not None else None
        with self.org.transaction() as conn:
            self._store_selection(conn, names)
            self.selected = names
        return names

    def is_selected(self, sobject: str) -> bool:
        return self.selected is None or sobject in self.selected

    def selection(self) -> list[str] | None:
        """The selected objects, sorted; None: every object."""
        selected = self.selected
        return sorted(selected) if selected is not None else None

    def _capture(self, conn, changes) -> None:
        """Org.capture hook: the transaction's changes as events (same change to many records: one event)."""
        commit_ms, commit_number, transaction_key = self._now_ms(), self._next, str(uuid.uuid4())
        origins: dict = {}
        events: list[list] = []
        merge_key = None
        for change in changes:
            schema = self.schemas.get(change.sobject)
            if schema is None or not self.is_selected(change.sobject):
                continue
            values, changed, nulled = event_values(change.kind, change.values)
            if change.kind in ("updated", "deleted"):
                key = (change.sobject, change.kind, change.client, change.user_id,
                       json.dumps(values, sort_keys=True))
                if key == merge_key:
                    events[-1][1]["recordIds"].append(change.record_id)
                    continue
                merge_key = key
            else:
                merge_key = None
            origin = origins.get(change.client)
            if origin is None:
                origin = origins[change.client] = change_origin(change.client)
            header = {"entityName": change.sobject, "recordIds": [change.record_id],
                      "changeType": KIND_TO_TYPE[change.kind], "changeOrigin": origin,
                      "transactionKey": transaction_key, "sequenceNumber": len(events) + 1,
                      "commitTimestamp": commit_ms, "commitNumber": commit_number, "commitUser": change.user_id,
                      "nulledFields": schema.bitmap(nulled) if nulled else [], "diffFields": [],
                      "changedFields": schema.bitmap(changed) if changed else []}
            slots = schema.slots
            events.append([change.sobject, header, {k: v for k, v in values.items() if k in slots}])
        self._write(conn, events, commit_ms)

    def _write(self, conn, events: list, commit_ms: int) -> None:
        if not events:
            return
        rows = []
        for sobject, header, values in events:
            rows.append((self._next, sobject, commit_ms, str(uuid.uuid4()),
                         json.dumps({"header": header, "values": values})))
            self._next += 1
        conn.executemany("INSERT INTO cdc_events VALUES (?, ?, ?, ?, ?)", rows)
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('cdc_next_replay', ?)", (str(self._next),))

    def _committed(self, _change) -> None:
        with self.wakeup:
            self.wakeup.notify_all()

    def publish_special(self, sobject: str, change_type: str, record_ids: list[str]) -> int:
        """A GAP_* or GAP_OVERFLOW event (admin API): header only, no fields. Returns its replay number."""
        schema = self.schemas[self.org.sobject_type(sobject).name]
        if not self.is_selected(schema.sobject):
            raise ValueError(f"{schema.sobject} is not selected for Change Data Capture")
        with self.org.transaction() as conn:
            commit_ms = self._now_ms()
            header = {"entityName": schema.sobject, "recordIds": list(record_ids), "changeType": change_type,
                      "changeOrigin": "", "transactionKey": str(uuid.uuid4()), "sequenceNumber": 1,
                      "commitTimestamp": commit_ms, "commitNumber": self._next,
                      "commitUser": self.org.default_user_id, "nulledFields": [], "diffFields": [],
                      "changedFields": []}
            number = self._next
            self._write(conn, [[schema.sobject, header, {}]], commit_ms)
        self._committed(None)
        return number

    def purge(self) -> int:
        """Forget events older than the retention, on the emulator's clock; remember the newest one forgotten."""
        with self.org.transaction() as conn:
            cutoff = self._now_ms() - self.retention_ms
            newest = conn.execute("SELECT MAX(replay) FROM cdc_events WHERE at_ms < ?", (cutoff,)).fetchone()[0]
            if newest is None:
                return 0
            self._forget_through(conn, newest)
            return conn.execute("DELETE FROM cdc_events WHERE replay <= ?", (newest,)).rowcount

    def clear(self) -> None:
        """Admin reset: no events; every position handed out so far becomes invalid; the entity selection the
        emulator started with."""
        with self.org.transaction() as conn:
            conn.execute("DELETE FROM cdc_events")
            self._forget_through(conn, self._next - 1)
            self._store_selection(conn, self.initial_selection)
            self.selected = self.initial_selection

    @staticmethod
    def _forget_through(conn, number: int) -> None:
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('cdc_purged_through', ?)", (str(number),))

    @staticmethod
    def valid_start(conn, number: int) -> bool:
        """A CUSTOM position: handed out by this bus, and nothing after it purged."""
        row = conn.execute("SELECT value FROM meta WHERE key = 'cdc_purged_through'").fetchone()
        latest = conn.execute("SELECT value FROM meta WHERE key = 'cdc_next_replay'").fetchone()
        purged = int(row[0]) if row else -1
        return purged < number <= (int(latest[0]) - 1 if latest else 0)

    # ------------------------------------------------------------------ reading

    def open_reader(self):
        return self.org._connect(cache_kib=2048)     # noqa: SLF001 - one read connection per stream

    @staticmethod
    def bounds(conn) -> tuple[int | None, int | None]:
        return conn.execute("SELECT MIN(replay), MAX(replay) FROM cdc_events").fetchone()

    def read(self, conn, after: int, entity: str | None, limit: int) -> tuple[list, int]:
        """(events after `after` for the topic, at most `limit`; the position the stream has then read to)."""
        conn.execute("BEGIN")
        try:
            if entity is None:
                rows = conn.execute("SELECT replay, entity, event_id, body FROM cdc_events WHERE replay > ? "
                                    "ORDER BY replay LIMIT ?", (after, limit)).fetchall()
            else:
                rows = conn.execute("SELECT replay, entity, event_id, body FROM cdc_events WHERE entity = ? AND "
                                    "replay > ? ORDER BY replay LIMIT ?", (entity, after, limit)).fetchall()
            if len(rows) == limit:
                position = rows[-1][0]
            else:
                top = conn.execute("SELECT MAX(replay) FROM cdc_events").fetchone()[0]
                position = max(after, top or 0)
        finally:
            conn.execute("COMMIT")
        return rows, position

    def payload(self, entity: str, body: str) -> tuple[str, bytes]:
        event = json.loads(body)
        schema = self.schemas[entity]
        return schema.schema_id, schema.encode(event["header"], event["values"])


class StreamError(Exception):
    def __init__(self, code, error_code: str, message: str):
        super().__init__(message)
        self.code, self.error_code, self.message = code, error_code, message


class PubSubService:
    """The servicer (methods named as in eventbus.v1.PubSub). Faults: `fail_next` RPCs answer UNAVAILABLE;
    `reset_streams(code)` ends every open Subscribe stream with that status."""

    def __init__(self, bus: EventBus, pb2, keepalive_seconds: float):
        self.bus = bus
        self.pb2 = pb2
        self.keepalive_seconds = keepalive_seconds
        self.fail_next = 0
        self._lock = threading.Lock()
        self._streams: dict[str, dict] = {}
        self.subscribes = 0

    # ------------------------------------------------------------------ plumbing

    def _abort(self, context, code, error_code: str, message: str, rpc_id: str):
        context.set_trailing_metadata((("error-code", error_code), ("rpc-id", rpc_id)))
        context.abort(code, f"{message} rpcId: {rpc_id}")

    def _check(self, context, rpc_id: str):
        """Faults, then the metadata headers: a live session's token and this org's id. The session."""
        import grpc

        with self._lock:
            if self.fail_next > 0:
                self.fail_next -= 1
                self._abort(context, grpc.StatusCode.UNAVAILABLE, ERROR_UNAVAILABLE,
                            "The service is unavailable. Try again later.", rpc_id)
        metadata = dict(context.invocation_metadata())
        token, tenant = metadata.get("accesstoken", ""), metadata.get("tenantid", "")
        session = self.bus.org.session(token) if token else None
        try:
            same_org = ids.to18(tenant) == self.bus.org.org_id
        except ValueError:
            same_org = False
        if session is None or not same_org or not metadata.get("instanceurl"):
            self._abort(context, grpc.StatusCode.UNAUTHENTICATED, ERROR_AUTH,
                        "An authentication exception occurred. Check your credentials and try again.", rpc_id)
        return session

    def _topic(self, name: str, context, rpc_id: str) -> str | None:
        """The entity a topic carries (None for all of them); NOT_FOUND for anything else."""
        import grpc

        if name == ALL_CHANGES:
            return None
        if name in self.bus.by_topic and self.bus.is_selected(self.bus.by_topic[name]):
            return self.bus.by_topic[name]
        # An object not selected for Change Data Capture has no channel: answered as an unknown topic is
        self._abort(context, grpc.StatusCode.NOT_FOUND, ERROR_TOPIC, f"The topic {name} does not exist or you "
                    "do not have access to it.", rpc_id)
        return None

    # ------------------------------------------------------------------ unary methods

    def GetTopic(self, request, context):
        rpc_id = str(uuid.uuid4())
        self._check(context, rpc_id)
        entity = self._topic(request.topic_name, context, rpc_id)
        schema_id = self.bus.schemas[entity].schema_id if entity else ""
        return self.pb2.TopicInfo(topic_name=request.topic_name, tenant_guid=self.bus.org.org_id, can_publish=False,
                                  can_subscribe=True, schema_id=schema_id, rpc_id=rpc_id)

    def GetSchema(self, request, context):
        import grpc

        rpc_id = str(uuid.uuid4())
        self._check(context, rpc_id)
        schema = self.bus.by_schema_id.get(request.schema_id)
        if schema is None:
            self._abort(context, grpc.StatusCode.NOT_FOUND, "sfdc.platform.eventbus.grpc.schema.notfound",
                        f"No schema with id {request.schema_id}.", rpc_id)
        return self.pb2.SchemaInfo(schema_json=schema.json, schema_id=schema.schema_id, rpc_id=rpc_id)

    def Publish(self, request, context):
        import grpc

        rpc_id = str(uuid.uuid4())
        self._check(context, rpc_id)
        self._abort(context, grpc.StatusCode.PERMISSION_DENIED, "sfdc.platform.eventbus.grpc.publish.denied",
                    "Change events are published by Salesforce only.", rpc_id)

    # ------------------------------------------------------------------ Subscribe

    def _start(self, first, conn, context, rpc_id: str) -> int:
        """The stream's starting position from the first FetchRequest's replay preset."""
        import grpc

        self.bus.purge()
        low, high = self.bus.bounds(conn)
        if first.replay_preset == self.pb2.EARLIEST:
            return (low - 1) if low else (high or 0)
        if first.replay_preset != self.pb2.CUSTOM:
            return self._latest(conn)
        if not first.replay_id:
            self._abort(context, grpc.StatusCode.INVALID_ARGUMENT, ERROR_REPLAY_MISSING,
                        "The Replay ID validation failed: CUSTOM needs a replay_id.", rpc_id)
        number = decode_replay(first.replay_id)
        if number is None or not self.bus.valid_start(conn, number):
            self._abort(context, grpc.StatusCode.INVALID_ARGUMENT, ERROR_CORRUPTED,
                        "The Replay ID validation failed. Ensure that the Replay ID is valid and refers to an "
                        "event within the retention window.", rpc_id)
        return number

    def _check_allocation(self, context, rpc_id: str) -> int:
        """Events this org may still be delivered today; none left ends the call as Salesforce does."""
        import grpc

        left = self.bus.org.usage.deliverable()
        if left <= 0:
            self._abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED, ERROR_LIMIT_EXCEEDED, LIMIT_EXCEEDED_MESSAGE,
                        rpc_id)
        return left

    def _latest(self, conn) -> int:
        row = conn.execute("SELECT value FROM meta WHERE key = 'cdc_next_replay'").fetchone()
        return int(row[0]) - 1 if row else 0

    def Subscribe(self, request_iterator, context):
        import grpc

        rpc_id = str(uuid.uuid4())
        session = self._check(context, rpc_id)
        try:
            first = next(request_iterator)
        except StopIteration:
            return
        entity = self._topic(first.topic_name, context, rpc_id)
        self._check_allocation(context, rpc_id)
        if first.num_requested <= 0:
            self._abort(context, grpc.StatusCode.INVALID_ARGUMENT, ERROR_REQUESTED,
                        "num_requested must be greater than 0.", rpc_id)
        conn = self.bus.open_reader()
        state = {"credit": min(first.num_requested, MAX_BATCH), "error": None, "closed": False}
        with self._lock:
            self._streams[rpc_id] = state
            self.subscribes += 1
        try:
            position = self._start(first, conn, context, rpc_id)
            threading.Thread(target=self._read_requests, args=(request_iterator, first.topic_name, state),
                             daemon=True, name=f"pubsub-requests-{rpc_id[:8]}").start()
            yield from self._deliver(context, conn, entity, position, state, session, rpc_id)
        finally:
            state["closed"] = True
            with self._lock:
                self._streams.pop(rpc_id, None)
            conn.close()

    def _read_requests(self, request_iterator, topic: str, state: dict) -> None:
        import grpc

        try:
            for fetch in request_iterator:
                with self.bus.wakeup:
                    if fetch.topic_name and fetch.topic_name != topic:
                        state["error"] = StreamError(grpc.StatusCode.INVALID_ARGUMENT, ERROR_TOPIC_CHANGED,
                                                     "The topic of a subscription cannot change.")
                    elif fetch.num_requested <= 0:
                        state["error"] = StreamError(grpc.StatusCode.INVALID_ARGUMENT, ERROR_REQUESTED,
                                                     "num_requested must be greater than 0.")
                    else:
                        state["credit"] += min(fetch.num_requested, MAX_BATCH)
                    self.bus.wakeup.notify_all()
        except Exception:          # noqa: BLE001 - the client went away (cancelled): end the stream
            with self.bus.wakeup:
                state["closed"] = True
                self.bus.wakeup.notify_all()
        # A client that only half-closes its side keeps its credit: the stream goes on until cancelled.

    def _deliver(self, context, conn, entity, position: int, state: dict, session, rpc_id: str):
        import grpc

        last_sent = time.monotonic()
        while context.is_active():
            error = state["error"]
            if error is not None:
                self._abort(context, error.code, error.error_code, error.message, rpc_id)
            if state["closed"]:
                return
            if self.bus.org.session(session.token) is None:      # expired or ended since the stream began
                self._abort(context, grpc.StatusCode.UNAUTHENTICATED, ERROR_AUTH,
                            "An authentication exception occurred: the session expired.", rpc_id)
            credit = min(state["credit"], self._check_allocation(context, rpc_id))
            if credit > 0:
                rows, read_to = self.bus.read(conn, position, entity, min(credit, MAX_BATCH))
                # another stream may have used the allocation since the check: counted and checked at once
                taken = self.bus.org.usage.take_delivered(len(rows)) if rows else 0
                if rows and not taken:
                    self._check_allocation(context, rpc_id)     # none left: ends the call
                    continue
                rows, position = (rows[:taken], rows[taken - 1][0]) if taken < len(rows) else (rows, read_to)
                if rows:
                    events = []
                    for replay, sobject, event_id, body in rows:
                        schema_id, payload = self.bus.payload(sobject, body)
                        events.append(self.pb2.ConsumerEvent(
                            event=self.pb2.ProducerEvent(id=event_id, schema_id=schema_id, payload=payload),
                            replay_id=encode_replay(replay)))
                    with self.bus.wakeup:
                        state["credit"] -= len(events)
                        pending = state["credit"]
                        self.bus.delivered += len(events)
                    yield self.pb2.FetchResponse(events=events, latest_replay_id=encode_replay(position),
                                                 rpc_id=rpc_id, pending_num_requested=pending)
                    last_sent = time.monotonic()
                    continue
            if time.monotonic() - last_sent >= self.keepalive_seconds:
                yield self.pb2.FetchResponse(latest_replay_id=encode_replay(position), rpc_id=rpc_id,
                                             pending_num_requested=state["credit"])
                last_sent = time.monotonic()
            with self.bus.wakeup:
                if state["error"] is None and not state["closed"]:
                    self.bus.wakeup.wait(timeout=min(0.5, self.keepalive_seconds))

    def reset_streams(self, code_name: str = "UNAVAILABLE") -> int:
        import grpc

        code = getattr(grpc.StatusCode, code_name)
        with self._lock:
            streams = list(self._streams.values())
        with self.bus.wakeup:
            for state in streams:
                state["error"] = StreamError(code, ERROR_UNAVAILABLE, "The stream was reset by the server.")
            self.bus.wakeup.notify_all()
        return len(streams)

    def exceed_allocation(self) -> None:
        """Fault: today's delivery allocation used up; open streams end at their next turn."""
        usage = self.bus.org.usage
        usage.set_limit(delivered=usage.delivered_limit)
        with self.bus.wakeup:
            self.bus.wakeup.notify_all()

    def stats(self) -> dict:
        conn = self.bus.open_reader()
        try:
            low, high = self.bus.bounds(conn)
            count = conn.execute("SELECT COUNT(*) FROM cdc_events").fetchone()[0]
        finally:
            conn.close()
        with self._lock:
            return {"events": count, "oldestReplay": low, "latestReplay": high, "openStreams": len(self._streams),
                    "subscribes": self.subscribes, "delivered": self.bus.delivered, "failNext": self.fail_next,
                    "entities": self.bus.selection()}


# ---------------------------------------------------------------------- the server


def _credentials(server_pem: str):
    """grpc server credentials from the emulator's server.pem (private key + certificate chain)."""
    import grpc

    text = open(server_pem, "rb").read()
    start = text.index(b"-----BEGIN CERTIFICATE-----")
    key_text, chain = text[:start], text[start:]
    return grpc.ssl_server_credentials([(key_text.strip() + b"\n", chain)])


class PubSubServer:
    """A grpc.Server for one org. start() binds host:port (0 picks one) and returns the port."""

    def __init__(self, org, *, host: str = "127.0.0.1", port: int = 0, certfile: str | None = None,
                 keepalive_seconds: float | None = None, retention_seconds: float = RETENTION_SECONDS,
                 entities: list[str] | None = None):
        import protos

        self.pb2, self.services = protos.pubsub_api()
        self.bus = EventBus(org, retention_seconds, entities)
        if keepalive_seconds is None:
            keepalive_seconds = org.clock.real_seconds(KEEPALIVE_SECONDS)
        self.service = PubSubService(self.bus, self.pb2, keepalive_seconds)
        self.host, self.port, self.certfile = host, port, certfile
        self.server = None

    def start(self) -> int:
        import grpc

        servicer = type("PubSubServicer", (self.services.PubSubServicer,), {
            name: getattr(self.service, name) for name in ("GetTopic", "GetSchema", "Publish", "Subscribe")})()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=32, thread_name_prefix="pubsub"),
                                  maximum_concurrent_rpcs=64)
        self.services.add_PubSubServicer_to_server(servicer, self.server)
        address = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        if self.certfile:
            port = self.server.add_secure_port(address, _credentials(self.certfile))
        else:
            port = self.server.add_insecure_port(address)
        if not port:
            raise RuntimeError(f"Pub/Sub API: cannot listen on {address}")
        self.server.start()
        self.port = port
        return port

    def stop(self) -> None:
        if self.server is not None:
            self.service.reset_streams("UNAVAILABLE")
            self.server.stop(grace=1)


# ---------------------------------------------------------------------- admin API (faults)

admin_bp = Blueprint("pubsub_admin", __name__, url_prefix="/_emulator/pubsub")


def _server() -> PubSubServer:
    server = current_app.config.get("PUBSUB")
    if server is None:
        raise LookupError("the Pub/Sub API is not running (started with --no-pubsub?)")
    return server


@admin_bp.errorhandler(LookupError)
def _not_running(error):
    return jsonify({"error": str(error)}), 404


@admin_bp.errorhandler(ValueError)
def _bad_request(error):
    return jsonify({"error": str(error)}), 400


@admin_bp.get("")
def stats():
    return jsonify(_server().service.stats())


@admin_bp.post("/gap")
def gap():
    """{"sobject": "Account", "ids": ["001..."], "changeType": "GAP_UPDATE"} or {"changeType": "GAP_OVERFLOW"}."""
    body = request.get_json(silent=True) or {}
    change_type = body.get("changeType", "GAP_UPDATE")
    if change_type not in ("GAP_CREATE", "GAP_UPDATE", "GAP_DELETE", "GAP_UNDELETE", "GAP_OVERFLOW"):
        raise ValueError(f"changeType {change_type!r} is not a gap event")
    record_ids = [ids.to18(i) for i in body.get("ids", [])]
    if change_type != "GAP_OVERFLOW" and not record_ids:
        raise ValueError("a gap event names its records: ids")
    number = _server().bus.publish_special(body["sobject"], change_type, record_ids)
    return jsonify({"replay": number}), 201


@admin_bp.get("/entities")
def entities():
    """The objects selected for Change Data Capture; null: every object (the default)."""
    return jsonify({"entities": _server().bus.selection()})


@admin_bp.put("/entities")
def select_entities():
    """{"entities": ["Account", "Contact"]} selects exactly these (as Setup > Change Data Capture does);
    {"entities": null} selects every object again."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or "entities" not in body:
        raise ValueError('the body is {"entities": [names]} or {"entities": null}')
    bus = _server().bus
    bus.select(body["entities"])
    return jsonify({"entities": bus.selection()})


@admin_bp.post("/faults")
def faults():
    """{"unavailable": 2} fails the next two RPCs with UNAVAILABLE; {"resetStreams": "UNAVAILABLE"} ends every
    open stream with that status; {"allocationExceeded": true} uses up today's delivery allocation (every stream
    ends with RESOURCE_EXHAUSTED sfdc.platform.eventbus.grpc.subscription.limit.exceeded until the day rolls over
    or POST /_emulator/limits {"deliveredEvents": 0})."""
    body = request.get_json(silent=True) or {}
    server = _server()
    result = {}
    if "unavailable" in body:
        with server.service._lock:        # noqa: SLF001
            server.service.fail_next = int(body["unavailable"])
        result["failNext"] = server.service.fail_next
    if body.get("allocationExceeded"):
        server.service.exceed_allocation()
        result["allocationExceeded"] = True
    if "resetStreams" in body:
        result["reset"] = server.service.reset_streams(body["resetStreams"] or "UNAVAILABLE")
    return jsonify(result)


def init_app(app) -> None:
    """Start the Pub/Sub API beside the app when `app.config["PUBSUB_OPTIONS"]` asks for it; prints its address."""
    options = app.config.get("PUBSUB_OPTIONS")
    if options is None:
        return
    on_ready = options.pop("on_ready", None)
    server = PubSubServer(app.config["ORG"], **options)
    port = server.start()
    app.config["PUBSUB"] = server
    app.config.setdefault("SHUTDOWN_HOOKS", []).append(server.stop)
    app.config.setdefault("RESET_HOOKS", []).append(server.bus.clear)
    if on_ready is not None:
        on_ready(port)
