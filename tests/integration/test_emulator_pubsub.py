"""The emulator's Pub/Sub API over gRPC with TLS, spoken to with the raw stubs (the client is tested in
test_cdc_client.py): auth, topics, flow control, keepalives, replay presets, events from every write path."""
import io
import json
import queue
import threading
import uuid

import fastavro
import grpc
import pytest

import protos
from core.cdc import parse_change
from emulator.process import start_emulator

pb2, services = protos.pubsub_api()
WAIT = 10


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    with start_emulator(tmp_path_factory.mktemp("pubsub") / "org", "--pubsub-keepalive", "0.3") as running:
        yield running


@pytest.fixture(scope="module")
def sf(emu):
    return emu.salesforce(client="pubsub-test")


@pytest.fixture(scope="module")
def stub(emu):
    channel = grpc.secure_channel(emu.pubsub, grpc.ssl_channel_credentials(emu.ca_path.read_bytes()))
    yield services.PubSubStub(channel)
    channel.close()


def metadata(emu, sf, token=None, tenant=None):
    return (("accesstoken", token or sf.session_id), ("instanceurl", emu.url), ("tenantid", tenant or emu.org_id))


class Stream:
    """A Subscribe call fed from a queue; responses collected by a thread."""

    def __init__(self, stub, md, first):
        self.requests: queue.Queue = queue.Queue()
        self.responses: queue.Queue = queue.Queue()
        self.requests.put(first)
        self.call = stub.Subscribe(iter(self.requests.get, None), metadata=md)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        try:
            for response in self.call:
                self.responses.put(response)
        except grpc.RpcError as exc:
            self.responses.put(exc)

    def next(self, timeout=WAIT):
        item = self.responses.get(timeout=timeout)
        if isinstance(item, Exception):
            raise item
        return item

    def events(self, count, timeout=WAIT):
        """The next `count` events (keepalives skipped)."""
        found = []
        while len(found) < count:
            found.extend(self.next(timeout).events)
        return found

    def request(self, n):
        self.requests.put(pb2.FetchRequest(num_requested=n))

    def close(self):
        self.requests.put(None)
        self.call.cancel()


def decode(stub, md, event):
    schema = json.loads(stub.GetSchema(pb2.SchemaRequest(schema_id=event.event.schema_id), metadata=md).schema_json)
    record = fastavro.schemaless_reader(io.BytesIO(event.event.payload), fastavro.parse_schema(schema))
    return parse_change(record, schema, replay_id=event.replay_id)


def latest_stream(stub, md, topic="/data/ChangeEvents", n=100):
    stream = Stream(stub, md, pb2.FetchRequest(topic_name=topic, replay_preset=pb2.LATEST, num_requested=n))
    stream.next()          # the first keepalive: the subscription is in place
    return stream


def test_get_topic_and_schema(emu, sf, stub):
    md = metadata(emu, sf)
    topic = stub.GetTopic(pb2.TopicRequest(topic_name="/data/ContactChangeEvent"), metadata=md)
    assert topic.can_subscribe and topic.tenant_guid == emu.org_id and topic.schema_id
    schema = json.loads(stub.GetSchema(pb2.SchemaRequest(schema_id=topic.schema_id), metadata=md).schema_json)
    assert schema["name"] == "ContactChangeEvent" and schema["fields"][0]["name"] == "ChangeEventHeader"
    with pytest.raises(grpc.RpcError) as error:
        stub.GetTopic(pb2.TopicRequest(topic_name="/data/NoSuchChangeEvent"), metadata=md)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("token, tenant", [("00Dbogus!token", None), (None, "00D000000000001AAA")])
def test_bad_token_or_other_org_is_unauthenticated(emu, sf, stub, token, tenant):
    with pytest.raises(grpc.RpcError) as error:
        stub.GetTopic(pb2.TopicRequest(topic_name="/data/ChangeEvents"), metadata=metadata(emu, sf, token, tenant))
    assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert dict(error.value.trailing_metadata())["error-code"] == "sfdc.platform.eventbus.grpc.service.auth.error"


def test_every_write_path_produces_events_with_the_clients_origin(emu, sf, stub):
    md = metadata(emu, sf)
    stream = latest_stream(stub, md)
    tag = uuid.uuid4().hex[:8]
    created = sf.Account.create({"Name": f"Rest {tag}"})["id"]                                     # REST
    sf.restful("composite/sobjects", method="POST", json={"records": [                            # Collections
        {"attributes": {"type": "Account"}, "Name": f"Coll {tag}"}]})
    sf.restful("composite", method="POST", json={"allOrNone": True, "compositeRequest": [          # Composite
        {"method": "PATCH", "url": f"/services/data/v59.0/sobjects/Account/{created}", "referenceId": "a",
         "body": {"Phone": "555"}}]})
    sf.bulk2.Account.insert(records=[{"Name": f"Bulk {tag}"}], wait=1)                             # Bulk 2.0
    sf.Account.delete(created)
    emu.admin("POST", "/_emulator/undelete", {"sobject": "Account", "id": created})               # undelete
    changes = [decode(stub, md, e) for e in stream.events(6)]
    stream.close()
    assert [c.operation for c in changes] == ["create", "create", "update", "create", "delete", "undelete"]
    assert changes[0].fields["Name"] == f"Rest {tag}" and changes[3].fields["Name"] == f"Bulk {tag}"
    assert changes[2].record_ids == (created,) and changes[2].fields["Phone"] == "555"
    assert all(c.origin.endswith(";client=pubsub-test") for c in changes[:5])
    assert changes[5].origin == "com/salesforce/api/rest/62.0"      # the admin API sends no client name
    assert changes[0].stamp < changes[1].stamp < changes[2].stamp


def test_flow_control_delivers_no_more_than_requested(emu, sf, stub):
    md = metadata(emu, sf)
    stream = latest_stream(stub, md, "/data/LeadChangeEvent", n=2)
    ids = [sf.Lead.create({"LastName": f"Flow {i}", "Company": "C"})["id"] for i in range(5)]
    got = stream.events(2)
    idle = stream.next()                     # only keepalives now: the credit is spent
    assert not idle.events and idle.pending_num_requested == 0
    assert idle.latest_replay_id == got[-1].replay_id     # a keepalive never skips what was not delivered
    stream.request(10)
    got += stream.events(3)
    stream.close()
    assert [decode(stub, md, e).record_ids[0] for e in got] == ids


def test_per_object_topic_filters_and_replay_presets(emu, sf, stub):
    md = metadata(emu, sf)
    stream = latest_stream(stub, md, "/data/ContactChangeEvent")
    sf.Lead.create({"LastName": "Not me", "Company": "C"})
    contact = sf.Contact.create({"LastName": "Me"})["id"]
    [event] = stream.events(1)
    stream.close()
    first = decode(stub, md, event)
    assert first.object_name == "Contact" and first.record_ids == (contact,)
    sf.Contact.update(contact, {"FirstName": "Ann"})
    sf.Contact.update(contact, {"FirstName": "Bo"})
    resumed = Stream(stub, md, pb2.FetchRequest(topic_name="/data/ContactChangeEvent", replay_preset=pb2.CUSTOM,
                                                replay_id=event.replay_id, num_requested=10))
    later = [decode(stub, md, e) for e in resumed.events(2)]
    resumed.close()
    assert [c.fields["FirstName"] for c in later] == ["Ann", "Bo"]
    earliest = Stream(stub, md, pb2.FetchRequest(topic_name="/data/ChangeEvents", replay_preset=pb2.EARLIEST,
                                                 num_requested=1))
    [oldest] = earliest.events(1)
    earliest.close()
    assert oldest.replay_id < event.replay_id


def test_a_keepalives_latest_replay_id_is_a_position_to_resume_from(emu, sf, stub):
    """The interface definition: clients resubscribe from latest_replay_id, even one no event carried."""
    md = metadata(emu, sf)
    stream = latest_stream(stub, md, "/data/OpportunityChangeEvent")
    keepalive = stream.next()
    while keepalive.events:
        keepalive = stream.next()
    stream.close()
    record = sf.Opportunity.create({"Name": "After the keepalive", "StageName": "Prospecting",
                                    "CloseDate": "2026-12-31"})["id"]
    resumed = Stream(stub, md, pb2.FetchRequest(topic_name="/data/OpportunityChangeEvent",
                                                replay_preset=pb2.CUSTOM, replay_id=keepalive.latest_replay_id,
                                                num_requested=10))
    [event] = resumed.events(1)
    resumed.close()
    assert decode(stub, md, event).record_ids == (record,)


@pytest.mark.parametrize("replay_id, error_code", [
    (b"garbage", "sfdc.platform.eventbus.grpc.subscription.fetch.replayid.corrupted"),
    (b"\x7f" * 8, "sfdc.platform.eventbus.grpc.subscription.fetch.replayid.corrupted"),
    (b"", "sfdc.platform.eventbus.grpc.subscription.fetch.replayid.validation.failed")])
def test_bad_replay_ids_are_invalid_argument(emu, sf, stub, replay_id, error_code):
    stream = Stream(stub, metadata(emu, sf), pb2.FetchRequest(
        topic_name="/data/ChangeEvents", replay_preset=pb2.CUSTOM, replay_id=replay_id, num_requested=1))
    with pytest.raises(grpc.RpcError) as error:
        stream.next()
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert dict(error.value.trailing_metadata())["error-code"] == error_code


def test_gap_events_and_stream_faults(emu, sf, stub):
    md = metadata(emu, sf)
    stream = latest_stream(stub, md, "/data/AccountChangeEvent")
    record = sf.Account.create({"Name": "Gappy"})["id"]
    emu.admin("POST", "/_emulator/pubsub/gap", {"sobject": "Account", "ids": [record], "changeType": "GAP_UPDATE"})
    emu.admin("POST", "/_emulator/pubsub/gap", {"sobject": "Account", "changeType": "GAP_OVERFLOW"})
    changes = [decode(stub, md, e) for e in stream.events(3)]
    assert [(c.operation, c.gap_operation) for c in changes] == [("create", None), ("gap", "update"),
                                                                  ("gap_overflow", None)]
    assert changes[1].record_ids == (record,) and changes[1].fields == {}
    assert emu.admin("POST", "/_emulator/pubsub/faults", {"resetStreams": "UNAVAILABLE"})["reset"] >= 1
    with pytest.raises(grpc.RpcError) as error:
        while True:
            stream.next()
    assert error.value.code() == grpc.StatusCode.UNAVAILABLE
    emu.admin("POST", "/_emulator/pubsub/faults", {"unavailable": 1})
    with pytest.raises(grpc.RpcError) as error:
        stub.GetTopic(pb2.TopicRequest(topic_name="/data/ChangeEvents"), metadata=md)
    assert error.value.code() == grpc.StatusCode.UNAVAILABLE
    assert stub.GetTopic(pb2.TopicRequest(topic_name="/data/ChangeEvents"), metadata=md).can_subscribe


def test_an_expired_session_ends_the_stream_unauthenticated(emu, stub):
    own = emu.salesforce()
    md = metadata(emu, own)
    stream = latest_stream(stub, md)
    emu.admin("POST", "/_emulator/sessions/expire")
    with pytest.raises(grpc.RpcError) as error:
        while True:
            stream.next()
    assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_events_and_replay_ids_survive_an_emulator_restart(tmp_path):
    data = tmp_path / "org"
    with start_emulator(data, "--pubsub-keepalive", "0.3") as first:
        sf = first.salesforce()
        channel = grpc.secure_channel(first.pubsub, grpc.ssl_channel_credentials(first.ca_path.read_bytes()))
        stream = latest_stream(services.PubSubStub(channel), metadata(first, sf), "/data/AccountChangeEvent")
        sf.Account.create({"Name": "Before restart"})
        [before] = stream.events(1)
        stream.close()
        later = sf.Account.create({"Name": "Also before restart"})["id"]
        channel.close()
    with start_emulator(data, "--pubsub-keepalive", "0.3") as second:
        sf = second.salesforce()
        channel = grpc.secure_channel(second.pubsub, grpc.ssl_channel_credentials(second.ca_path.read_bytes()))
        stub = services.PubSubStub(channel)
        md = metadata(second, sf)
        newest = sf.Account.create({"Name": "After restart"})["id"]
        resumed = Stream(stub, md, pb2.FetchRequest(topic_name="/data/AccountChangeEvent", replay_preset=pb2.CUSTOM,
                                                    replay_id=before.replay_id, num_requested=10))
        got = [decode(stub, md, e) for e in resumed.events(2)]
        resumed.close()
        channel.close()
    assert [c.record_ids[0] for c in got] == [later, newest]
    assert got[0].stamp < got[1].stamp


def limits(sf):
    return sf.restful("limits")["DailyDeliveredPlatformEvents"]


def test_delivered_events_are_counted_in_limits_and_exhaustion_ends_streams(emu, stub):
    sf = emu.salesforce()         # its own session (another test expires every session)
    md = metadata(emu, sf)
    before = limits(sf)
    stream = latest_stream(stub, md, "/data/LeadChangeEvent")
    for i in range(3):
        sf.Lead.create({"LastName": f"Allocation {i}", "Company": "C"})
    stream.events(3)
    assert limits(sf)["Remaining"] == before["Remaining"] - 3          # each event delivered to a subscriber
    # natural exhaustion: one event left today, two waiting: the stream delivers one, then ends
    used = emu.admin("GET", "/_emulator/stats")["deliveredEvents"]
    emu.admin("POST", "/_emulator/limits", {"deliveredEventsLimit": used + 1})
    try:
        sf.Lead.create({"LastName": "Allocation 3", "Company": "C"})
        sf.Lead.create({"LastName": "Allocation 4", "Company": "C"})
        assert len(stream.events(1)) == 1
        with pytest.raises(grpc.RpcError) as error:
            while True:
                assert not stream.next().events
        assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert dict(error.value.trailing_metadata())["error-code"] == \
            "sfdc.platform.eventbus.grpc.subscription.limit.exceeded"
        assert "event delivery limit" in error.value.details()
        assert limits(sf) == {"Max": used + 1, "Remaining": 0}
        refused = Stream(stub, md, pb2.FetchRequest(topic_name="/data/ChangeEvents", num_requested=1))
        with pytest.raises(grpc.RpcError) as error:      # a new subscription is refused too, until the day ends
            refused.next()
        assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        emu.admin("POST", "/_emulator/limits", {"deliveredEventsLimit": before["Max"]})
    # the admin fault does the same to a stream that is open
    stream = latest_stream(stub, md, "/data/LeadChangeEvent")
    emu.admin("POST", "/_emulator/pubsub/faults", {"allocationExceeded": True})
    try:
        with pytest.raises(grpc.RpcError) as error:
            while True:
                stream.next()
        assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        emu.admin("POST", "/_emulator/limits", {"deliveredEvents": 0})


def test_only_entities_selected_for_cdc_record_events(emu, stub):
    sf = emu.salesforce()
    md = metadata(emu, sf)
    assert emu.admin("GET", "/_emulator/pubsub/entities") == {"entities": None}        # default: every object
    assert emu.admin("PUT", "/_emulator/pubsub/entities", {"entities": ["contact"]}) == {"entities": ["Contact"]}
    try:
        stream = latest_stream(stub, md)
        sf.Account.create({"Name": "Not selected"})
        contact = sf.Contact.create({"LastName": "Selected"})["id"]
        [event] = stream.events(1)
        stream.close()
        assert decode(stub, md, event).record_ids == (contact,)
        for call in (lambda: stub.GetTopic(pb2.TopicRequest(topic_name="/data/AccountChangeEvent"), metadata=md),
                     lambda: Stream(stub, md, pb2.FetchRequest(topic_name="/data/AccountChangeEvent",
                                                               num_requested=1)).next()):
            with pytest.raises(grpc.RpcError) as error:
                call()
            assert error.value.code() == grpc.StatusCode.NOT_FOUND
            assert dict(error.value.trailing_metadata())["error-code"] == \
                "sfdc.platform.eventbus.grpc.subscription.topic.notfound"
        assert stub.GetTopic(pb2.TopicRequest(topic_name="/data/ContactChangeEvent"), metadata=md).can_subscribe
    finally:
        assert emu.admin("PUT", "/_emulator/pubsub/entities", {"entities": None}) == {"entities": None}


def test_the_emulator_can_start_with_an_entity_selection(tmp_path):
    with start_emulator(tmp_path / "org", "--cdc-entities", "Account, Lead", "--daily-delivered-events", "7") as own:
        assert own.admin("GET", "/_emulator/pubsub/entities") == {"entities": ["Account", "Lead"]}
        assert own.salesforce().restful("limits")["DailyDeliveredPlatformEvents"] == {"Max": 7, "Remaining": 7}
