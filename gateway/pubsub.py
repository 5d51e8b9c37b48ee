"""The one way to Salesforce over gRPC: the Pub/Sub API (Change Data Capture events).

Uses the REST gateway's login (gateway/salesforce.py: access token, instance URL; the org id from
SALESFORCE_ORG_ID or the token) as the metadata headers accesstoken/instanceurl/tenantid, TLS trusting
SF_CA_BUNDLE when set (like REST), SF_PUBSUB_URL as the endpoint. A refused session means one new login
and one retry. Schemas are fetched once per schema id. Events are decoded with fastavro and core.cdc.

    client = PubSubClient(settings)
    for batch in client.subscribe("/data/ChangeEvents", replay_id=stored):   # a generator
        apply(batch.changes); store(batch.latest_replay_id)                   # then it asks for more
"""
from __future__ import annotations

import io
import json
import logging
import queue
import threading
from dataclasses import dataclass, field

import fastavro

from core.cdc import EventError, EventSchema, ChangeEvent, parse_change
from settings import Settings

log = logging.getLogger("forcebridge.pubsub")
MAX_REQUESTED = 100             # the most events one FetchRequest may ask for
ERROR_REPLAY_CORRUPTED = "sfdc.platform.eventbus.grpc.subscription.fetch.replayid.corrupted"
ERROR_REPLAY_MISSING = "sfdc.platform.eventbus.grpc.subscription.fetch.replayid.validation.failed"
ERROR_LIMIT_EXCEEDED = "sfdc.platform.eventbus.grpc.subscription.limit.exceeded"
_MAX_MESSAGE = 64 * 1024 * 1024
_ID_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


class PubSubError(Exception):
    """An RPC Salesforce refused: the gRPC status name, Salesforce's error-code trailer, its message."""

    def __init__(self, status: str, error_code: str, message: str):
        super().__init__(f"{status} {error_code}: {message}")
        self.status, self.error_code, self.message = status, error_code, message

    @property
    def transient(self) -> bool:
        """Worth subscribing again later (with backoff): the service, not the request, failed."""
        return self.status in ("UNAVAILABLE", "DEADLINE_EXCEEDED", "INTERNAL", "RESOURCE_EXHAUSTED", "ABORTED",
                               "UNKNOWN", "CANCELLED")


class ReplayIdRefused(PubSubError):
    """The stored replay id is not valid any more (older than the retention, or from another event stream):
    resume with a poll from the last applied time instead."""


class AllocationExceeded(PubSubError):
    """The org's event delivery allocation (DailyDeliveredPlatformEvents, a rolling 24 hours) is used up: Salesforce
    ends the stream and refuses new ones. Salesforce's advice: stay disconnected for a while (reconnecting at once
    fails again) and resume from the stored replay id; events stay on the bus for 72 hours."""


_KINDS = {ERROR_REPLAY_CORRUPTED: ReplayIdRefused, ERROR_LIMIT_EXCEEDED: AllocationExceeded}


@dataclass
class Fetched:
    """One FetchResponse: its events as changes (an empty batch is a keepalive), and the stream position."""
    changes: list[ChangeEvent]
    latest_replay_id: bytes
    pending: int                                          # credit the server still holds
    rpc_id: str = ""
    failed: list[tuple[bytes, str]] = field(default_factory=list)    # (replay id, why) of unreadable events


def org_id_18(org_id: str) -> str:
    """An org id in its 18-character form (the 15-character one plus its case checksum)."""
    if len(org_id) != 15:
        return org_id
    suffix = ""
    for start in range(0, 15, 5):
        bits = sum(1 << i for i, char in enumerate(org_id[start:start + 5]) if "A" <= char <= "Z")
        suffix += _ID_SUFFIX[bits]
    return org_id + suffix


def _error_of(exc) -> PubSubError:
    code = exc.code() if callable(getattr(exc, "code", None)) else None
    status = code.name if code is not None else "UNKNOWN"
    trailers = dict(exc.trailing_metadata() or ()) if callable(getattr(exc, "trailing_metadata", None)) else {}
    error_code = str(trailers.get("error-code", ""))
    message = exc.details() if callable(getattr(exc, "details", None)) else str(exc)
    return _KINDS.get(error_code, PubSubError)(status, error_code, message or "")


class PubSubClient:
    """Thread-safe for unary calls; each subscribe() generator belongs to the thread that iterates it."""

    def __init__(self, settings: Settings, salesforce=None, *, channel=None):
        import grpc

        import protos
        from gateway import salesforce as rest

        self.settings = settings
        self.sf = salesforce or rest.for_settings(settings)
        if self.sf is None:
            raise ValueError("Salesforce credentials are not set (SF_USERNAME or SF_CLIENT_ID/SF_CLIENT_SECRET)")
        self.pb2, services = protos.pubsub_api()
        self._grpc = grpc
        if channel is None:
            roots = open(settings.sf_ca_bundle, "rb").read() if settings.sf_ca_bundle else None
            channel = grpc.secure_channel(settings.sf_pubsub_url, grpc.ssl_channel_credentials(roots), options=[
                ("grpc.max_receive_message_length", _MAX_MESSAGE)])
        self.channel = channel
        self.stub = services.PubSubStub(channel)
        self._schemas: dict[str, tuple[EventSchema, object]] = {}
        self._schema_lock = threading.Lock()
        self.schema_fetches = 0
        self.relogins = 0

    # ------------------------------------------------------------------ auth

    def _metadata(self) -> tuple[tuple, str]:
        token, instance_url = self.sf.credentials()
        org_id = self.settings.salesforce_org_id or token.split("!", 1)[0]
        return (("accesstoken", token), ("instanceurl", instance_url), ("tenantid", org_id_18(org_id))), token

    def _error_or_relogin(self, exc, token: str, relogged: bool) -> PubSubError | None:
        """The PubSubError a failed call raises; None when the session was refused and this is the first time
        since the last success: one new login was made and the caller calls again."""
        error = _error_of(exc)
        if error.status == "UNAUTHENTICATED" and not relogged:
            self.relogins += 1
            log.info("Pub/Sub API refused the session: logging in again")
            self.sf.renew_credentials(token)
            return None
        return error

    def _unary(self, method, request):
        relogged = False
        while True:
            metadata, token = self._metadata()
            try:
                return method(request, metadata=metadata)
            except self._grpc.RpcError as exc:
                error = self._error_or_relogin(exc, token, relogged)
                if error is not None:
                    raise error from None
                relogged = True

    # ------------------------------------------------------------------ topics and schemas

    def get_topic(self, topic_name: str):
        return self._unary(self.stub.GetTopic, self.pb2.TopicRequest(topic_name=topic_name))

    def schema(self, schema_id: str) -> tuple[EventSchema, object]:
        """(the schema read for decoding: core.cdc.EventSchema, fastavro's parsed schema), fetched and read once
        per schema id."""
        with self._schema_lock:
            cached = self._schemas.get(schema_id)
        if cached is not None:
            return cached
        info = self._unary(self.stub.GetSchema, self.pb2.SchemaRequest(schema_id=schema_id))
        schema = json.loads(info.schema_json)
        cached = (EventSchema(schema), fastavro.parse_schema(schema))
        with self._schema_lock:
            self.schema_fetches += 1
            return self._schemas.setdefault(schema_id, cached)

    def decode(self, consumer_event) -> ChangeEvent:
        """One ConsumerEvent -> ChangeEvent; EventError when its payload does not match its schema."""
        schema, parsed = self.schema(consumer_event.event.schema_id)
        try:
            record = fastavro.schemaless_reader(io.BytesIO(consumer_event.event.payload), parsed)
        except (EOFError, ValueError, TypeError, IndexError, KeyError) as exc:
            raise EventError(f"payload does not match schema {consumer_event.event.schema_id}: {exc}") from None
        return parse_change(record, schema, replay_id=consumer_event.replay_id, event_id=consumer_event.event.id)

    # ------------------------------------------------------------------ Subscribe

    def _first_request(self, topic: str, position: bytes | None, preset: str, batch: int):
        pb2 = self.pb2
        if position:
            return pb2.FetchRequest(topic_name=topic, replay_preset=pb2.CUSTOM, replay_id=position,
                                    num_requested=batch)
        start = pb2.EARLIEST if preset == "EARLIEST" else pb2.LATEST
        return pb2.FetchRequest(topic_name=topic, replay_preset=start, num_requested=batch)

    def subscribe(self, topic: str, *, replay_id: bytes | None = None, preset: str = "LATEST",
                  batch: int = MAX_REQUESTED, prefetch: bool = False):
        """Yield a Fetched per FetchResponse, keepalives included, from just after `replay_id` (CUSTOM) or
        the preset (LATEST, EARLIEST). Flow control: `batch` (at most 100) events of credit at the start;
        each batch's worth is asked for again only when the caller comes back for the next one, so no more
        than `batch` events wait in memory. `prefetch`: two batches' worth at the start, and each batch's worth
        asked for again as it arrives (before it is decoded), so the server prepares the next batch while one
        travels and the caller applies another; at most three times `batch` events between the server's credit
        and this generator (Salesforce documents no cap on the credit a client holds; a server that kept
        only 100 would just send less ahead). A refused session: one new login, then the stream continues
        from the last position yielded. Other errors raise PubSubError (ReplayIdRefused for a replay id the
        server no longer accepts, AllocationExceeded when the org's delivery allocation is used up). Closing the generator ends the call."""
        batch = max(1, min(int(batch), MAX_REQUESTED))
        position = replay_id or None
        relogged = False
        while True:
            requests: queue.Queue = queue.Queue()
            requests.put(self._first_request(topic, position, preset, batch))
            if prefetch:
                # a second batch's worth of credit: the server prepares the next batch while one travels
                requests.put(self.pb2.FetchRequest(num_requested=batch))
            metadata, token = self._metadata()
            call = self.stub.Subscribe(iter(requests.get, None), metadata=metadata)
            try:
                for response in call:
                    relogged = False
                    if response.events and prefetch:
                        # renewed on arrival, before decoding: the server is never left without credit
                        requests.put(self.pb2.FetchRequest(num_requested=len(response.events)))
                    fetched = self._fetched(response)
                    if response.latest_replay_id:
                        position = response.latest_replay_id
                    yield fetched
                    if response.events and not prefetch:
                        requests.put(self.pb2.FetchRequest(num_requested=len(response.events)))
                return
            except self._grpc.RpcError as exc:
                error = self._error_or_relogin(exc, token, relogged)
                if error is not None:
                    raise error from None
                relogged = True
            finally:
                requests.put(None)
                call.cancel()

    def _fetched(self, response) -> Fetched:
        changes, failed = [], []
        for event in response.events:
            try:
                changes.append(self.decode(event))
            except EventError as exc:
                log.error("CDC event %s (replay %s) cannot be read: %s", event.event.id, event.replay_id.hex(), exc)
                failed.append((event.replay_id, str(exc)))
        return Fetched(changes, response.latest_replay_id, response.pending_num_requested, response.rpc_id, failed)

    def close(self) -> None:
        self.channel.close()
