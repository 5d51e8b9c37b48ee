"""The validation-rule formula language of the emulator (emulator/formula.py) and the rules' config checks."""
import pytest

from emulator.formula import FormulaError, parse
from emulator.org_rules import allow_save_from, compile_rules


@pytest.mark.parametrize("text, record, expected", [
    ("Amount < 0", {"Amount": -1}, True),
    ("Amount < 0", {"Amount": 5}, False),
    ("Amount < 0", {"Amount": None}, False),                  # a blank compares false
    ("amount >= 10 && Name = 'x'", {"Amount": 10, "Name": "x"}, True),
    ("AND(Amount > 1, OR(Name = 'a', Name = \"b\"))", {"Amount": 2, "Name": "b"}, True),
    ("NOT(ISBLANK(Name))", {"Name": ""}, False),
    ("ISBLANK(Name)", {"Name": None}, True),
    ("LEN(Name) > 3", {"Name": "abcd"}, True),
    ("LEN(Name) > 3", {}, False),
    ("REGEX(Phone, '[0-9]{3}-[0-9]{4}')", {"Phone": "555-1234"}, True),
    ("REGEX(Phone, '[0-9]{3}')", {"Phone": "5551"}, False),     # the whole text must match
    ("NOT(REGEX(Email, '.+@.+'))", {"Email": "nobody"}, True),
    ("Amount * 2 - 1 = 9", {"Amount": 5}, True),
    ("!IsActive", {"IsActive": False}, True),
    ("IsActive = TRUE", {"IsActive": True}, True),
    ("Name != NULL", {"Name": "x"}, True),
])
def test_evaluates(text, record, expected):
    assert parse(text).evaluate(record) is expected


def test_ischanged_and_isnew_look_at_the_stored_record():
    formula = parse("ISCHANGED(Name) && NOT(ISNEW())")
    assert formula.evaluate({"Name": "b"}, {"Name": "a"}) is True
    assert formula.evaluate({"Name": "a"}, {"Name": "a"}) is False
    assert formula.evaluate({"Name": "b"}, None) is False          # an insert changes nothing
    assert parse("PRIORVALUE(Name) = 'a'").evaluate({"Name": "b"}, {"Name": "a"}) is True


@pytest.mark.parametrize("text, words", [
    ("", "required"), ("Amount <", "ends early"), ("FOO(Name)", "unknown function"),
    ("LEN(a, b)", "takes 1"), ("ISCHANGED('x')", "field name"), ("REGEX(Name, '(')", "does not compile"),
    ("Amount ; 1", "unexpected character"), ("(Amount > 1", "expected"),
])
def test_bad_formulas_say_what_is_wrong(text, words):
    with pytest.raises(FormulaError, match=words):
        parse(text)


def test_fields_read():
    assert parse("ISBLANK(Name) || ISCHANGED(AnnualRevenue)").fields() == {"name", "annualrevenue"}


@pytest.mark.parametrize("config, words", [
    ([], "keyed by sObject"),
    ({"Account": {"validationRules": [{"name": "x", "message": "m"}]}}, r"validationRules\[0\].condition"),
    ({"Account": {"validationRules": [{"name": "x", "message": "m", "condition": "Name <"}]}}, "ends early"),
    ({"Account": {"duplicateRules": [{"name": "d", "fields": []}]}}, "non-empty list"),
    ({"Account": {"lockRate": 2}}, "from 0 to 1"),
    ({"Account": {"surprise": 1}}, "an object with"),
])
def test_bad_rule_config_is_refused_naming_the_part(config, words):
    with pytest.raises(ValueError, match=words):
        compile_rules(config)


def test_duplicate_rule_header():
    assert allow_save_from("allowSave=true, includeRecordDetails=true") is True
    assert allow_save_from("allowSave=false") is False
    assert allow_save_from(None) is False
