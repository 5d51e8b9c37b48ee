"""Record values in the JSON type Salesforce's describe gives each field (pure).

A mapped column can drift from its field: a text column holding a number field's values, a date kept as
text. Salesforce reads such a value while it parses the request, and one unreadable value fails the whole
call (JSON_PARSER_ERROR). Typing each record before the call turns that into one record's clear error.
"""
from __future__ import annotations

import datetime as dt
import math
import re
from decimal import Decimal

from core.convert import parse_datetime

_NUMBER = {"double", "currency", "percent"}
_INTEGER = {"int", "long"}
_TEXT = {"string", "textarea", "picklist", "multipicklist", "combobox", "phone", "email", "url",
         "encryptedstring", "id", "reference"}
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TRUE, _FALSE = {"true", "t", "1", "yes", "y", "on"}, {"false", "f", "0", "no", "n", "off"}
ERROR_CODE = "INVALID_TYPE_ON_FIELD_IN_RECORD"


class WrongType(ValueError):
    def __init__(self, field: dict, value, kind: str):
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:50] + "..."
        super().__init__(f"{field.get('label') or field['name']}: value not of required type: {shown} is not a "
                         f"{kind} as Salesforce's describe says; not sent")
        self.field = field["name"]


def fields_by_name(describe: dict | None) -> dict[str, dict]:
    return {f["name"].lower(): f for f in (describe or {}).get("fields", [])}


def typed_record(record: dict, fields: dict[str, dict]) -> tuple[dict, dict | None]:
    """(the record with each value in its field's JSON type, None) or (record, a Collections-shaped item error).
    Keys describe does not know (attributes, relationship references, unknown fields) pass unchanged."""
    out = {}
    for key, value in record.items():
        field = fields.get(key.lower()) if isinstance(key, str) else None
        if field is None or isinstance(value, dict):
            out[key] = value
            continue
        try:
            out[key] = typed_value(field, value)
        except WrongType as exc:
            return record, {"success": False, "errors": [{"statusCode": ERROR_CODE, "message": str(exc),
                                                          "fields": [exc.field]}]}
    return out, None


def typed_value(field: dict, value):
    """`value` as the JSON value Salesforce reads for `field`; WrongType when it cannot be one."""
    if value is None:
        return None
    kind = (field.get("type") or "string").lower()
    if kind in _NUMBER:
        return _number(field, value)
    if kind in _INTEGER:
        number = _number(field, value)
        if not float(number).is_integer():
            raise WrongType(field, value, "whole number")
        return int(number)
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
        raise WrongType(field, value, "boolean")
    if kind == "date":
        return _date(field, value)
    if kind == "datetime":
        return _datetime(field, value)
    if kind in _TEXT:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (int, float, Decimal)):
            return _number_text(value)
        if isinstance(value, (list, tuple)):
            if kind == "multipicklist":
                return ";".join(str(v) for v in value)
            raise WrongType(field, value, "text")
        return value
    return value


def _number(field: dict, value):
    if isinstance(value, bool):
        raise WrongType(field, value, "number")
    if isinstance(value, Decimal):
        value = float(value)
    if isinstance(value, (int, float)):
        if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
            raise WrongType(field, value, "finite number")
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(text)
        except ValueError:
            raise WrongType(field, value, "number") from None
        if math.isnan(number) or math.isinf(number):
            raise WrongType(field, value, "finite number")
        return int(number) if re.fullmatch(r"[+-]?\d+", text) else number
    raise WrongType(field, value, "number")


def _number_text(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _date(field: dict, value):
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, str):
        text = value.strip()
        try:
            if _DATE_RE.match(text):
                return dt.date.fromisoformat(text).isoformat()
            return parse_datetime(text).date().isoformat()
        except ValueError:
            raise WrongType(field, value, "date") from None
    raise WrongType(field, value, "date")


def _datetime(field: dict, value):
    if isinstance(value, str):
        text = value.strip()
        try:
            moment = (dt.datetime.fromisoformat(text).replace(tzinfo=dt.timezone.utc) if _DATE_RE.match(text)
                      else parse_datetime(text))
        except ValueError:
            raise WrongType(field, value, "date-time") from None
    elif isinstance(value, dt.datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
    else:
        raise WrongType(field, value, "date-time")
    moment = moment.astimezone(dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
