"""Salesforce Ids: checksum suffix, 15 <-> 18 conversion, validation."""
import pytest
from hypothesis import given, strategies as st

from emulator import ids

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


@pytest.mark.parametrize("id15, id18", [
    ("001D000000IRFma", "001D000000IRFmaIAH"),       # REST API guide query example
    ("001D000000IomazIAB"[:15], "001D000000IomazIAB"),
    ("003RO0000035WQg", "003RO0000035WQgYAM"),       # query paging example
    ("00Dx0000000BV7z", "00Dx0000000BV7zEAG"),
])
def test_checksum_matches_real_ids(id15, id18):
    assert ids.to18(id15) == id18
    assert ids.to15(id18) == id15


def test_eighteen_char_id_with_wrong_suffix_is_rejected():
    with pytest.raises(ValueError):
        ids.to18("001D000000IRFmaAAA")


@pytest.mark.parametrize("bad", ["", "001", "001D000000IRFm!", "001D000000IRFmaIAHX", None, 12])
def test_malformed_ids_are_not_valid(bad):
    assert not ids.is_valid(bad)


def test_prefix_check():
    assert ids.is_valid("001D000000IRFmaIAH", "001")
    assert not ids.is_valid("001D000000IRFmaIAH", "003")


def test_made_ids_are_valid_and_sort_in_creation_order():
    made = [ids.make_id("a0X", "5g", n) for n in (1, 61, 62, 3843, 10 ** 9)]
    assert all(ids.is_valid(i, "a0X") and len(i) == 18 for i in made)
    assert made == sorted(made)


@given(st.text(alphabet=BASE62, min_size=15, max_size=15))
def test_round_trip_for_any_15_char_id(id15):
    full = ids.to18(id15)
    assert ids.to15(full) == id15
    assert ids.to18(full) == full
