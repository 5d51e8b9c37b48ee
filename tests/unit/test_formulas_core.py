"""Which fields a formula refresh reads and when it runs (core.formulas, pure)."""
import datetime as dt

import pytest

from core.formulas import calculated_fields, check_refresh_option, next_refresh, refresh_minutes
from core.mapping import from_entry

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
    assert next_refresh(mapping(formula_refresh_minutes=5), at, False) == at + dt.timedelta(minutes=15)


@pytest.mark.parametrize("value", ["15", -1, 1.5, True, 10**9])
def test_a_bad_interval_is_refused(value):
    assert check_refresh_option({"formula_refresh_minutes": value})[0] == "config.formula_refresh_minutes"
