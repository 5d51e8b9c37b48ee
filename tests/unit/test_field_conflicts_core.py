"""Per-field conflict settlement (core.conflicts.settle_fields, local_changes): pure."""
import datetime as dt

from core.conflicts import local_changes, settle_fields

EARLY, LATE = dt.datetime(2026, 1, 1, 10), dt.datetime(2026, 1, 1, 11)
ROW = {"name": "local", "amount__c": 1.0, "status__c": "Draft"}


def entries(*changes):
    return [{"op": op, "fields": fields, "old_values": old} for op, fields, old in changes]


def test_the_oldest_entry_holds_the_base_and_an_insert_means_every_field():
    local = local_changes(entries(("update", ["name"], {"name": "v0"}), ("update", ["name", "amount__c"],
                                                                         {"name": "v1"})))
    assert (local.columns, local.base) == ({"name", "amount__c"}, {"name": "v0", "amount__c": None})
    assert local_changes(entries(("insert", None, None), ("update", ["name"], {"name": "x"}))).columns is None
    assert local_changes(entries(("update", ["name"], None))).base == {}       # captured before old values


def test_different_fields_are_merged_whatever_the_rule():
    local = local_changes(entries(("update", ["name"], {"name": "v0"})))
    incoming = {"name": "v0", "amount__c": 5.0, "status__c": "Draft"}
    for rule in ("salesforce_wins", "postgres_wins", "last_writer_wins"):
        s = settle_fields(rule, incoming, ROW, local, {"name": "v0"}, EARLY, LATE)
        assert (s.sf_fields, s.both, s.winner, s.take) == (("amount__c",), (), "merged", ("amount__c",))
        assert not s.salesforce_took_all


def test_the_rule_decides_only_fields_both_sides_changed():
    local = local_changes(entries(("update", ["name", "status__c"], {"name": "v0", "status__c": "Sent"})))
    base = {"name": "v0", "status__c": "Sent"}
    incoming = {"name": "remote", "amount__c": 5.0, "status__c": "Sent"}
    pg_wins = settle_fields("postgres_wins", incoming, ROW, local, base, EARLY, LATE)
    assert (pg_wins.both, pg_wins.winner, pg_wins.take) == (("name",), "postgres", ("amount__c",))
    sf_wins = settle_fields("last_writer_wins", incoming, ROW, local, base, EARLY, LATE)
    assert (sf_wins.winner, sf_wins.take, sf_wins.salesforce_took_all) == ("salesforce", ("name", "amount__c"), False)


def test_an_unknown_base_counts_as_changed_on_both_sides():
    local = local_changes(entries(("insert", None, None)))
    s = settle_fields("salesforce_wins", {"name": "v0", "amount__c": 1.0}, ROW, local, {}, EARLY, LATE)
    assert (s.both, s.winner, s.take, s.salesforce_took_all) == (("name",), "salesforce", ("name",), True)


def test_nothing_salesforce_changed_is_no_conflict():
    local = local_changes(entries(("update", ["name"], {"name": "v0"})))
    s = settle_fields("salesforce_wins", {"name": "v0", "amount__c": 1.0}, ROW, local, {"name": "v0"}, EARLY, LATE)
    assert s.sf_fields == () and s.take == ()
