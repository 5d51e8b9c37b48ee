"""Salesforce field types: the Postgres column type for each, and text <-> Python value conversion."""
from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation


class ConversionError(ValueError):
    def __init__(self, field: str, value: str, reason: str):
        shown = value if len(value) <= 80 else f"{value[:60]}... ({len(value)} characters)"
        super().__init__(f"{field}: cannot convert {shown!r}: {reason}")
        self.field, self.value, self.reason = field, value, reason


@dataclass(frozen=True)
class FieldSpec:
    """One mapped Salesforce field as a mapping stores it."""
    name: str            # Salesforce API name, e.g. "Amount"
    sf_type: str         # describe type, e.g. "currency"
    length: int | None = None
    # who owns the field's value (core.mapping.OWNERS): "both", "salesforce" (Postgres edits are never sent and
    # are overwritten) or "postgres" (Salesforce's changes never overwrite a stored row's value)
    owner: str = "both"

    @property
    def column(self) -> str:
        return self.name.lower()


# Salesforce describe type -> Postgres column type, as Heroku Connect creates them (docs/field-types.md):
# datetimes are `timestamp without time zone` holding UTC, currency/double/percent `double precision`.
_TEXT_TYPES = {"string", "textarea", "picklist", "multipicklist", "combobox", "phone", "email",
               "url", "encryptedstring"}
_PG_TYPES = {
    "id": "varchar(18)", "reference": "varchar(18)",
    "boolean": "boolean",
    "int": "integer", "long": "bigint",
    "double": "double precision", "percent": "double precision",
    "currency": "double precision",
    "date": "date", "datetime": "timestamp without time zone", "time": "time",
    "base64": "text", "anytype": "text",
}
SUPPORTED_TYPES = frozenset(_TEXT_TYPES | _PG_TYPES.keys())
# Heroku Connect keeps short text areas as varchar(n) (User.AboutMe, 1000) and long ones as text
# (Account.Description, 32000; custom long text areas): longer than this is a long text area here.
LONG_TEXTAREA = 4096


def pg_type(spec: FieldSpec) -> str:
    t = spec.sf_type.lower()
    if t in _TEXT_TYPES:
        # Salesforce counts characters; varchar(n) does too. Long text areas stay unbounded.
        if t == "textarea" and (spec.length or 0) > LONG_TEXTAREA:
            return "text"
        return f"varchar({spec.length})" if spec.length and spec.length <= 10485760 else "text"
    try:
        return _PG_TYPES[t]
    except KeyError:
        raise ValueError(f"field {spec.name}: Salesforce type {spec.sf_type!r} is not supported") from None


def pg_array_type(spec: FieldSpec) -> str:
    """The array type used to pass a whole batch of one column in a single parameter."""
    base = pg_type(spec)
    return "text[]" if base.startswith("varchar") else base + "[]"


_TIME_RE = re.compile(r"^(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6})\d*)?)?(Z|[+-]\d{2}:?\d{2})?$")
_INT_RE = re.compile(r"^[+-]?\d+$")


def parse_datetime(text: str) -> dt.datetime:
    """ISO 8601 as Salesforce sends it (2020-05-08T13:40:22.000Z, or with an offset); always aware."""
    s = text.strip()
    if len(s) > MAX_SCALAR_CHARS:
        raise ValueError(f"longer than {MAX_SCALAR_CHARS} characters")
    if s.endswith("Z") or s.endswith("z"):
        s = s[:-1] + "+00:00"
    # Python < 3.11 rejected "+0000"; normalise it so both offset forms work.
    m = re.match(r"^(.*[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)([+-])(\d{2})(\d{2})$", s)
    if m:
        s = f"{m.group(1)}{m.group(2)}{m.group(3)}:{m.group(4)}"
    value = dt.datetime.fromisoformat(s)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)  # Salesforce datetimes are UTC
    return value


def utc_naive(value: dt.datetime | None) -> dt.datetime | None:
    """The value a `timestamp without time zone` column holds for a moment: UTC wall time, no tzinfo
    (naive values are taken as UTC already)."""
    if value is None or value.tzinfo is None:
        return value
    return value.astimezone(dt.timezone.utc).replace(tzinfo=None)


def _to_time(text: str) -> dt.time:
    m = _TIME_RE.match(text.strip())
    if not m:
        raise ValueError("not a time (HH:MM:SS.sssZ)")
    h, mi, s, frac, _tz = m.groups()
    return dt.time(int(h), int(mi), int(s or 0), int((frac or "0").ljust(6, "0")))


def _to_bool(text: str) -> bool:
    t = text.strip().lower()
    if t in ("true", "1"):
        return True
    if t in ("false", "0"):
        return False
    raise ValueError("not a boolean (true/false)")


# Salesforce writes numbers, dates and times in a few dozen characters; anything longer is refused before any
# arithmetic, so no spelling of a value (a million digits, an exponent of a billion) costs more than a glance.
MAX_SCALAR_CHARS = 100
# What the columns hold (docs/field-types.md): integer, bigint and double precision. A value outside them
# fails its own notification here, not in Postgres.
_INT_RANGE = {"int": (-2**31, 2**31 - 1), "long": (-2**63, 2**63 - 1)}


def _to_int(text: str, sf_type: str = "long") -> int:
    t = text.strip()
    lo, hi = _INT_RANGE[sf_type]
    if _INT_RE.match(t):
        value = int(t)
    else:
        # Salesforce writes some integers as 3.0; the range is checked on the Decimal, before int() could
        # build a number of a billion digits out of 1e999999999
        d = _finite_decimal(t)
        if not lo <= d <= hi:
            raise ValueError(f"out of range for {sf_type} ({lo} to {hi})")
        if d != d.to_integral_value():
            raise ValueError("not a whole number")
        value = int(d)
    if not lo <= value <= hi:
        raise ValueError(f"out of range for {sf_type} ({lo} to {hi})")
    return value


def _finite_decimal(t: str) -> Decimal:
    d = Decimal(t)
    if not d.is_finite():
        raise ValueError("not a finite number")
    return d


def _to_float(text: str) -> float:
    d = _finite_decimal(text.strip())
    value = float(d)
    # 1e400 would be stored as Infinity, 1e-400 as 0: neither is the value Salesforce sent
    if math.isinf(value) or (value == 0.0 and d != 0):
        raise ValueError("out of range for double precision")
    return value


_FROM_TEXT = {
    "boolean": _to_bool,
    "int": lambda t: _to_int(t, "int"), "long": lambda t: _to_int(t, "long"),
    "double": _to_float, "percent": _to_float, "currency": _to_float,
    "date": lambda t: dt.date.fromisoformat(t.strip()),
    "datetime": lambda t: utc_naive(parse_datetime(t)),   # the column holds UTC without a zone
    "time": _to_time,
}


def from_salesforce(spec: FieldSpec, text: str | None):
    """Convert one value as Salesforce sends it in XML or CSV into the Python value for its column."""
    if text is None:
        return None
    conv = _FROM_TEXT.get(spec.sf_type.lower())
    if conv is None:
        if spec.sf_type.lower() not in SUPPORTED_TYPES:
            raise ConversionError(spec.name, text, f"unsupported Salesforce type {spec.sf_type}")
        if spec.sf_type.lower() in ("id", "reference"):
            return text.strip() or None
        return text
    if len(text) > MAX_SCALAR_CHARS and len(text.strip()) > MAX_SCALAR_CHARS:
        raise ConversionError(spec.name, text, f"longer than {MAX_SCALAR_CHARS} characters")
    if not text.strip():
        return None  # an empty numeric/date element carries no value
    try:
        return conv(text)
    except (ValueError, InvalidOperation, ArithmeticError) as exc:
        raise ConversionError(spec.name, text, str(exc) or type(exc).__name__) from None


def to_salesforce(spec: FieldSpec, value):
    """Convert a Postgres value into the JSON value the Salesforce REST API expects."""
    if value is None:
        return None
    t = spec.sf_type.lower()
    if t == "datetime":
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        v = value.astimezone(dt.timezone.utc)
        return v.strftime("%Y-%m-%dT%H:%M:%S.") + f"{v.microsecond // 1000:03d}Z"
    if t == "date":
        return value.isoformat()
    if t == "time":
        return value.strftime("%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    if t == "currency":
        return float(value) if isinstance(value, Decimal) else value
    if t in ("int", "long"):
        return int(value)
    return value
