"""Which fields a formula refresh reads and when it runs (core.formulas, pure)."""
import datetime as dt

import pytest

from core import formulas
from core.formulas import (ParentReference, calculated_fields, check_refresh_option, next_refresh, parent_references,
                           references_from, refresh_minutes, relationships_read)
from core.mapping import from_entry
from core.soql import children_calculated

DESCRIBE = {"fields": [{"name": "Name", "type": "string"}, {"name": "Cost__c", "type": "currency", "calculated": True},
                       {"name": "Label__c", "type": "string", "calculated": True}]}


def mapping(**config):
    return from_entry({"object_name": "Parcel__c", "config": {"fields": {
        "Name": {}, "Cost__c": {}, "Label__c": {"owner": "postgres"}}, **config}}, DESCRIBE)


def test_calculated_fields_come_from_describe_and_skip_postgres_owned_ones():
    assert [f.name for f in calculated_fields(mapping(), DESCRIBE)] == ["Cost__c"]
    assert calculated_fields(mapping(), None) == ()


def test_the_interval_defaults_to_15_minutes_and_0_turns_it_off():
    at = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    assert (refresh_minutes(mapping()), next_refresh(mapping(), at, True)) == (15, at + dt.timedelta(minutes=15))
    assert next_refresh(mapping(formula_refresh_minutes=0), at, True) is None
    assert next_refresh(mapping(formula_refresh_minutes=5), at, False) == at + dt.timedelta(days=1)   # nothing to refresh
    assert next_refresh(mapping(), at, True, factor=3.0) == at + dt.timedelta(minutes=45)   # the budget spaces it


@pytest.mark.parametrize("value", ["15", -1, 1.5, True, 10**9])
def test_a_bad_interval_is_refused(value):
    assert check_refresh_option({"formula_refresh_minutes": value})[0] == "config.formula_refresh_minutes"


def test_the_parents_a_formula_reads_leave_out_literals_comments_and_globals():
    text = "Name & ' (Account.Name)' & Shipment__r.Name /* Owner.Name */ & $User.Name + Account.Owner.Name + 1.5"
    assert relationships_read(text) == {"shipment__r", "account"}
    assert relationships_read(None) == set()


def test_parent_references_name_the_parent_its_lookup_and_the_formulas_reading_it():
    describe = {"fields": [
        {"name": "Name", "type": "string"},
        {"name": "Shipment__c", "type": "reference", "relationshipName": "Shipment__r", "referenceTo": ["Shipment__c"]},
        {"name": "WhatId", "type": "reference", "relationshipName": "What", "referenceTo": ["Account", "Case"]},
        {"name": "Cost__c", "type": "currency", "calculated": True, "calculatedFormula": "Weight__c * SHIPMENT__R.Rate__c"},
        {"name": "Label__c", "type": "string", "calculated": True, "calculatedFormula": "What.Name & Shipment__r.Name"},
        {"name": "Weight__c", "type": "double", "calculated": True, "calculatedFormula": "1 + 2"}]}
    m = from_entry({"object_name": "Parcel__c", "config": {"fields": {
        "Name": {}, "Shipment__c": {}, "Cost__c": {}, "Label__c": {}, "Weight__c": {}}}}, describe)
    assert parent_references(m, describe) == (
        ParentReference("Shipment__c", "Shipment__c", ("Cost__c", "Label__c")),
        ParentReference("Account", "WhatId", ("Label__c",)), ParentReference("Case", "WhatId", ("Label__c",)))
    docs = [r.as_document() for r in parent_references(m, describe)]
    assert references_from(docs) == parent_references(m, describe)


def test_children_of_changed_parents_are_one_query_within_the_row_filter():
    m = mapping(row_filter="Name != 'x'")
    assert children_calculated(m, "Shipment__c", calculated_fields(m, DESCRIBE), ["a0B000000000001AAA"]) == (
        "SELECT Id, SystemModstamp, IsDeleted, Cost__c FROM Parcel__c "
        "WHERE (Name != 'x') AND Shipment__c IN ('a0B000000000001AAA')")


def test_children_wait_for_the_full_refresh_after_a_failure_and_are_spaced_by_the_budget():
    at = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.timezone.utc)
    minute = dt.timedelta(minutes=1)
    ok = {"error": None, "last_run_at": at, "targeted_at": at + minute, "targeted_error": None}
    assert formulas.targeted_due({**ok, "targeted_at": None}, at, factor=3)
    assert formulas.targeted_due(ok, at + 2 * minute)                      # each minute
    assert not formulas.targeted_due(ok, at + 2 * minute, factor=3)        # spaced x3: each third minute
    assert formulas.targeted_due(ok, at + 3 * minute, factor=3)
    assert not formulas.targeted_due({**ok, "error": "PermanentError: ..."}, at + 9 * minute)
    failed = {**ok, "targeted_error": "PermanentError: 400 INVALID_FIELD: ..."}
    assert not formulas.targeted_due(failed, at + 9 * minute)              # until the next full refresh
    assert formulas.targeted_due({**failed, "last_run_at": at + 2 * minute}, at + 9 * minute)
