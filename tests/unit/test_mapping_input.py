"""What a mapping request may carry: Salesforce object API names, strict JSON types, PATCH validated as
creation is, reserved schemas; and the Salesforce gateway's last guard against a name that is a path."""
from __future__ import annotations

import pytest

from core.mapping import MappingError, check_object_name, from_entry, patched, to_entry
from gateway.salesforce import Salesforce
from settings import Settings

GOOD_NAMES = ["Account", "Invoice__c", "ns__Invoice__c", "Employee__ChangeEvent", "Settings__mdt", "Order_Event__e",
              "Invoice__Share", "Archive__b", "External__x", "A", "Line_Item_2__c", "AccountChangeEvent"]
BAD_NAMES = ["../limits#", "../query?q=SELECT+Id+FROM+User", "Account/describe", "Account?x=1", "Account#",
             "Account%2F..", "Account\n", "Account ", " Account", "_Account", "Account_", "1Account", "Invoice___c",
             "Invoice__", "Bad__name__c__c__c", "ns__Invoice", "Invoice__zz", "Invoice__c_", "A" * 81, "", "Ac count",
             "Accöunt", 5, None, ["Account"]]


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_salesforce_object_api_names_are_accepted(name):
    assert check_object_name(name) == name


@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
def test_anything_else_is_refused_naming_object_name(name):
    with pytest.raises(MappingError) as refused:
        check_object_name(name)
    assert refused.value.field == "object_name" and "object_name" in str(refused.value)


class _NoNetwork:
    """A requests session that records what would have been sent instead of sending it."""

    def __init__(self):
        self.sent = []

    def request(self, method, url, *args, **kwargs):
        self.sent.append((method, url))
        raise AssertionError(f"no call expected, got {method} {url}")

    post = get = request


@pytest.mark.parametrize("name", ["../limits#", "../query?q=SELECT+Id+FROM+User", "Account/../../limits"])
def test_the_gateway_makes_no_call_for_a_name_that_is_not_an_object(tmp_path, name):
    sf = Salesforce(Settings(database_url="", secret_key="", huey_url="", instance_path=tmp_path,
                             sf_instance_url="https://sf.invalid", sf_username="u", sf_password="p"))
    sf.session = _NoNetwork()
    with pytest.raises(MappingError):
        sf.describe(name)
    with pytest.raises(MappingError):
        sf.count(name)
    assert sf.session.sent == [] and sf.calls == 0 and sf.logins == 0


# -- creation: strict types ---------------------------------------------------------------------------------

def entry(**overrides) -> dict:
    return {"object_name": "Invoice__c", "config": {"fields": {"Name": {"type": "string", "length": 80}}},
            **overrides}


@pytest.mark.parametrize("overrides,field", [
    ({"config": "fields please"}, "config"),
    ({"config": {"fields": ["Name"]}}, "config.fields"),
    ({"config": {"fields": {"Name": {"type": "string"}}, "access": "read-only"}}, "config.access"),
    ({"config": {"fields": {"Name": {"type": "string"}}, "access": ["read_only"]}}, "config.access"),
    ({"active": "false"}, "active"),
    ({"active": {}}, "active"),
    ({"active": 0}, "active"),
    ({"direction": None}, "direction"),
    ({"direction": ["sf_to_pg"]}, "direction"),
    ({"conflict_rule": {"x": 1}}, "conflict_rule"),
    ({"schema": "forcebridge"}, "schema"),
    ({"schema": "pg_temp"}, "schema"),
    ({"table": "invoice\n"}, "table"),
    ({"table": "_trigger_log"}, "table"),
    ({"direction": "bidirectional", "config": {"fields": {"Name": {"type": "string"}}, "access": "read_only"}},
     "direction"),
    ({"config": {"fields": {"Name": {"type": "string"}}, "keep_deleted_rows": "false"}}, "config.keep_deleted_rows"),
    ({"config": {"fields": {"Name": {"type": "string"}}, "sf_polling_seconds": float("inf")}},
     "config.sf_polling_seconds"),
    ({"config": {"fields": {"Name": {"type": "string"}}, "sf_polling_seconds": "ten"}}, "config.sf_polling_seconds"),
    ({"config": {"fields": {"Name": {"type": "string"}}, "sf_delete_detection": "guess"}},
     "config.sf_delete_detection"),
])
def test_a_wrong_type_or_value_is_refused_naming_its_field(overrides, field):
    with pytest.raises(MappingError) as refused:
        from_entry(entry(**overrides))
    assert refused.value.field == field and field in str(refused.value)


def test_public_and_other_user_schemas_stay_allowed():
    assert from_entry(entry(schema="public")).table_schema == "public"
    assert from_entry(entry(schema="forcebridge_data")).table_schema == "forcebridge_data"


def test_polling_options_from_an_export_keep_working():
    config = {"fields": {"Name": {"type": "string"}}, "sf_polling_seconds": "600", "keep_deleted_rows": False,
              "sf_delete_detection": "getDeleted", "sf_notify_enabled": False}
    assert from_entry(entry(config=config)).extra["sf_polling_seconds"] == "600"


# -- PATCH: exactly what creation accepts ---------------------------------------------------------------------

def read_only():
    return from_entry(entry(config={"fields": {"Name": {"type": "string", "length": 80}}, "access": "read_only",
                                    "sf_polling_seconds": 600}))


@pytest.mark.parametrize("body,field", [
    ({"config": {"access": "read-only"}}, "config.access"),
    ({"config": "read_write"}, "config"),
    ({"config": {"fields": ["Name"]}}, "config.fields"),
    ({"config": {"fields": {}}}, "config.fields"),
    ({"active": "false"}, "active"),
    ({"active": {"yes": True}}, "active"),
    ({"direction": None}, "direction"),
    ({"direction": "sideways"}, "direction"),
    ({"conflict_rule": None}, "conflict_rule"),
    ({"config": {"upsert_field": "Nope__c"}}, "config.upsert_field"),
    ({"config": {"keep_deleted_rows": "no"}}, "config.keep_deleted_rows"),
    ({"table": "other"}, "table"),
    ({"schema": "forcebridge"}, "schema"),
    ({"object_name": "Account"}, "object_name"),
    ({"acitve": False}, "acitve"),
    ({"direction": "bidirectional", "config": {"access": "read_only"}}, "direction"),
])
def test_patch_refuses_what_creation_would_refuse(body, field):
    with pytest.raises(MappingError) as refused:
        patched(read_only(), body)
    assert refused.value.field == field


def test_patch_changes_what_it_names_and_keeps_the_rest():
    m = read_only()
    assert patched(m, {"config": {"access": "read_write"}}).direction == "bidirectional"
    assert patched(m, {"direction": "pg_to_sf"}).direction == "pg_to_sf"
    assert patched(m, {"active": False}).active is False
    assert patched(m, {"config": {"sf_polling_seconds": 0}}).extra["sf_polling_seconds"] == 0
    unchanged = patched(m, {})
    assert unchanged == m
    # a GET's body sent back as it is changes nothing
    assert patched(m, to_entry(m)) == m


def test_sf_source_is_outbound_message_by_default_or_cdc_and_anything_else_is_refused():
    from core.loading import poll_settings
    from core.mapping import sf_source

    base = {"object_name": "Contact", "config": {"access": "read_only", "fields": {"LastName": {"type": "string"}}}}
    m = from_entry(base)
    assert sf_source(m) == "outbound_message" and poll_settings(m).seconds == 600
    cdc = from_entry({**base, "config": {**base["config"], "sf_source": "cdc"}})
    assert sf_source(cdc) == "cdc" and cdc.extra["sf_source"] == "cdc"
    assert poll_settings(cdc).seconds == 3600                          # the backstop: once an hour
    assert to_entry(cdc)["config"]["sf_source"] == "cdc"
    explicit = from_entry({**base, "config": {**base["config"], "sf_source": "cdc", "sf_polling_seconds": 120}})
    assert poll_settings(explicit).seconds == 120
    for bad in ("CDC", "streaming", 1, None):
        with pytest.raises(MappingError) as err:
            from_entry({**base, "config": {**base["config"], "sf_source": bad}})
        assert err.value.field == "config.sf_source"
    with pytest.raises(MappingError) as err:
        from_entry({**base, "config": {**base["config"], "access": "write_only", "sf_source": "cdc"}}
                   | {"direction": "pg_to_sf"})
    assert err.value.field in ("config.sf_source", "direction", "config.access")
