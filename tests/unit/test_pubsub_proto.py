"""The project's pubsub_api.proto describes the wire Salesforce speaks: names and field numbers."""
import protos


def field_numbers(message_class) -> dict:
    return {f.name: f.number for f in message_class.DESCRIPTOR.fields}


def test_messages_have_salesforces_field_numbers():
    pb2, _ = protos.pubsub_api()
    assert pb2.DESCRIPTOR.package == "eventbus.v1"
    assert field_numbers(pb2.FetchRequest) == {"topic_name": 1, "replay_preset": 2, "replay_id": 3,
                                               "num_requested": 4, "auth_refresh": 5}
    assert field_numbers(pb2.FetchResponse) == {"events": 1, "latest_replay_id": 2, "rpc_id": 3,
                                                "pending_num_requested": 4}
    assert field_numbers(pb2.ConsumerEvent) == {"event": 1, "replay_id": 2}
    assert field_numbers(pb2.ProducerEvent) == {"id": 1, "schema_id": 2, "payload": 3, "headers": 4}
    assert field_numbers(pb2.SchemaRequest) == {"schema_id": 1}
    assert field_numbers(pb2.SchemaInfo) == {"schema_json": 1, "schema_id": 2, "rpc_id": 3}
    assert field_numbers(pb2.TopicRequest) == {"topic_name": 1}
    assert field_numbers(pb2.TopicInfo) == {"topic_name": 1, "tenant_guid": 2, "can_publish": 3,
                                            "can_subscribe": 4, "schema_id": 5, "rpc_id": 6}
    assert field_numbers(pb2.PublishRequest) == {"topic_name": 1, "events": 2, "auth_refresh": 3}
    assert field_numbers(pb2.PublishResponse) == {"results": 1, "schema_id": 2, "rpc_id": 3}
    assert field_numbers(pb2.PublishResult) == {"replay_id": 1, "error": 2, "correlation_key": 3}
    assert {v.name: v.number for v in pb2.ReplayPreset.DESCRIPTOR.values} == {"LATEST": 0, "EARLIEST": 1,
                                                                               "CUSTOM": 2}


def test_service_methods_and_streaming():
    pb2, services = protos.pubsub_api()
    service = pb2.DESCRIPTOR.services_by_name["PubSub"]
    assert service.full_name == "eventbus.v1.PubSub"
    shapes = {m.name: (m.input_type.name, m.output_type.name, m.client_streaming, m.server_streaming)
              for m in service.methods}
    assert shapes == {
        "Subscribe": ("FetchRequest", "FetchResponse", True, True),
        "GetSchema": ("SchemaRequest", "SchemaInfo", False, False),
        "GetTopic": ("TopicRequest", "TopicInfo", False, False),
        "Publish": ("PublishRequest", "PublishResponse", False, False),
        "PublishStream": ("PublishRequest", "PublishResponse", True, True),
        "ManagedSubscribe": ("ManagedFetchRequest", "ManagedFetchResponse", True, True),
    }
    assert hasattr(services, "PubSubStub") and hasattr(services, "add_PubSubServicer_to_server")


def test_wire_bytes_of_a_fetch_request():
    """Hand-encoded protobuf: field 1 (len) topic, field 2 (varint) CUSTOM, field 3 (len) id, field 4 (varint)."""
    pb2, _ = protos.pubsub_api()
    request = pb2.FetchRequest(topic_name="/data/X", replay_preset=pb2.CUSTOM, replay_id=b"\x01", num_requested=100)
    assert request.SerializeToString() == b"\x0a\x07/data/X\x10\x02\x1a\x01\x01\x20\x64"
