import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import given, strategies as st

from core.convert import ConversionError, FieldSpec, from_salesforce, pg_type, to_salesforce


def spec(t, length=None):
    return FieldSpec("F__c", t, length)


@pytest.mark.parametrize("t,text,value", [
    ("boolean", "true", True), ("boolean", "false", False),
    ("int", "42", 42), ("int", "3.0", 3), ("double", "45000.0", 45000.0), ("percent", "80.0", 80.0),
    ("currency", "5968.68", 5968.68),
    ("date", "2020-07-11", dt.date(2020, 7, 11)),
    # timestamp without time zone holding UTC, as Heroku Connect stores datetimes
    ("datetime", "2020-05-08T13:40:22.000Z", dt.datetime(2020, 5, 8, 13, 40, 22)),
    ("datetime", "2020-05-08T15:40:22.000+02:00", dt.datetime(2020, 5, 8, 13, 40, 22)),
    ("datetime", "2020-05-08T15:40:22+0200", dt.datetime(2020, 5, 8, 13, 40, 22)),
    ("time", "13:40:22.500Z", dt.time(13, 40, 22, 500000)),
    ("multipicklist", "a;b", "a;b"), ("picklist", "Hot", "Hot"), ("reference", "0015w00002BFDeLAAX", "0015w00002BFDeLAAX"),
    ("string", "", ""), ("int", "", None), ("date", None, None),
])
def test_from_salesforce(t, text, value):
    assert from_salesforce(spec(t), text) == value


@pytest.mark.parametrize("t,text", [("int", "abc"), ("int", "3.5"), ("boolean", "yes"), ("date", "2020-13-01"),
                                    ("datetime", "yesterday"), ("currency", "NaN"), ("time", "25")])
def test_bad_values_say_which_field_and_value(t, text):
    with pytest.raises(ConversionError) as info:
        from_salesforce(spec(t), text)
    assert "F__c" in str(info.value) and text in str(info.value)


def test_pg_types():
    assert pg_type(spec("string", 80)) == "varchar(80)"
    assert pg_type(spec("textarea")) == "text"
    assert pg_type(spec("textarea", 1000)) == "varchar(1000)"      # User.AboutMe in a Heroku Connect schema
    assert pg_type(spec("textarea", 32000)) == "text"              # Account.Description
    assert pg_type(spec("currency")) == pg_type(spec("double")) == pg_type(spec("percent")) == "double precision"
    assert pg_type(spec("datetime")) == "timestamp without time zone"
    assert pg_type(spec("int")) == "integer"
    assert pg_type(spec("reference")) == pg_type(spec("id")) == "varchar(18)"
    with pytest.raises(ValueError):
        pg_type(spec("address"))


@given(st.datetimes(min_value=dt.datetime(1700, 1, 1), max_value=dt.datetime(4000, 12, 31),
                    timezones=st.just(dt.timezone.utc)).map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000)))
def test_datetime_round_trips(value):
    back = from_salesforce(spec("datetime"), to_salesforce(spec("datetime"), value))
    assert back.tzinfo is None and back == value.replace(tzinfo=None)
    assert to_salesforce(spec("datetime"), back) == to_salesforce(spec("datetime"), value)


@given(st.dates())
def test_date_round_trips(value):
    assert from_salesforce(spec("date"), to_salesforce(spec("date"), value)) == value


@given(st.integers(min_value=-2**31, max_value=2**31 - 1))
def test_int_round_trips(value):
    assert from_salesforce(spec("int"), str(to_salesforce(spec("int"), value))) == value


@given(st.decimals(allow_nan=False, allow_infinity=False, places=2, min_value=-10**13, max_value=10**13))
def test_currency_is_a_float_that_round_trips(value):
    # double precision like Heroku Connect: the value Salesforce sends comes back as the same JSON number
    got = from_salesforce(spec("currency"), str(value))
    assert isinstance(got, float) and Decimal(repr(to_salesforce(spec("currency"), got))) == value


@given(st.booleans())
def test_boolean_round_trips(value):
    assert from_salesforce(spec("boolean"), str(to_salesforce(spec("boolean"), value)).lower()) is value


# -- values that cannot fit their column (issue 14): refused at a glance, whatever their spelling ------------
# The timeout only turns a hang into a failure: before the fix int(Decimal("1e999999999")) ran for minutes.

POISON = [
    ("int", "1e999999999"), ("long", "1e999999999"), ("long", "-1E+999999999"), ("int", "1e-999999999"),
    ("int", "2147483648"), ("int", "-2147483649"), ("int", "2147483648.0"), ("long", "9223372036854775808"),
    ("long", "9" * 5_000_000), ("int", "0" * 200 + "1"), ("int", "1" + "0" * 4400),
    ("double", "1e400"), ("double", "-1e400"), ("percent", "1e999999999"), ("double", "1e-400"),
    ("double", "NaN"), ("double", "Infinity"), ("percent", "-inf"),
    ("currency", "1e999999999"), ("currency", "1e-999999999"), ("currency", "1e131072"), ("currency", "sNaN"),
    ("date", "2020-01-01" + " " * 10 + "x" * 5_000_000), ("datetime", "2020-01-01T" + "0" * 5_000_000),
    ("time", "1" * 5_000_000), ("boolean", "t" * 5_000_000),
]


@pytest.mark.timeout(20, method="thread")
@pytest.mark.parametrize("t,text", POISON, ids=[f"{t}:{x[:24]}({len(x)})" for t, x in POISON])
def test_a_value_that_cannot_fit_its_column_is_refused_at_once(t, text):
    with pytest.raises(ConversionError) as info:
        from_salesforce(spec(t), text)
    assert "F__c" in str(info.value)
    assert len(str(info.value)) < 300                     # the reason stays readable, never the whole value


@pytest.mark.parametrize("t,text,value", [
    ("int", "2147483647", 2**31 - 1), ("int", "-2147483648.0", -2**31), ("long", "9223372036854775807", 2**63 - 1),
    ("long", "-9.223372036854775808E18", -2**63), ("double", "1.7976931348623157E308", 1.7976931348623157e308),
    ("double", "5e-324", 5e-324), ("double", "0e-400", 0.0), ("currency", "-1.7976931348623157E308", -1.7976931348623157e308),
])
def test_values_at_the_edge_of_their_column_still_convert(t, text, value):
    assert from_salesforce(spec(t), text) == value


def test_the_case_insensitive_field_lookup_is_linear():
    """A notification naming fields in another case (UNIT__C) is matched without a scan per mapped field:
    200 mapped fields against 100,000 sent names cost one lower() per name, not 20 million."""
    from core.inbound import plan_apply
    from core.mapping import Mapping
    from core.sources import from_fields

    lowered = []

    class Name(str):
        def lower(self):
            lowered.append(1)
            return str.lower(self)

    specs = tuple(FieldSpec(f"Field{i}__c", "int") for i in range(200))
    mapping = Mapping("Thing__c", "salesforce", "thing__c", "sf_to_pg", specs, id=1)
    sent = {Name(f"OTHER{i}__C"): "1" for i in range(100_000)}
    sent.update({Name("Id"): "a00000000000001AAA", Name("FIELD7__C"): "7"})
    plan = plan_apply([from_fields("Thing__c", "a00000000000001AAA", sent, "outbound", key="n1")],
                      {"thing__c": mapping})
    assert not plan.failed and plan.batches[0].columns == (specs[7],) and plan.batches[0].values == [[7]]
    assert len(lowered) <= len(sent) + 10


def test_a_batch_reads_only_what_fits_its_byte_budget():
    from core.inbound import within_budget

    assert within_budget([10, 10, 10], 25) == 2
    assert within_budget([50, 1], 25) == 1        # one notification larger than the budget still goes alone
    assert within_budget([1, 1, 1], 100) == 3
    assert within_budget([], 100) == 0
