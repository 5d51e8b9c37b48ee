"""Field values checked and converted the way Salesforce does on insert/update, with its exact errors (pure)."""
import datetime as dt
import math

from emulator import ids
from emulator.errors import SalesforceError
from emulator.schema import SObjectType
from emulator.soql import format_datetime, parse_datetime

_TEXT = {"string", "textarea", "picklist", "multipicklist", "email", "phone", "url", "combobox", "encryptedstring"}
_NUMBER = {"double", "currency", "percent"}


def _bad(code: str, message: str, fields=()) -> SalesforceError:
    return SalesforceError(400, code, message, fields)


def _type_error(field: dict, value) -> SalesforceError:
    shown = str(value).lower() if isinstance(value, bool) else value
    return _bad("INVALID_TYPE_ON_FIELD_IN_RECORD", f"{field['label']}: value not of required type: {shown}",
                [field["name"]])


def convert(field: dict, value):
    """A JSON value for `field` as stored in SQLite; SalesforceError if Salesforce would reject its type."""
    if value is None:
        return None
    kind = field["type"]
    if isinstance(value, (dict, list)):
        raise _type_error(field, value)
    if kind in _TEXT:
        if isinstance(value, bool):
            value = "true" if value else "false"
        text = str(value)
        return None if text == "" else text     # Salesforce stores an empty text value as null
    if kind in ("id", "reference"):
        if value == "":
            return None
        if not isinstance(value, str):
            raise _type_error(field, value)
        try:
            full = ids.to18(value)
        except ValueError:
            raise _bad("MALFORMED_ID", f"{field['label']}: id value of incorrect type: {value}",
                       [field["name"]]) from None
        return full
    if kind == "boolean":
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return int(value.lower() == "true")
        raise _type_error(field, value)
    if kind in _NUMBER or kind in ("int", "long"):
        if isinstance(value, bool):
            raise _type_error(field, value)
        if value == "":
            return None
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise _type_error(field, value) from None
        if math.isnan(number) or math.isinf(number):
            raise _type_error(field, value)
        if kind in ("int", "long"):
            if not number.is_integer():
                raise _type_error(field, value)
            digits = field.get("digits") or 18
            if abs(number) >= 10 ** digits:
                raise _out_of_range(field, value)
            return int(number)
        scale = field.get("scale") or 0
        precision = field.get("precision") or 18
        if abs(number) >= 10 ** (precision - scale):
            raise _out_of_range(field, value)
        return round(number, scale)
    if kind == "date":
        if not isinstance(value, str) or value == "":
            if value == "":
                return None
            raise _type_error(field, value)
        try:
            return dt.date.fromisoformat(value[:10]).isoformat()
        except ValueError:
            raise _type_error(field, value) from None
    if kind == "datetime":
        if not isinstance(value, str):
            raise _type_error(field, value)
        if value == "":
            return None
        try:
            if len(value) == 10:
                return format_datetime(dt.datetime.fromisoformat(value).replace(tzinfo=dt.timezone.utc))
            return format_datetime(parse_datetime(value))
        except ValueError:
            raise _type_error(field, value) from None
    return value


def _out_of_range(field: dict, value) -> SalesforceError:
    return _bad("NUMBER_OUTSIDE_VALID_RANGE", f"{field['label']}: value outside of valid range on numeric field: "
                f"{value}", [field["name"]])


def check(sobject: SObjectType, values: dict, *, creating: bool, types: dict | None = None):
    """Validate a create/update body. Returns (stored values by canonical field name, parent lookups).

    Parent lookups are relationship-by-external-id entries like {"Account": {"External_Id__c": "A-1"}},
    returned as {reference field name: (target type name, external id field, value)} for the store to resolve.
    """
    stored, lookups, locked = {}, {}, []
    fields = {}      # the describe of each stored field, looked up once (a Collections call checks 200 bodies)
    for key, value in values.items():
        if key == "attributes":
            continue
        field = sobject.field(key)
        if field is None:
            rel = sobject.relationship(key)
            if rel is not None and isinstance(value, dict):
                lookups[rel["name"]] = _lookup(rel, value, types)
                continue
            raise _bad("INVALID_FIELD", f"No such column '{key}' on sobject of type {sobject.name}")
        if field["name"] == "Id":
            if creating:
                raise _bad("INVALID_FIELD_FOR_INSERT_UPDATE", "cannot specify Id in an insert call", ["Id"])
            continue
        stored[field["name"]] = convert(field, value)
        fields[field["name"]] = field
        if not field["createable" if creating else "updateable"]:
            locked.append(field["name"])
    if locked:
        raise _bad("INVALID_FIELD_FOR_INSERT_UPDATE",
                   f"Unable to create/update fields: {', '.join(locked)}. Please check the security settings of this "
                   "field and verify that it is read/write for your profile or permission set.", locked)
    for name, value in stored.items():
        field = fields[name]
        if field["type"] == "reference" and value is not None:
            prefixes = _prefixes(field, types)
            if prefixes and value[:3] not in prefixes:
                raise _bad("MALFORMED_ID", f"{field['label']}: id value of incorrect type: {values_get(values, name)}",
                           [name])
    if creating:
        missing = [name for name in sobject.required if stored.get(name) is None and name not in lookups]
    else:
        missing = [name for name in sobject.required if name in stored and stored[name] is None]
    if missing:
        raise _bad("REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]", missing)
    for name, value in stored.items():
        if value is None:
            continue
        field = fields[name]
        if field["type"] in _TEXT and field.get("length") and len(value) > field["length"]:
            raise _bad("STRING_TOO_LONG", f"{field['label']}: data value too large: {value} "
                       f"(max length={field['length']})", [name])
        if field["type"] == "picklist" and field.get("restrictedPicklist"):
            allowed = {p["value"] for p in field["picklistValues"] if p.get("active", True)}
            if value not in allowed:
                raise _bad("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                           f"{field['label']}: bad value for restricted picklist field: {value}", [name])
    return stored, lookups


def values_get(values: dict, name: str):
    for key, value in values.items():
        if key.lower() == name.lower():
            return value
    return None


def _prefixes(field: dict, types: dict | None) -> set[str]:
    if not types:
        return set()
    return {types[name.lower()].key_prefix for name in field["referenceTo"] if name.lower() in types}


def _lookup(rel: dict, value: dict, types: dict | None):
    target_name = rel["referenceTo"][0]
    target = (types or {}).get(target_name.lower())
    keys = [k for k in value if k != "attributes"]
    if target is None or len(keys) != 1:
        raise _bad("INVALID_FIELD", f"No such column '{rel['relationshipName']}' on sobject of type "
                   f"{target_name}")
    ext = target.field(keys[0])
    if ext is None or not (ext.get("externalId") or ext.get("idLookup")):
        raise _bad("INVALID_FIELD", f"Field name provided, {keys[0]} is not an External ID or indexed field for "
                   f"{target.name}")
    return target.name, ext["name"], value[keys[0]]


def defaults(sobject: SObjectType) -> dict:
    """Values an insert gets when the body leaves the field out: boolean and picklist defaults."""
    return dict(sobject.insert_defaults)


_TYPE_NAMES = {"double": "double", "currency": "double", "percent": "double", "int": "int", "long": "long",
               "boolean": "boolean", "date": "date", "datetime": "datetime"}


def _token(value) -> str:
    """The JSON token a value was read from, as the REST API's parser names it."""
    if isinstance(value, bool):
        return "VALUE_TRUE" if value else "VALUE_FALSE"
    if isinstance(value, int):
        return "VALUE_NUMBER_INT"
    if isinstance(value, float):
        return "VALUE_NUMBER_FLOAT"
    if isinstance(value, dict):
        return "START_OBJECT"
    if isinstance(value, list):
        return "START_ARRAY"
    return "VALUE_STRING"


def _deserializes(field: dict, value) -> bool:
    """False when the REST API's JSON reader cannot turn `value` into the field's type at all."""
    if value is None:
        return True
    if isinstance(value, (dict, list)):
        return False
    kind = field["type"]
    if kind in _NUMBER or kind in ("int", "long"):
        if isinstance(value, bool):
            return False
        if isinstance(value, str):
            if value.strip() == "":
                return True
            try:
                number = float(value)
            except ValueError:
                return False
            return not (math.isnan(number) or math.isinf(number))
        return True
    if kind == "boolean":
        return isinstance(value, bool) or (isinstance(value, str) and value.lower() in ("true", "false", ""))
    if kind in ("date", "datetime"):
        if not isinstance(value, str):
            return False
        try:
            convert(field, value)
        except SalesforceError:
            return False
    return True


def check_json_types(sobject: SObjectType, values: dict) -> None:
    """The checks the REST API makes while it reads a JSON body, before any record is processed: a value
    that cannot be read as its field's type (a string in a number field, an unparseable date) and a field
    the object does not have. Either fails the whole request (JSON_PARSER_ERROR / INVALID_FIELD), inside
    an sObject Collections call too; per-record checks (`check`) come later."""
    for key, value in values.items():
        if key == "attributes":
            continue
        field = sobject.field(key)
        if field is None:
            if sobject.relationship(key) is not None and isinstance(value, dict):
                continue
            raise _bad("INVALID_FIELD", f"No such column '{key}' on sobject of type {sobject.name}", None)
        if not _deserializes(field, value):
            shown = json_text(value)
            raise SalesforceError(400, "JSON_PARSER_ERROR", f"Cannot deserialize instance of "
                                  f"{_TYPE_NAMES.get(field['type'], 'string')} from {_token(value)} value {shown} "
                                  f"or request may be missing a required field", None)


def json_text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return "[" if isinstance(value, list) else "{"
    text = str(value)
    return text if len(text) <= 100 else text[:100] + "..."
