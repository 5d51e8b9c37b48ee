"""Per-field ownership (core.mapping `owner`): validation, round trip, and what the write plan sends (pure)."""
import pytest

from core.changes import ChangeLogEntry, coalesce, plan_writes
from core.mapping import MappingError, from_entry, patched, to_entry

ENTRY = {"object_name": "Invoice__c", "direction": "bidirectional",
         "config": {"fields": {"Name": {"type": "string", "length": 80},
                               "Status__c": {"type": "picklist", "owner": "salesforce"},
                               "Amount__c": {"type": "currency", "owner": "postgres"}}}}


def test_owner_defaults_to_both_and_round_trips_through_export():
    m = from_entry(ENTRY)
    assert {f.name: f.owner for f in m.fields} == {"Name": "both", "Status__c": "salesforce", "Amount__c": "postgres"}
    exported = to_entry(m)["config"]["fields"]
    assert "owner" not in exported["Name"] and exported["Status__c"]["owner"] == "salesforce"
    assert from_entry({**to_entry(m), "id": None}).fields == m.fields
    assert [f.name for f in m.sent_fields] == ["Name", "Amount__c"]
    assert [f.name for f in m.overwritten_fields] == ["Name", "Status__c"]


@pytest.mark.parametrize("owner", ["Salesforce", "pg", None, 1, ["both"]])
def test_a_wrong_owner_is_refused_naming_the_field(owner):
    fields = {"Name": {"type": "string", "owner": owner}}
    with pytest.raises(MappingError) as refused:
        from_entry({"object_name": "Invoice__c", "config": {"fields": fields}})
    assert refused.value.field == "config.fields.Name.owner" and "owner must be one of" in str(refused.value)


def test_patch_changes_an_owner():
    m = from_entry(ENTRY)
    fields = {**to_entry(m)["config"]["fields"], "Name": {"type": "string", "length": 80, "owner": "postgres"}}
    assert patched(m, {"config": {"fields": fields}}).field("Name").owner == "postgres"


def test_the_drain_never_sends_a_salesforce_owned_field():
    m = from_entry(ENTRY)
    row = {"id": 1, "sfid": None, "name": "n", "status__c": "Paid", "amount__c": 5}
    (insert,) = coalesce([ChangeLogEntry(id=1, mapping_id=None, op="insert", record_id=1)])
    (w,), _ = plan_writes([insert], {1: row}, m)
    assert w.body == {"Name": "n", "Amount__c": 5}
    (update,) = coalesce([ChangeLogEntry(id=2, mapping_id=None, op="update", record_id=1, sfid="a0X1",
                                         fields=("status__c",))])
    writes, nothing = plan_writes([update], {1: {**row, "sfid": "a0X1"}}, m)
    assert (writes, nothing) == ([], [update])
