"""Coalescing, write planning and batching for Postgres -> Salesforce (pure)."""
from hypothesis import given, strategies as st

from core.changes import (ChangeLogEntry, Fields, coalesce, outcome_of, plan_batches, plan_writes, retry_delay)
from core.convert import FieldSpec
from core.mapping import Mapping

MAPPING = Mapping(object_name="Invoice__c", table_schema="salesforce", table_name="invoice__c",
                  direction="bidirectional", id=1, upsert_field="External_Id__c",
                  fields=(FieldSpec("Name", "string", 80), FieldSpec("Amount__c", "currency"),
                          FieldSpec("External_Id__c", "string", 64)))
_ids = iter(range(1, 10**9))


def entry(op, record=1, fields=(), sfid=None, attempts=0):
    return ChangeLogEntry(id=next(_ids), mapping_id=1, op=op, record_id=record, sfid=sfid,
                          fields=tuple(fields), attempts=attempts)


def test_insert_then_updates_is_one_full_write():
    (c,) = coalesce([entry("insert"), entry("update", fields=["name"]), entry("update", fields=["amount__c"])])
    assert (c.kind, c.full, len(c.entry_ids)) == ("write", True, 3)


def test_updates_union_their_fields():
    (c,) = coalesce([entry("update", fields=["name"]), entry("update", fields=["amount__c"])])
    assert (c.kind, c.full, c.columns) == ("write", False, {"name", "amount__c"})


def test_delete_wins_and_unsent_insert_plus_delete_is_nothing():
    assert coalesce([entry("update", fields=["name"], sfid="a0X1"), entry("delete", sfid="a0X1")])[0].kind == "delete"
    assert coalesce([entry("insert"), entry("update", fields=["name"]), entry("delete")])[0].kind == "none"
    # an insert tried before may have reached Salesforce: its delete must still be sent
    assert coalesce([entry("insert", attempts=1), entry("delete")])[0].kind == "delete"


def test_records_keep_their_first_seen_order():
    changes = coalesce([entry("update", 2, ["name"]), entry("insert", 1), entry("update", 2, ["amount__c"])])
    assert [c.record_id for c in changes] == [2, 1]


def test_plan_upserts_new_rows_updates_known_ones_and_deletes_by_id():
    new, known, gone, vanished = coalesce([
        entry("insert", 1), entry("update", 2, ["amount__c"]), entry("delete", 3, sfid="a0X3"),
        entry("update", 4, ["name"])])
    rows = {1: {"id": 1, "sfid": None, "name": "n", "amount__c": 5, "external_id__c": "E1"},
            2: {"id": 2, "sfid": "a0X2", "name": "m", "amount__c": 7, "external_id__c": "E2"}}
    writes, nothing = plan_writes([new, known, gone, vanished], rows, MAPPING)
    assert [(w.op, w.body, w.ext_field) for w in writes] == [
        ("upsert", {"Name": "n", "Amount__c": 5, "External_Id__c": "E1"}, "External_Id__c"),
        ("update", {"Id": "a0X2", "Amount__c": 7}, None),
        ("delete", {"Id": "a0X3"}, None)]
    assert nothing == [vanished]


def test_an_inserts_excluded_columns_are_not_sent_until_an_update_changes_them():
    row = {1: {"id": 1, "sfid": None, "name": "n", "amount__c": 5, "external_id__c": "E1"}}
    insert = ChangeLogEntry(id=next(_ids), mapping_id=1, op="insert", record_id=1, excluded=("amount__c",))
    (c,) = coalesce([insert])
    (w,), _ = plan_writes([c], row, MAPPING)
    assert w.body == {"Name": "n", "External_Id__c": "E1"}
    (c,) = coalesce([insert, entry("update", fields=["amount__c"])])
    (w,), _ = plan_writes([c], row, MAPPING)
    assert w.body == {"Name": "n", "Amount__c": 5, "External_Id__c": "E1"}


def test_an_update_creating_the_record_keeps_the_exclusions_of_its_failed_insert():
    """The insert failed (not claimed again); the user's later update is what creates the record: the claim
    gives the update the insert's exclusions (claim_changes), the create leaves them out."""
    row = {1: {"id": 1, "sfid": None, "name": "n", "amount__c": 5, "external_id__c": "E1"}}
    update = ChangeLogEntry(id=next(_ids), mapping_id=1, op="update", record_id=1, fields=("name",),
                            excluded=("amount__c",))
    (c,) = coalesce([update])
    (w,), _ = plan_writes([c], row, MAPPING)
    assert w.body == {"Name": "n", "External_Id__c": "E1"}


def test_fields_salesforce_will_not_take_are_left_out():
    (c,) = coalesce([entry("insert", 1)])
    rows = {1: {"id": 1, "sfid": None, "name": "n", "amount__c": 5, "external_id__c": "E1"}}
    (w,), _ = plan_writes([c], rows, MAPPING, Fields(createable=frozenset({"Name", "External_Id__c"})))
    assert w.body == {"Name": "n", "External_Id__c": "E1"}


@given(st.lists(st.sampled_from(["upsert", "update", "delete"]), max_size=900), st.integers(1, 200))
def test_batches_are_small_uniform_and_lose_nothing(ops, size):
    from core.changes import Write
    writes = [Write(None, op, "Invoice__c", {"i": i}) for i, op in enumerate(ops)]
    batches = plan_batches(writes, size)
    assert sorted(w.body["i"] for b in batches for w in b) == list(range(len(ops)))
    assert all(0 < len(b) <= size and len({w.op for w in b}) == 1 for b in batches)
    for b in batches:
        assert [w.body["i"] for w in b] == sorted(w.body["i"] for w in b)


def test_outcomes_follow_salesforce_codes():
    from core.changes import Write
    up = Write(None, "upsert", "Invoice__c", {})
    dele = Write(None, "delete", "Invoice__c", {"Id": "a0X9"})
    assert outcome_of(up, {"id": "a0X1", "success": True, "errors": []}).state == "SUCCESS"
    lock = [{"statusCode": "UNABLE_TO_LOCK_ROW", "message": "unable to obtain exclusive access", "fields": []}]
    assert outcome_of(up, {"success": False, "errors": lock}).state == "REQUEUED"
    bad = [{"statusCode": "REQUIRED_FIELD_MISSING", "message": "Required fields are missing: [Name]", "fields": ["Name"]}]
    failed = outcome_of(up, {"success": False, "errors": bad})
    assert failed.state == "FAILED" and failed.error == bad
    gone = [{"statusCode": "ENTITY_IS_DELETED", "message": "entity is deleted", "fields": []}]
    assert outcome_of(dele, {"success": False, "errors": gone}) .state == "SUCCESS"


def test_backoff_grows_and_is_capped():
    assert [retry_delay(n, 1, 10) for n in (1, 2, 3, 4, 5, 6)] == [1, 2, 4, 8, 10, 10]


def test_batches_are_bundled_into_as_few_calls_as_even_as_possible():
    from core.changes import bundle_batches
    assert bundle_batches([], 5) == []
    assert bundle_batches(list("abc"), 5) == [list("abc")]
    assert [len(c) for c in bundle_batches(list(range(16)), 5)] == [4, 4, 4, 4]
    assert [len(c) for c in bundle_batches(list(range(11)), 5)] == [4, 4, 3]
    assert bundle_batches(list("abc"), 1) == [["a"], ["b"], ["c"]]
    assert [x for call in bundle_batches(list(range(23)), 5) for x in call] == list(range(23))
