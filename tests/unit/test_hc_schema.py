import pytest

from core.convert import FieldSpec
from core.hc_schema import Index, table_indexes
from core.mapping import Mapping, MappingError


def mapping(upsert=None, **extra):
    fields = (FieldSpec("Name", "string", 80), FieldSpec("External_Id__c", "string", 64), FieldSpec("Email__c", "email", 80))
    return Mapping("Contact", "salesforce", "contact", "bidirectional", fields, upsert_field=upsert, extra=extra)


def test_heroku_connects_index_names():
    assert table_indexes(mapping()) == [Index("hcu_idx_contact_sfid", "sfid", True),
                                        Index("hc_idx_contact_systemmodstamp", "systemmodstamp", False)]
    got = table_indexes(mapping("External_Id__c", indexes={"Email__c": {"unique": False}, "Name": {"unique": True},
                                                           "Id": {"unique": True}, "External_Id__c": {}}))
    assert got == [Index("hcu_idx_contact_sfid", "sfid", True),
                   Index("hc_idx_contact_systemmodstamp", "systemmodstamp", False),
                   Index("hcu_idx_contact_external_id__c", "external_id__c", True),   # upsert field: unique anyway
                   Index("hc_idx_contact_email__c", "email__c", False),
                   Index("hcu_idx_contact_name", "name", True)]


def test_long_names_are_cut_as_postgres_cuts_them():
    m = Mapping("X__c", "salesforce", "t" * 60, "sf_to_pg", (), extra={})
    assert all(len(i.name) == 63 for i in table_indexes(m))


@pytest.mark.parametrize("indexes,word", [({"Nope__c": {}}, "Nope__c"), ({"Name": True}, "Name"), (["Name"], "indexes")])
def test_bad_indexes_config_is_refused_naming_it(indexes, word):
    with pytest.raises(MappingError, match=word):
        table_indexes(mapping(indexes=indexes))
