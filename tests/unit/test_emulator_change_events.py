"""The emulator's change events (schema from describe, bitmaps, Avro) read back by core.cdc."""
import io

import fastavro
from hypothesis import given, settings, strategies as st

from core.cdc import decode_bitmap, parse_change
from emulator.change_events import EventSchema, event_name, event_values, topic_name
from emulator.schema import load_types

TYPES = load_types()
CONTACT = EventSchema(TYPES["contact"])
ACCOUNT = EventSchema(TYPES["account"])


def read_back(schema: EventSchema, header: dict, values: dict):
    payload = schema.encode(header, values)
    record = fastavro.schemaless_reader(io.BytesIO(payload), fastavro.parse_schema(schema.schema))
    return parse_change(record, schema.schema)


def header(entity, change_type, changed=(), nulled=()):
    return {"entityName": entity, "recordIds": ["003000000000001AAA"], "changeType": change_type,
            "changeOrigin": "com/salesforce/api/rest/62.0;client=x", "transactionKey": "t", "sequenceNumber": 1,
            "commitTimestamp": 1_700_000_000_000, "commitNumber": 7, "commitUser": "005000000000001AAA",
            "nulledFields": list(nulled), "diffFields": [], "changedFields": list(changed)}


def test_names_and_topics():
    assert event_name("Account") == "AccountChangeEvent" and topic_name("Invoice__c") == "/data/Invoice__ChangeEvent"


def test_schema_leaves_out_what_change_events_never_carry_and_nests_compound_fields():
    names = [f["name"] for f in CONTACT.schema["fields"]]
    assert names[0] == "ChangeEventHeader"
    assert not {"Id", "IsDeleted", "SystemModstamp"} & set(names)
    name_field = next(f for f in CONTACT.schema["fields"] if f["name"] == "Name")
    assert [c["name"] for c in name_field["type"][1]["fields"]] == ["Salutation", "FirstName", "LastName"]
    mailing = next(f for f in CONTACT.schema["fields"] if f["name"] == "MailingAddress")
    assert [c["name"] for c in mailing["type"][1]["fields"]] == ["City", "Country"]
    billing = next(f for f in ACCOUNT.schema["fields"] if f["name"] == "BillingAddress")
    assert [c["name"] for c in billing["type"][1]["fields"]] == ["Street", "City", "State", "PostalCode", "Country"]
    assert "Name" in [f["name"] for f in ACCOUNT.schema["fields"]]      # an Account's Name is plain text
    assert ACCOUNT.schema_id != CONTACT.schema_id and EventSchema(TYPES["contact"]).schema_id == CONTACT.schema_id


def test_an_update_read_back_in_the_loads_column_names():
    values, changed, nulled = event_values("updated", {"LastName": "Smith", "MailingCity": None,
                                                       "LastModifiedDate": "2023-11-14T22:13:20.000+0000",
                                                       "SystemModstamp": "2023-11-14T22:13:20.000+0000"})
    change = read_back(CONTACT, header("Contact", "UPDATE", CONTACT.bitmap(changed), CONTACT.bitmap(nulled)),
                       values)
    assert change.fields == {"LastName": "Smith", "MailingCity": None, "LastModifiedDate": 1_700_000_000_000}
    assert change.nulled == frozenset({"MailingCity"})


def test_values_by_type():
    values = {"Birthdate": "2024-02-29", "DoNotCall": 1, "LastName": "X", "CreatedDate": "1970-01-01T00:00:01.000Z"}
    change = read_back(CONTACT, header("Contact", "CREATE"), values)
    assert change.fields["Birthdate"] == 19_782 and change.fields["DoNotCall"] is True
    assert change.fields["CreatedDate"] == 1000


fields = [f["name"] for f in TYPES["account"].describe["fields"] if f["name"] in ACCOUNT.slots]


@settings(max_examples=200, deadline=None)
@given(st.sets(st.sampled_from(fields)))
def test_bitmaps_round_trip_through_the_core_decoder(chosen):
    """Any set of fields set to null -> the emulator's bitmaps -> core.cdc's columns: the same set."""
    nulls = {name: None for name in chosen}
    change = read_back(ACCOUNT, header("Account", "UPDATE", ACCOUNT.bitmap(chosen), ACCOUNT.bitmap(chosen)), nulls)
    assert set(change.changed) == set(chosen) == set(change.nulled)
    assert change.fields == nulls
