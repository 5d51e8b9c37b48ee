"""core/sources.py and the batches core/inbound.py plans from SalesforceChanges."""
import datetime as dt

import pytest

from core.convert import FieldSpec
from core.inbound import plan_apply
from core.mapping import Mapping
from core.sources import SOURCES, SalesforceChange, collect, deleted, from_fields, from_rest_record

UTC = dt.timezone.utc
M = Mapping("Account", "salesforce", "account", "sf_to_pg", (FieldSpec("Name", "string"),), id=7)


def test_every_source_is_registered_with_its_policy():
    assert set(SOURCES) >= {"outbound", "load", "poll", "drift"}
    assert not SOURCES["load"].fresh and SOURCES["poll"].rereads and not SOURCES["outbound"].rereads
    with pytest.raises(ValueError, match="unknown Salesforce source"):
        from_fields("Account", "001", {}, "carrier pigeon")
    with pytest.raises(ValueError, match="unknown operation"):
        SalesforceChange("Account", "001", "merge", {}, None, "poll")


def test_a_rest_record_becomes_a_change_and_one_in_the_recycle_bin_a_delete():
    live = from_rest_record("Account", {"attributes": {}, "Id": "001A", "Name": "x", "IsDeleted": False,
                                        "SystemModstamp": "2026-01-02T03:04:05.000+0000"}, "poll")
    assert (live.operation, live.key, live.stamp, live.fields["Name"]) == (
        "update", "001A", dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "x")
    gone = from_rest_record("Account", {"Id": "001B", "IsDeleted": True, "SystemModstamp": None}, "poll")
    assert gone.deletes and gone.stamp is None


def test_an_unreadable_item_fails_alone():
    collected = collect([("n1", {"SystemModstamp": "yesterday"}), ("n2", {"SystemModstamp": None})],
                        lambda f: from_fields("Account", "001", f, "outbound"))
    assert list(collected.failed) == ["n1"] and "SystemModstamp" in collected.failed["n1"]
    assert len(collected.changes) == 1


def test_the_newest_change_of_a_record_wins_whatever_its_operation():
    t1, t2 = (dt.datetime(2026, 1, 1, 0, 0, s, tzinfo=UTC) for s in (1, 2))
    plan = plan_apply([
        from_fields("Account", "001A", {"Name": "old", "SystemModstamp": t1.isoformat()}, "poll", key="a"),
        deleted("Account", "001A", t2, "poll"),
        from_fields("Account", "001B", {"Name": "kept", "SystemModstamp": t2.isoformat()}, "poll", key="b"),
        deleted("Account", "001B", t1, "poll"),
        from_fields("Contact", "003A", {}, "poll", key="c"),
    ], {"account": M})
    assert plan.superseded == ["a", "001B"] and plan.unmapped == ["c"]
    assert [(d.sfids, d.stamps, d.keys) for d in plan.deletes] == [(["001A"], [t2], ["001A"])]
    assert [(b.sfids, b.values, b.keys) for b in plan.batches] == [(["001B"], [["kept"]], ["b"])]


def test_an_upsert_batch_is_cut_to_some_rows_in_one_place():
    plan = plan_apply([from_fields("Account", f"001{i}", {"Name": str(i)}, "outbound", key=f"n{i}")
                       for i in range(4)], {"account": M})
    (batch,) = plan.batches
    cut = batch.subset([3, 1])
    assert (cut.sfids, cut.values, cut.keys, cut.isdeleted) == (["0013", "0011"], [["3", "1"]], ["n3", "n1"],
                                                                [False, False])
    assert batch.subset([0, 1, 2, 3]) is batch
    assert batch.without(["n0", "n2"]).keys == ["n1", "n3"] and batch.without([]) is batch
