"""core.cdc: Change Data Capture events (Avro, as the Pub/Sub API delivers them) -> ChangeEvent."""
import io

import fastavro
import pytest

from core.cdc import (ChangeStamp, EventError, EventSchema, ChangeEvent, changes, column_name, decode_bitmap,
                      in_commit_order, origin_client, parse_change, read_names, text_value)

HEADER_SCHEMA = {
    "type": "record", "name": "ChangeEventHeader", "namespace": "test.eventbus", "fields": [
        {"name": "entityName", "type": "string"},
        {"name": "recordIds", "type": {"type": "array", "items": "string"}},
        {"name": "changeType", "type": {"type": "enum", "name": "ChangeType", "symbols": [
            "CREATE", "UPDATE", "DELETE", "UNDELETE", "GAP_CREATE", "GAP_UPDATE", "GAP_DELETE", "GAP_UNDELETE",
            "GAP_OVERFLOW", "SNAPSHOT"]}},
        {"name": "changeOrigin", "type": "string"},
        {"name": "transactionKey", "type": "string"},
        {"name": "sequenceNumber", "type": "int"},
        {"name": "commitTimestamp", "type": "long"},
        {"name": "commitNumber", "type": "long"},
        {"name": "commitUser", "type": "string"},
        {"name": "nulledFields", "type": {"type": "array", "items": "string"}},
        {"name": "diffFields", "type": {"type": "array", "items": "string"}},
        {"name": "changedFields", "type": {"type": "array", "items": "string"}},
    ]}


def optional(avro_type):
    return ["null", avro_type]


CONTACT = {
    "type": "record", "name": "ContactChangeEvent", "namespace": "test.sobject", "fields": [
        {"name": "ChangeEventHeader", "type": HEADER_SCHEMA},                                    # 0
        {"name": "Name", "type": optional({"type": "record", "name": "Name", "fields": [         # 1
            {"name": "Salutation", "type": optional("string"), "default": None},
            {"name": "FirstName", "type": optional("string"), "default": None},
            {"name": "LastName", "type": optional("string"), "default": None}]}), "default": None},
        {"name": "Email", "type": optional("string"), "default": None},                          # 2
        {"name": "Phone", "type": optional("string"), "default": None},                          # 3
        {"name": "MailingAddress", "type": optional({"type": "record", "name": "Address", "fields": [  # 4
            {"name": "Street", "type": optional("string"), "default": None},
            {"name": "City", "type": optional("string"), "default": None},
            {"name": "Country", "type": optional("string"), "default": None}]}), "default": None},
        {"name": "LastModifiedDate", "type": optional("long"), "default": None},                  # 5
        {"name": "Birthdate", "type": optional("int"), "default": None},                          # 6
        {"name": "Location__c", "type": optional({"type": "record", "name": "Geolocation", "fields": [  # 7
            {"name": "Latitude", "type": optional("double"), "default": None},
            {"name": "Longitude", "type": optional("double"), "default": None}]}), "default": None},
    ]}
PARSED_CONTACT = fastavro.parse_schema(CONTACT)
STAMP_MS = 1_608_073_758_000


def header(change_type, record_ids=("003000000000001AAA",), changed=(), nulled=(), diff=(), sequence=1,
           origin="com/salesforce/api/rest/62.0;client=forcebridge", commit_number=74487681550,
           commit_timestamp=STAMP_MS):
    return {"entityName": "Contact", "recordIds": list(record_ids), "changeType": change_type,
            "changeOrigin": origin, "transactionKey": "0005e192-9e62-2554-3880-3c3718bd6308",
            "sequenceNumber": sequence, "commitTimestamp": commit_timestamp, "commitNumber": commit_number,
            "commitUser": "005000000000001AAA", "nulledFields": list(nulled), "diffFields": list(diff),
            "changedFields": list(changed)}


def over_the_wire(record: dict) -> dict:
    """Avro binary as the Pub/Sub API carries it, read back as a subscriber does."""
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, PARSED_CONTACT, record)
    buffer.seek(0)
    return fastavro.schemaless_reader(buffer, PARSED_CONTACT)


def test_update_carries_only_changed_columns_and_nulls_with_compound_components():
    # top-level bits 1 (Name), 3 (Phone), 4 (MailingAddress), 5 (LastModifiedDate); nested: Name's bit 2
    # (LastName), MailingAddress's bit 1 (City). Phone was set to null.
    record = {"ChangeEventHeader": header("UPDATE", changed=["0x3A", "1-0x04", "4-0x02"], nulled=["0x08"]),
              "Name": {"Salutation": None, "FirstName": None, "LastName": "Smith"}, "Email": None, "Phone": None,
              "MailingAddress": {"Street": None, "City": "Oslo", "Country": None},
              "LastModifiedDate": STAMP_MS, "Birthdate": None, "Location__c": None}
    change = parse_change(over_the_wire(record), CONTACT, replay_id=b"\x00\x07")
    assert change.operation == "update"
    assert change.object_name == "Contact" and change.record_ids == ("003000000000001AAA",)
    assert change.changed == ("LastName", "Phone", "MailingCity", "LastModifiedDate")
    assert change.fields == {"LastName": "Smith", "Phone": None, "MailingCity": "Oslo",
                             "LastModifiedDate": STAMP_MS}
    assert change.nulled == frozenset({"Phone"})
    assert "Email" not in change.fields          # unchanged fields are null in the body: not carried
    assert change.replay_id == b"\x00\x07"
    assert change.stamp == ChangeStamp(STAMP_MS, 74487681550, 1)


def test_a_schema_read_once_decodes_event_after_event_as_the_schema_itself():
    schema = EventSchema(CONTACT)           # what the client keeps per schema id: plans and bitmaps cached
    records = [{"ChangeEventHeader": header("UPDATE", changed=changed, nulled=nulled),
                "Name": {"Salutation": None, "FirstName": "Ann", "LastName": "Smith"}, "Email": None, "Phone": None,
                "MailingAddress": {"Street": None, "City": "Oslo", "Country": None},
                "LastModifiedDate": STAMP_MS, "Birthdate": None, "Location__c": None}
               for changed, nulled in [(["0x3A", "1-0x04", "4-0x02"], ["0x08"]), (["0x12"], []),
                                       (["0x3A", "1-0x04", "4-0x02"], ["0x08"]), ([], [])]]
    records.append({**records[0], "ChangeEventHeader": header("CREATE")})
    for record in records:
        wire = over_the_wire(record)
        assert parse_change(wire, schema) == parse_change(wire, CONTACT)
    with pytest.raises(EventError, match="not text"):
        schema.names([{"not": "text"}])


def test_only_the_mapped_fields_become_changes_values():
    record = {"ChangeEventHeader": header("CREATE"), "Name": {"Salutation": None, "FirstName": "Ann",
                                                               "LastName": "Smith"},
              "Email": "a@example.com", "Phone": "555", "MailingAddress": None, "LastModifiedDate": STAMP_MS,
              "Birthdate": None, "Location__c": None}
    event = parse_change(over_the_wire(record), CONTACT, replay_id=b"\x00\x07")
    types = {"lastname": "string", "Phone": "phone"}           # a mapping's names, in its own case
    [change] = changes(event, types, read_names(types))
    assert set(change.fields) == {"LastName", "Phone", "LastModifiedDate"}
    assert change.fields["LastName"] == "Smith" and change.fields["Phone"] == "555"
    assert changes(event, types)[0].fields["Email"] == "a@example.com"      # without `only`: every field


def test_compound_field_set_without_nested_bitmap_means_all_its_components():
    record = {"ChangeEventHeader": header("UPDATE", changed=["0x90"], nulled=["0x80"]),   # bits 4 and 7
              "Name": None, "Email": None, "Phone": None,
              "MailingAddress": {"Street": "1 Main St", "City": "Oslo", "Country": "NO"},
              "LastModifiedDate": None, "Birthdate": None, "Location__c": None}
    change = parse_change(over_the_wire(record), CONTACT)
    assert change.fields == {"MailingStreet": "1 Main St", "MailingCity": "Oslo", "MailingCountry": "NO",
                             "Location__Latitude__s": None, "Location__Longitude__s": None}
    assert change.nulled == frozenset({"Location__Latitude__s", "Location__Longitude__s"})


def test_create_carries_every_column_flattened():
    record = {"ChangeEventHeader": header("CREATE"),
              "Name": {"Salutation": "Ms.", "FirstName": "Ada", "LastName": "Lovelace"}, "Email": "ada@example.com",
              "Phone": None, "MailingAddress": None, "LastModifiedDate": STAMP_MS, "Birthdate": -47_000,
              "Location__c": {"Latitude": 51.5, "Longitude": -0.12}}
    change = parse_change(over_the_wire(record), CONTACT)
    assert change.operation == "create"
    assert change.fields == {"Salutation": "Ms.", "FirstName": "Ada", "LastName": "Lovelace",
                             "Email": "ada@example.com", "Phone": None, "MailingStreet": None, "MailingCity": None,
                             "MailingCountry": None, "LastModifiedDate": STAMP_MS, "Birthdate": -47_000,
                             "Location__Latitude__s": 51.5, "Location__Longitude__s": -0.12}
    assert change.nulled == frozenset() and change.changed == ()


def test_delete_of_several_records_carries_no_fields():
    ids = ("003000000000001AAA", "003000000000002AAA")
    record = {"ChangeEventHeader": header("DELETE", record_ids=ids), "Name": None, "Email": None, "Phone": None,
              "MailingAddress": None, "LastModifiedDate": None, "Birthdate": None, "Location__c": None}
    change = parse_change(over_the_wire(record), CONTACT)
    assert (change.operation, change.record_ids, change.fields) == ("delete", ids, {})


def test_undelete_carries_every_column():
    record = {"ChangeEventHeader": header("UNDELETE"), "Name": {"Salutation": None, "FirstName": None,
                                                                "LastName": "Back"},
              "Email": None, "Phone": "555", "MailingAddress": None, "LastModifiedDate": STAMP_MS,
              "Birthdate": None, "Location__c": None}
    change = parse_change(over_the_wire(record), CONTACT)
    assert change.operation == "undelete" and change.fields["LastName"] == "Back" and change.fields["Phone"] == "555"


@pytest.mark.parametrize("change_type, operation, gap_operation", [
    ("GAP_CREATE", "gap", "create"), ("GAP_UPDATE", "gap", "update"), ("GAP_DELETE", "gap", "delete"),
    ("GAP_UNDELETE", "gap", "undelete"), ("GAP_OVERFLOW", "gap_overflow", None)])
def test_gap_events(change_type, operation, gap_operation):
    record = {"ChangeEventHeader": header(change_type, changed=["0x08"]), "Name": None, "Email": None,
              "Phone": "ignored", "MailingAddress": None, "LastModifiedDate": None, "Birthdate": None,
              "Location__c": None}
    change = parse_change(over_the_wire(record), CONTACT)
    assert (change.operation, change.gap_operation, change.fields) == (operation, gap_operation, {})
    assert change.change_type == change_type


def test_echo_is_recognised_by_the_client_in_change_origin():
    def change(origin):
        record = {"ChangeEventHeader": header("DELETE", origin=origin)}
        return parse_change(record, CONTACT)
    assert change("com/salesforce/api/rest/62.0;client=forcebridge").is_echo()
    assert not change("com/salesforce/api/soap/51.0;client=SfdcInternalAPI/").is_echo()
    assert not change("com/salesforce/api/rest/45.0").is_echo()
    assert not change("").is_echo()
    assert not change("com/salesforce/api/rest/62.0;client=forcebridge-other").is_echo()
    assert origin_client("com/salesforce/api/soap/49.0;client=Astro") == "Astro"


def test_the_reference_streaming_api_event():
    """The documented example (Streaming API shape: changedFields as names, values as JSON)."""
    schema = {"type": "record", "name": "AccountChangeEvent", "fields": [
        {"name": "ChangeEventHeader", "type": HEADER_SCHEMA},
        {"name": "Name", "type": optional("string")}, {"name": "Fax", "type": optional("string")},
        {"name": "Industry", "type": optional("string")},
        {"name": "External_Account_ID__c", "type": optional("string")},
        {"name": "LastModifiedDate", "type": optional("string")}]}
    payload = {
        "LastModifiedDate": "2020-12-15T23:09:18.000Z", "Industry": "Biotechnology",
        "External_Account_ID__c": "1ABC", "Fax": "4155551212",
        "ChangeEventHeader": {
            "commitNumber": 74487681550, "commitUser": "005RM000001hv4SYAQ", "sequenceNumber": 1,
            "entityName": "Account", "changeType": "UPDATE", "changedFields": ["Fax", "LastModifiedDate"],
            "changeOrigin": "com/salesforce/api/soap/51.0;client=SfdcInternalAPI/",
            "transactionKey": "0005e192-9e62-2554-3880-3c3718bd6308", "commitTimestamp": 1608073758000,
            "recordIds": ["001RM000004UF9sYAG"]}}
    change = parse_change(payload, schema)
    assert change.fields == {"Fax": "4155551212", "LastModifiedDate": "2020-12-15T23:09:18.000Z"}
    assert change.record_ids == ("001RM000004UF9sYAG",) and not change.is_echo()
    assert change.stamp.committed_at.isoformat() == "2020-12-15T23:09:18+00:00"


def test_bitmaps_beyond_32_fields_and_bad_ones():
    wide = {"type": "record", "name": "Wide", "fields": [{"name": f"F{i}", "type": optional("string")}
                                                         for i in range(70)]}
    assert decode_bitmap(["0x" + format((1 << 65) | (1 << 40) | 1, "X")], wide) == ["F0", "F40", "F65"]
    with pytest.raises(EventError, match="names field 70"):
        decode_bitmap([hex(1 << 70)], wide)
    with pytest.raises(EventError, match="not hexadecimal"):
        decode_bitmap(["0xZZ"], wide)
    with pytest.raises(EventError, match="not a compound field"):
        decode_bitmap(["0x2", "1-0x1"], wide)


def test_bad_events_are_refused_with_a_reason():
    with pytest.raises(EventError, match="no ChangeEventHeader"):
        parse_change({"Name": None}, CONTACT)
    with pytest.raises(EventError, match="unknown changeType"):
        parse_change({"ChangeEventHeader": header("SNAPSHOT")}, CONTACT)


def test_commit_order_is_timestamp_then_commit_number_then_sequence():
    def change(ts, commit, seq):
        return ChangeEvent("Contact", ("x",), "update", {}, frozenset(), (), (), ChangeStamp(ts, commit, seq),
                                "t", "", "", "UPDATE")
    a, b, c, d = change(2, 1, 1), change(1, 9, 2), change(1, 9, 1), change(1, 3, 5)
    assert in_commit_order([a, b, c, d]) == [d, c, b, a]


def test_column_names_match_what_loads_use():
    assert column_name("Name", "FirstName") == "FirstName"
    assert column_name("BillingAddress", "PostalCode") == "BillingPostalCode"
    assert column_name("Address", "City") == "City"
    assert column_name("Store__c", "Longitude") == "Store__Longitude__s"


def test_values_as_outbound_message_text():
    assert text_value(STAMP_MS, "datetime") == "2020-12-15T23:09:18.000Z"
    assert text_value(18_611, "date") == "2020-12-15"
    assert text_value(1_608_000_000_000, "date") == "2020-12-15"      # ms at midnight, also seen
    assert text_value(True, "boolean") == "true"
    assert text_value(12.5, "currency") == "12.5"
    assert text_value(None, "string") is None
    assert text_value(45_296_789, "time") == "12:34:56.789Z"


def test_reconnect_delays_grow_are_capped_and_jittered():
    from core.cdc import reconnect_delay
    assert [reconnect_delay(n, 0.999, base=1, cap=60) for n in range(8)] == pytest.approx(
        [0.999, 1.998, 3.996, 7.992, 15.984, 31.968, 59.94, 59.94])
    assert reconnect_delay(3, 0.0) == 0.0 and reconnect_delay(1000, 0.5, cap=10) == 5.0


# ------------------------------------------------------------------ core.cdc.changes (the apply path's changes)

def test_changes_one_per_record_partial_for_updates_stamped_by_last_modified_date():
    from core.cdc import changes
    record = {"ChangeEventHeader": header("UPDATE", record_ids=("003000000000001AAA", "003000000000002AAA"),
                                          changed=["0x28"], nulled=["0x08"]),
              "Name": None, "Email": None, "Phone": None, "MailingAddress": None,
              "LastModifiedDate": STAMP_MS, "Birthdate": None, "Location__c": None}
    event = parse_change(over_the_wire(record), CONTACT, replay_id=b"\x00\x07")
    out = changes(event, {"Phone": "phone"})
    assert [c.record_id for c in out] == ["003000000000001AAA", "003000000000002AAA"]
    assert all(c.operation == "update" and not c.complete and c.source == "cdc" for c in out)
    assert out[0].fields == {"Phone": None, "LastModifiedDate": "2020-12-15T23:09:18.000Z"}
    assert out[0].stamp.isoformat() == "2020-12-15T23:09:18+00:00"
    assert len({c.key for c in out}) == 2


def test_changes_create_is_complete_delete_is_stamped_by_its_commit_second_gaps_give_none():
    from core.cdc import changes
    full = {"ChangeEventHeader": header("CREATE"), "Name": {"Salutation": None, "FirstName": "A", "LastName": "B"},
            "Email": "a@b.c", "Phone": None, "MailingAddress": None, "LastModifiedDate": STAMP_MS,
            "Birthdate": None, "Location__c": None}
    created = changes(parse_change(over_the_wire(full), CONTACT), {})
    assert created[0].complete and created[0].fields["FirstName"] == "A"
    gone = {**{k: None for k in full}, "ChangeEventHeader": header("DELETE", commit_timestamp=STAMP_MS + 750)}
    deleted = changes(parse_change(over_the_wire(gone), CONTACT), {})
    assert deleted[0].operation == "delete" and deleted[0].fields == {}
    assert deleted[0].stamp.isoformat() == "2020-12-15T23:09:18+00:00"    # whole seconds, like SystemModstamp
    gap = {**{k: None for k in full}, "ChangeEventHeader": header("GAP_UPDATE")}
    assert changes(parse_change(over_the_wire(gap), CONTACT), {}) == []


def test_an_objects_own_channel():
    from core.cdc import channel

    assert channel("Account") == "/data/AccountChangeEvent"
    assert channel("Invoice__c") == "/data/Invoice__ChangeEvent"
