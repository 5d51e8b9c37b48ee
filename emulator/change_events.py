"""Change Data Capture as Salesforce shapes it: an Avro schema per object (derived from its describe), and
the event for each committed change, with the header's field bitmaps and compound fields.

The schema follows the published change event structure: a ChangeEventHeader record first, then the
object's fields in describe order, each optional; compound fields (a person's Name, addresses) are nested
records at the position of their first component. Id, IsDeleted, SystemModstamp and formula fields are
not in change events. Date-times go as ms since the epoch, dates as days since the epoch.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import json
from dataclasses import dataclass

import fastavro

from emulator.schema import NUMBER_TYPES, SObjectType
from emulator.soql import parse_datetime

CHANGE_TYPES = ["CREATE", "UPDATE", "DELETE", "UNDELETE", "GAP_CREATE", "GAP_UPDATE", "GAP_DELETE",
                "GAP_UNDELETE", "GAP_OVERFLOW", "SNAPSHOT"]
KIND_TO_TYPE = {"created": "CREATE", "updated": "UPDATE", "deleted": "DELETE", "undeleted": "UNDELETE"}
NOT_IN_EVENTS = {"id", "isdeleted", "systemmodstamp"}
ADDRESS_PARTS = ("Street", "City", "State", "PostalCode", "Country", "StateCode", "CountryCode", "Latitude",
                 "Longitude", "GeocodeAccuracy")
ADDRESS_PREFIXES = ("Billing", "Shipping", "Mailing", "Other")
NAME_PARTS = ("Salutation", "FirstName", "MiddleName", "LastName", "Suffix")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)

HEADER_SCHEMA = {
    "type": "record", "name": "ChangeEventHeader", "namespace": "com.salesforce.eventbus.events", "fields": [
        {"name": "entityName", "type": "string"},
        {"name": "recordIds", "type": {"type": "array", "items": "string"}},
        {"name": "changeType", "type": {"type": "enum", "name": "ChangeType",
                                        "namespace": "com.salesforce.eventbus.events", "symbols": CHANGE_TYPES}},
        {"name": "changeOrigin", "type": "string"},
        {"name": "transactionKey", "type": "string"},
        {"name": "sequenceNumber", "type": "int"},
        {"name": "commitTimestamp", "type": "long"},
        {"name": "commitNumber", "type": "long"},
        {"name": "commitUser", "type": "string"},
        {"name": "nulledFields", "type": {"type": "array", "items": "string"}},
        {"name": "diffFields", "type": {"type": "array", "items": "string"}},
        {"name": "changedFields", "type": {"type": "array", "items": "string"}},
    ], "doc": "Data:ChangeEventHeader"}


def event_name(sobject: str) -> str:
    """AccountChangeEvent; a custom object's __c becomes __: Invoice__c -> Invoice__ChangeEvent."""
    return (sobject[:-1] if sobject.endswith("__c") else sobject) + "ChangeEvent"


def topic_name(sobject: str) -> str:
    return "/data/" + event_name(sobject)


def _avro_type(field: dict):
    kind = field["type"]
    if kind == "boolean":
        return "boolean"
    if kind == "int":
        return "int"
    if kind == "long":
        return "long"
    if kind in NUMBER_TYPES:
        return "double"
    if kind == "date":
        return "int"
    if kind in ("datetime", "time"):
        return "long"
    return "string"


def _compound_of(sobj: SObjectType, field: dict) -> tuple[str, str] | None:
    """(compound field, component) when `field` is part of a compound field, else None."""
    name = field["name"]
    if field.get("compoundFieldName"):
        parent = field["compoundFieldName"]
        if parent == "Name":
            return parent, name
        prefix = parent[:-len("Address")] if parent.endswith("Address") else ""
        return parent, name[len(prefix):] if name.startswith(prefix) else name
    if sobj.has_compound_name() and name in NAME_PARTS:
        return "Name", name
    for prefix in ADDRESS_PREFIXES:
        if name.startswith(prefix) and name[len(prefix):] in ADDRESS_PARTS:
            return prefix + "Address", name[len(prefix):]
    return None


@dataclass(frozen=True)
class Slot:
    """Where a describe field lives in the event: top-level position, and position inside its compound."""
    top: int
    nested: int | None = None


class EventSchema:
    """One object's change event schema: the Avro JSON, its id, and each field's slot."""

    def __init__(self, sobj: SObjectType):
        self.sobject = sobj.name
        self.fields: list[dict] = [{"name": "ChangeEventHeader", "type": HEADER_SCHEMA,
                                    "doc": "Data:ChangeEventHeader"}]
        self.slots: dict[str, Slot] = {}
        self.types: dict[str, str] = {}        # describe field -> Salesforce type
        compounds: dict[str, dict] = {}
        for field in sobj.describe["fields"]:
            name = field["name"]
            if name.lower() in NOT_IN_EVENTS or field.get("calculated") or field["type"] in ("address", "location"):
                continue
            if name == "Name" and sobj.has_compound_name():
                continue                      # the full name: its parts make the Name compound field
            self.types[name] = field["type"]
            avro = ["null", _avro_type(field)]
            compound = _compound_of(sobj, field)
            if compound is None:
                self.slots[name] = Slot(len(self.fields))
                self.fields.append({"name": name, "type": avro, "doc": f"Data:{field['type']}", "default": None})
                continue
            parent, part = compound
            record = compounds.get(parent)
            if record is None:
                record = compounds[parent] = {"type": "record", "name": parent, "fields": []}
                self.fields.append({"name": parent, "type": ["null", record], "doc": f"Data:Compound:{parent}",
                                    "default": None})
            position = next(i for i, f in enumerate(self.fields) if f["name"] == parent)
            self.slots[name] = Slot(position, len(record["fields"]))
            record["fields"].append({"name": part, "type": avro, "default": None})
        self.schema = {"type": "record", "name": event_name(sobj.name), "namespace": "com.sforce.eventbus",
                       "fields": self.fields}
        self.json = json.dumps(self.schema, separators=(",", ":"))
        digest = hashlib.sha256(self.json.encode()).digest()
        self.schema_id = base64.urlsafe_b64encode(digest[:16]).decode().rstrip("=")
        self.parsed = fastavro.parse_schema(self.schema)

    # ------------------------------------------------------------------ bitmaps

    def bitmap(self, names) -> list[str]:
        """Field names -> ["0x<top-level bitmap>", "<pos>-0x<components>", ...] (empty list for no fields)."""
        top = 0
        nested: dict[int, int] = {}
        for name in names:
            slot = self.slots.get(name)
            if slot is None:
                continue
            top |= 1 << slot.top
            if slot.nested is not None:
                nested[slot.top] = nested.get(slot.top, 0) | 1 << slot.nested
        if not top:
            return []
        return [f"0x{top:X}"] + [f"{position}-0x{bits:X}" for position, bits in sorted(nested.items())]

    # ------------------------------------------------------------------ values

    def avro_value(self, name: str, value):
        """A value as the store keeps it (or as REST JSON) -> the Avro value of the field."""
        if value is None:
            return None
        kind = self.types[name]
        if kind == "boolean":
            return bool(value)
        if kind in ("int", "long"):
            return int(value)
        if kind in NUMBER_TYPES:
            return float(value)
        if kind == "datetime":
            moment = parse_datetime(value) if isinstance(value, str) else value
            return int((moment - _EPOCH).total_seconds() * 1000)
        if kind == "date":
            return (dt.date.fromisoformat(str(value)[:10]) - _EPOCH.date()).days
        if kind == "time":
            hours, minutes, seconds = str(value).rstrip("Z").split(":")
            return int((int(hours) * 3600 + int(minutes) * 60 + float(seconds)) * 1000)
        return str(value)

    def record(self, header: dict, values: dict) -> dict:
        """The event as an Avro record: every field present, null unless in `values`."""
        record = {f["name"]: None for f in self.fields[1:]}
        record["ChangeEventHeader"] = header
        for name, value in values.items():
            slot = self.slots.get(name)
            if slot is None:
                continue
            avro = self.avro_value(name, value)
            if slot.nested is None:
                record[self.fields[slot.top]["name"]] = avro
                continue
            field = self.fields[slot.top]
            parts = record[field["name"]]
            if parts is None:
                parts = record[field["name"]] = {c["name"]: None for c in field["type"][1]["fields"]}
            parts[field["type"][1]["fields"][slot.nested]["name"]] = avro
        return record

    def encode(self, header: dict, values: dict) -> bytes:
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, self.parsed, self.record(header, values))
        return buffer.getvalue()


def event_values(kind: str, values: dict | None) -> tuple[dict, list[str], list[str]]:
    """(values the event body carries, changedFields names, nulledFields names) for a store change."""
    values = dict(values or {})
    if kind == "deleted":
        return {}, [], []
    if kind == "updated":
        values.pop("SystemModstamp", None)
        changed = [n for n in values if n.lower() not in NOT_IN_EVENTS]
        nulled = [n for n in changed if values[n] is None]
        return values, changed, nulled
    return values, [], []
