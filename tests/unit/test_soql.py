"""core/soql.py: every query the product sends, values quoted by simple-salesforce's formatter."""
import datetime as dt

import pytest

from core import soql
from core.convert import FieldSpec
from core.mapping import Mapping


def mapping():
    return Mapping("Account", "salesforce", "account", "sf_to_pg", (FieldSpec("Name", "string"),), id=1)


def test_by_ids_quotes_every_id_and_drops_none():
    text = soql.by_ids(mapping(), ["001000000000001AAA", "a'b", "c\\d", "é"])
    assert text == ("SELECT Id, SystemModstamp, IsDeleted, Name FROM Account WHERE Id IN "
                    "('001000000000001AAA','a\\'b','c\\\\d','é')")


def test_which_ids_can_name_a_record():
    assert soql.is_record_id("001000000000001") and soql.is_record_id("001000000000001AAA")
    assert not any(soql.is_record_id(i) for i in ["abc", "001'00000000001", "00100000000000１", None, "0" * 16])


def test_external_id_lookups_quote_their_values():
    assert soql.by_external_ids("Invoice__c", "External_Id__c", ["x' OR Name != '", "plain"]) == (
        "SELECT Id, External_Id__c FROM Invoice__c WHERE External_Id__c IN ('x\\' OR Name != \\'','plain')")


def test_names_that_are_not_api_names_are_refused():
    for bad in ["Account WHERE Id != null", "Name, (SELECT Id FROM Contacts)", "", "1Account", "Acc'ount"]:
        with pytest.raises(ValueError):
            soql.count(bad)
    with pytest.raises(ValueError):
        soql.by_external_ids("Invoice__c", "Ext) OR (Id", ["x"])
    assert soql.count("Account") == "SELECT COUNT() FROM Account"


def test_date_times_go_out_in_utc_whole_seconds():
    east = dt.timezone(dt.timedelta(hours=2))
    since = dt.datetime(2026, 1, 2, 5, 4, 5, 999000, tzinfo=east)
    assert soql.recycle_bin(mapping(), since) == (
        "SELECT Id, SystemModstamp, IsDeleted FROM Account WHERE IsDeleted = true AND "
        "SystemModstamp >= 2026-01-02T03:04:05+00:00 ORDER BY SystemModstamp")
    assert soql.keys(mapping()) == "SELECT Id, SystemModstamp, IsDeleted FROM Account"
    assert not soql.changed_since(mapping(), since, ordered=False).endswith("ORDER BY SystemModstamp")
