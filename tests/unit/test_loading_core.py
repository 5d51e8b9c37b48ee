"""The pure side of loads and polls: poll settings, SOQL windows, progress, Bulk error text."""
import datetime as dt

from core.convert import FieldSpec
from core.loading import bulk_error, poll_settings, progress, progress_bar, staging_columns
from core.soql import changed_since, records as load_soql
from core.sources import rest_fields as record_fields
from core.mapping import Mapping


def mapping(**extra):
    return Mapping(object_name="Account", table_schema="salesforce", table_name="account", direction="sf_to_pg",
                   fields=(FieldSpec("Name", "string", 255), FieldSpec("AnnualRevenue", "currency")), extra=extra)


def test_poll_settings_follow_heroku_connect_names_and_limits():
    assert poll_settings(mapping()).seconds == 600
    assert poll_settings(mapping(sf_polling_seconds=10)).seconds == 60          # at least a minute
    assert poll_settings(mapping(sf_polling_seconds=0)).seconds == 0            # off
    assert poll_settings(mapping(sf_polling_seconds=False)).seconds == 0
    assert poll_settings(mapping(sf_polling_seconds="900")).seconds == 900
    assert poll_settings(mapping()).delete_mode == "queryAll"
    chosen = poll_settings(mapping(sf_delete_detection="getDeleted", keep_deleted_rows=True))
    assert (chosen.delete_mode, chosen.keep_deleted) == ("getDeleted", True)
    assert poll_settings(mapping(sf_delete_detection="nonsense")).delete_mode == "queryAll"
    assert poll_settings(mapping(keep_deleted_rows=True)).keep_deleted
    # stored before values were checked: "false" is not true, Infinity is no interval
    assert not poll_settings(mapping(keep_deleted_rows="false")).keep_deleted
    assert poll_settings(mapping(sf_polling_seconds=float("inf"))).seconds == 600


def test_soql_selects_system_fields_first_and_polls_behind_the_watermark():
    m = mapping()
    assert load_soql(m) == "SELECT Id, SystemModstamp, IsDeleted, Name, AnnualRevenue FROM Account"
    assert staging_columns(m) == ["sfid", "systemmodstamp", "isdeleted", "name", "annualrevenue"]
    mark = dt.datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=dt.timezone.utc)
    assert changed_since(m, mark).endswith("WHERE SystemModstamp > 2026-01-02T03:03:05+00:00 ORDER BY SystemModstamp")
    assert "WHERE" not in changed_since(m, None)


def test_progress_rate_eta_and_bar():
    p = progress(250_000, 1_000_000, 5.0)
    assert (p.rate, p.eta_seconds, p.fraction) == (50_000, 15.0, 0.25)
    bar = progress_bar(p, width=20)
    assert bar.startswith("[#####---------------]") and "250,000/1,000,000" in bar and "ETA 15s" in bar
    assert progress(0, None, 0).as_dict()["percent"] is None
    assert progress(0, 0, 1).as_dict()["percent"] == 100.0


def test_bulk_error_and_rest_values_take_the_shapes_the_sync_uses():
    assert bulk_error("REQUIRED_FIELD_MISSING:Required fields are missing: [Name]:Name --") == {
        "statusCode": "REQUIRED_FIELD_MISSING", "message": "Required fields are missing: [Name]", "fields": ["Name"]}
    assert record_fields({"attributes": {}, "Id": "001", "IsDeleted": False, "AnnualRevenue": 12.5, "Name": None}) == {
        "Id": "001", "IsDeleted": "false", "AnnualRevenue": "12.5", "Name": None}
