"""Salesforce record Ids: key prefixes, the 3-character case-checksum suffix, 15 <-> 18 conversion."""
import re

_CHECKSUM_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_ID15 = re.compile(r"^[0-9A-Za-z]{15}$")
_ID18 = re.compile(r"^[0-9A-Za-z]{15}[A-Z0-5]{3}$")

ORG_PREFIX = "00D"
USER_PREFIX = "005"


def checksum(id15: str) -> str:
    """The 3 suffix characters: one per 5-character chunk, encoding which characters are upper case."""
    suffix = ""
    for start in (0, 5, 10):
        flags = 0
        for bit, char in enumerate(id15[start:start + 5]):
            if "A" <= char <= "Z":
                flags |= 1 << bit
        suffix += _CHECKSUM_ALPHABET[flags]
    return suffix


def to18(record_id: str) -> str:
    """18-character form of a 15- or 18-character Id; ValueError if it is not a well-formed Id."""
    if _ID15.match(record_id):
        return record_id + checksum(record_id)
    if _ID18.match(record_id) and checksum(record_id[:15]) == record_id[15:]:
        return record_id
    if len(record_id) == 18 and _ID15.match(record_id[:15]):
        # Salesforce ignores the suffix's case errors only when it matches after upper-casing.
        fixed = record_id[:15] + checksum(record_id[:15])
        if fixed.upper() == record_id.upper():
            return fixed
    raise ValueError(f"malformed id {record_id}")


def to15(record_id: str) -> str:
    return to18(record_id)[:15]


def is_valid(record_id: object, prefix: str | None = None) -> bool:
    """True for a well-formed 15/18-character Id (of the given key prefix, when one is given)."""
    if not isinstance(record_id, str):
        return False
    try:
        full = to18(record_id)
    except ValueError:
        return False
    return prefix is None or full.startswith(prefix)


def encode_counter(number: int, width: int) -> str:
    """Base-62 digits of `number`, left-padded with '0' to `width` characters."""
    if number < 0:
        raise ValueError("counter must be >= 0")
    digits = ""
    while number:
        number, rest = divmod(number, 62)
        digits = _BASE62[rest] + digits
    if len(digits) > width:
        raise OverflowError("counter does not fit the Id")
    return digits.rjust(width, "0")


def make_id(prefix: str, pod: str, counter: int) -> str:
    """18-character Id from a 3-char key prefix, a 2-char pod and a per-object counter."""
    if len(prefix) != 3 or len(pod) != 2:
        raise ValueError("prefix must be 3 and pod 2 characters")
    id15 = prefix + pod + encode_counter(counter, 10)
    return id15 + checksum(id15)
