"""Change Data Capture events -> `ChangeEvent`: the ChangeEventHeader decoded against the event's Avro
schema (field bitmaps into names), compound fields flattened into the column names loads use.

Pure: takes the decoded Avro record (a dict, as fastavro returns it) and the schema (the parsed JSON that
GetSchema returns, or its `EventSchema`, which a client keeps per schema id); no I/O, no clock.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from core.convert import parse_datetime
from core.sources import SalesforceChange

OPERATIONS = {"CREATE": "create", "UPDATE": "update", "DELETE": "delete", "UNDELETE": "undelete"}
GAP_PREFIX = "GAP_"
GAP_OVERFLOW = "GAP_OVERFLOW"
HEADER = "ChangeEventHeader"
ECHO_CLIENT = "forcebridge"
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


class EventError(ValueError):
    """An event that cannot be read against its schema (the caller keeps it aside with this reason)."""


@dataclass(frozen=True, order=True)
class ChangeStamp:
    """Where a change sits in Salesforce's commit order: commits by time then commit number (SCN), changes
    inside one transaction by sequence number. Compare stamps of one org only."""
    commit_timestamp: int     # ms since the epoch
    commit_number: int
    sequence_number: int

    @property
    def committed_at(self) -> dt.datetime:
        return _EPOCH + dt.timedelta(milliseconds=self.commit_timestamp)


@dataclass(frozen=True)
class ChangeEvent:
    """One CDC event: a change to one or more records of one object in one transaction. It becomes one
    core.sources.SalesforceChange per record for the apply path (docs/architecture.md, "How CDC plugs in")."""
    object_name: str
    record_ids: tuple[str, ...]
    operation: str                 # create | update | delete | undelete | gap | gap_overflow
    fields: dict                   # column name -> Avro value, only what the event carries (see fields_of)
    nulled: frozenset              # columns the change set to null (update)
    changed: tuple                 # columns the change touched (update), flattened, in schema order
    diff: tuple                    # columns whose values came as a data diff (large text); read them again
    stamp: ChangeStamp
    transaction_key: str
    origin: str                    # changeOrigin, e.g. "com/salesforce/api/rest/62.0;client=forcebridge"
    commit_user: str
    change_type: str               # the header's value as sent: CREATE, GAP_UPDATE, GAP_OVERFLOW, ...
    replay_id: bytes | None = None
    event_id: str | None = None
    source: str = "cdc"

    @property
    def gap_operation(self) -> str | None:
        """For GAP_CREATE/GAP_UPDATE/...: the operation Salesforce could not describe (re-read the records)."""
        if self.operation != "gap":
            return None
        return OPERATIONS.get(self.change_type[len(GAP_PREFIX):])

    def is_echo(self, client: str = ECHO_CLIENT) -> bool:
        return origin_client(self.origin) == client


def origin_client(origin: str | None) -> str | None:
    """The client id in changeOrigin (`com/salesforce/api/<api>/<version>;client=<id>`), or None."""
    for part in (origin or "").split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key.strip() == "client" and value.strip():
            return value.strip()
    return None


# ------------------------------------------------------------------ schema helpers

def _value_schema(avro_type):
    """The non-null branch of an optional union (["null", X]); the type itself otherwise."""
    if isinstance(avro_type, list):
        branches = [t for t in avro_type if t != "null"]
        return branches[0] if len(branches) == 1 else avro_type
    return avro_type


def _record_fields(avro_type) -> list | None:
    value = _value_schema(avro_type)
    if isinstance(value, dict) and value.get("type") == "record":
        return value["fields"]
    return None


def _fields(schema: dict) -> list[dict]:
    if not isinstance(schema, dict) or schema.get("type") != "record" or not isinstance(schema.get("fields"), list):
        raise EventError("the event schema is not an Avro record")
    return schema["fields"]


def column_name(parent: str, child: str) -> str:
    """The column a compound field's component is loaded into (the component's own API name):
    Name.FirstName -> FirstName, BillingAddress.Street -> BillingStreet, Address.City -> City (Lead),
    Location__c.Latitude -> Location__Latitude__s (a custom geolocation field)."""
    if parent == "Name":
        return child
    if parent.endswith("Address"):
        return parent[:-len("Address")] + child
    if parent.endswith("__c"):
        return f"{parent[:-3]}__{child}__s"
    return parent + child


# ------------------------------------------------------------------ bitmaps

def _bits(hex_text: str) -> list[int]:
    """Positions of the set bits of a "0x..." bitmap: bit i (least significant first) is schema field i."""
    text = hex_text[2:] if hex_text[:2].lower() == "0x" else hex_text
    try:
        number = int(text, 16) if text else 0
    except ValueError:
        raise EventError(f"bitmap {hex_text!r} is not hexadecimal") from None
    positions, index = [], 0
    while number:
        if number & 1:
            positions.append(index)
        number >>= 1
        index += 1
    return positions


def _field_at(fields: list, position: int, bitmap: str) -> dict:
    if position >= len(fields):
        raise EventError(f"bitmap {bitmap!r} names field {position}; the schema has {len(fields)}")
    return fields[position]


def _decode_bitmap(entries, fields: list) -> list[str]:
    names: list[str] = []
    nested: dict[int, list[str]] = {}
    for entry in entries or ():
        if not isinstance(entry, str):
            raise EventError(f"bitmap entry {entry!r} is not text")
        if entry[:2].lower() == "0x":
            names.extend(_field_at(fields, i, entry)["name"] for i in _bits(entry))
        elif "-" in entry and entry.split("-", 1)[0].isdigit():
            position_text, bitmap = entry.split("-", 1)
            parent = _field_at(fields, int(position_text), entry)
            children = _record_fields(parent["type"])
            if children is None:
                raise EventError(f"bitmap {entry!r}: field {parent['name']} is not a compound field")
            nested[int(position_text)] = [f"{parent['name']}.{_field_at(children, i, entry)['name']}"
                                          for i in _bits(bitmap)]
        else:
            names.append(entry)
    if not nested:
        return names
    result = []
    for name in names:
        position = next((i for i, f in enumerate(fields) if f["name"] == name), None)
        if position in nested:
            result.extend(nested.pop(position))
        else:
            result.append(name)
    for position in sorted(nested):       # a nested entry whose parent bit was not set
        result.extend(nested[position])
    return result


def decode_bitmap(entries, schema) -> list[str]:
    """A changedFields/nulledFields/diffFields value -> field names in schema order.

    The first entry may be the top-level bitmap ("0x..."); entries "<pos>-0x..." name components of the
    compound field at top-level position <pos>, as "Parent.Component". A compound field set in the
    top-level bitmap without its own entry stands for all its components (returned as the parent's name).
    Names (Streaming API style, not bitmaps) are returned as they are. `schema`: the schema JSON or its
    EventSchema (which keeps what it decoded).
    """
    return list(event_schema(schema).names(entries))


# ------------------------------------------------------------------ flattening

class EventSchema:
    """An event schema read once for all the events that carry it: which column each field (or compound
    field's component) fills, and the bitmaps already decoded (the same few come back event after event)."""

    MAX_BITMAPS = 4096          # distinct bitmap values kept (a schema's changes repeat; this bounds memory)

    def __init__(self, schema: dict):
        self.schema = schema
        self.fields = _fields(schema)
        self._plans: dict[str, tuple] = {}
        self._bitmaps: dict[tuple, tuple] = {}
        self.all_columns = tuple(part for f in self.fields if f["name"] != HEADER for part in self.plan(f["name"]))

    def names(self, entries) -> tuple:
        key = tuple(entries or ())
        if not all(isinstance(entry, str) for entry in key):
            return tuple(_decode_bitmap(key, self.fields))      # raises EventError, says which entry
        names = self._bitmaps.get(key)
        if names is None:
            names = tuple(_decode_bitmap(key, self.fields))
            if len(self._bitmaps) >= self.MAX_BITMAPS:
                self._bitmaps.clear()
            self._bitmaps[key] = names
        return names

    def plan(self, name: str) -> tuple:
        """One decoded name ("Phone", "Name", "BillingAddress.City") -> ((field, component or None, column),
        ...): where the columns it stands for take their values in the event's record."""
        plan = self._plans.get(name)
        if plan is None:
            parent, _, child = name.partition(".")
            if child:
                plan = ((parent, child, column_name(parent, child)),)
            else:
                field = next((f for f in self.fields if f["name"] == parent), None)
                components = _record_fields(field["type"]) if field is not None else None
                plan = ((parent, None, parent),) if components is None else tuple(
                    (parent, c["name"], column_name(parent, c["name"])) for c in components)
            self._plans[name] = plan
        return plan

    def columns(self, names, record: dict) -> dict:
        """{column: value} of the named fields (the header left out), compound fields spread."""
        return _values(record, (part for name in names if name != HEADER for part in self.plan(name)))


def _values(record: dict, plan) -> dict:
    columns: dict = {}
    for parent, child, column in plan:
        value = record.get(parent)
        if child is not None:
            value = value.get(child) if isinstance(value, dict) else None
        columns[column] = value
    return columns


def event_schema(schema) -> EventSchema:
    return schema if isinstance(schema, EventSchema) else EventSchema(schema)


def flatten(record: dict, schema) -> dict:
    """Every data field of the record (the header left out), compound fields spread into their columns."""
    return _values(record, event_schema(schema).all_columns)


# ------------------------------------------------------------------ the event

def _header(record: dict) -> dict:
    header = record.get(HEADER)
    if not isinstance(header, dict):
        raise EventError("the event has no ChangeEventHeader")
    for key in ("entityName", "changeType", "recordIds"):
        if header.get(key) in (None, ""):
            raise EventError(f"ChangeEventHeader.{key} is missing")
    return header


def _operation(change_type: str) -> str:
    if change_type in OPERATIONS:
        return OPERATIONS[change_type]
    if change_type == GAP_OVERFLOW:
        return "gap_overflow"
    if change_type.startswith(GAP_PREFIX) and change_type[len(GAP_PREFIX):] in OPERATIONS:
        return "gap"
    raise EventError(f"unknown changeType {change_type!r}")


def parse_change(record: dict, schema, *, replay_id: bytes | None = None,
                 event_id: str | None = None) -> ChangeEvent:
    """One decoded CDC event -> ChangeEvent.

    What it carries, by operation (Pub/Sub API bodies have every field, unchanged ones null):
    create, undelete: every column (None where empty); update: the changed columns with their values (None
    for the nulled ones), LastModifiedDate included; delete, gap, gap_overflow: nothing.
    """
    header = _header(record)
    change_type = str(header["changeType"])
    operation = _operation(change_type)
    plan = event_schema(schema)
    changed = plan.names(header.get("changedFields"))
    nulled = plan.names(header.get("nulledFields"))
    diff = plan.names(header.get("diffFields"))
    if operation in ("create", "undelete"):
        columns = _values(record, plan.all_columns)
    elif operation == "update":
        columns = plan.columns(changed, record)
    else:
        columns = {}
    nulled_columns = frozenset(plan.columns(nulled, record))
    for column in nulled_columns:
        if column in columns:
            columns[column] = None
    try:
        stamp = ChangeStamp(int(header.get("commitTimestamp") or 0), int(header.get("commitNumber") or 0),
                            int(header.get("sequenceNumber") or 0))
    except (TypeError, ValueError):
        raise EventError("ChangeEventHeader commit fields are not numbers") from None
    return ChangeEvent(
        object_name=str(header["entityName"]), record_ids=tuple(str(i) for i in header["recordIds"]),
        operation=operation, fields=columns, nulled=nulled_columns,
        changed=tuple(plan.columns(changed, record)), diff=tuple(plan.columns(diff, record)),
        stamp=stamp, transaction_key=str(header.get("transactionKey") or ""),
        origin=str(header.get("changeOrigin") or ""), commit_user=str(header.get("commitUser") or ""),
        change_type=change_type, replay_id=replay_id, event_id=event_id)


def reconnect_delay(attempt: int, draw: float, *, base: float = 1.0, cap: float = 60.0) -> float:
    """Seconds to wait before reconnect number `attempt` (0 first): exponential, capped, with full jitter
    (`draw` in [0, 1), from the caller's random source) so many subscribers never retry in step."""
    return draw * min(cap, base * 2 ** min(attempt, 30))


def channel(object_name: str) -> str:
    """An object's own change event channel: /data/AccountChangeEvent; a custom object's __c becomes __
    (Invoice__c -> /data/Invoice__ChangeEvent)."""
    base = object_name[:-1] if object_name.endswith("__c") else object_name
    return f"/data/{base}ChangeEvent"


def in_commit_order(changes) -> list[ChangeEvent]:
    """Changes sorted as Salesforce committed them (stable for equal stamps)."""
    return sorted(changes, key=lambda c: c.stamp)


# ------------------------------------------------------------------ values as text

def text_value(value, sf_type: str | None) -> str | None:
    """An Avro value as the text an Outbound Message carries for a field of `sf_type` (core.inbound
    converts text): Pub/Sub sends date-times as ms since the epoch and dates as days since the epoch
    (a value too large for days is taken as ms)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if sf_type == "datetime" and isinstance(value, int):
        moment = _EPOCH + dt.timedelta(milliseconds=value)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    if sf_type == "date" and isinstance(value, int):
        days = value if abs(value) < 10_000_000 else value // 86_400_000
        return (_EPOCH.date() + dt.timedelta(days=days)).isoformat()
    if sf_type == "time" and isinstance(value, int):
        clock = dt.datetime.min + dt.timedelta(milliseconds=value)
        return clock.strftime("%H:%M:%S.") + f"{clock.microsecond // 1000:03d}Z"
    if isinstance(value, float) and value.is_integer() and sf_type in ("int", "long"):
        return str(int(value))
    return str(value)


def text_fields(change: ChangeEvent, types: dict, only: frozenset | None = None) -> dict:
    """change.fields as {column: text}, `types` = {column: Salesforce field type} (from the describe); `only`:
    the lowercase names of the columns wanted (None: all)."""
    return {name: text_value(value, types.get(name)) for name, value in change.fields.items()
            if only is None or name.lower() in only}



# ------------------------------------------------------------------ the apply path's changes

STAMP_FIELD = "LastModifiedDate"


def change_stamp(event: ChangeEvent, fields: dict) -> dt.datetime:
    """The ordering stamp of an event's changes (docs/cdc.md, "Never backwards"): the record's
    LastModifiedDate when the event carries it (create, update, undelete: Salesforce sets it with
    SystemModstamp at the start of the transaction, the stamp Outbound Messages and polls give), else the
    commit time down to its second (a delete: like the poll's deletion time, a SystemModstamp)."""
    text = fields.get(STAMP_FIELD)
    if text:
        try:
            return parse_datetime(text)
        except ValueError:
            raise EventError(f"{STAMP_FIELD} {text!r} is not a date-time") from None
    # SystemModstamp has whole seconds and is taken at the transaction's start, at or before its commit
    return event.stamp.committed_at.replace(microsecond=0)


def changes(event: ChangeEvent, types: dict, only: frozenset | None = None) -> list[SalesforceChange]:
    """One CDC event -> one core.sources.SalesforceChange per record id, for jobs/apply.py.

    `types`: {field API name: Salesforce type} of the mapping (the describe's types). Create and undelete
    carry every field (`complete`); an update only the changed ones (nulled ones as None: only those columns
    are touched); a delete nothing. Gap events bring no values (the caller reads those records again) and
    give no changes; echoes are the caller's to drop (`ChangeEvent.is_echo`). The key of each change is
    `<replay id hex>:<record id>` (unique in a batch). `only`: the lowercase names of the fields the mapping
    reads (`read_names`); an event carries every field of the object, and converting the others is wasted."""
    if event.operation not in OPERATIONS.values():
        return []
    fields = {} if event.operation == "delete" else text_fields(event, {STAMP_FIELD: "datetime", **types}, only)
    stamp = change_stamp(event, fields)
    prefix = event.replay_id.hex() if event.replay_id else (event.event_id or "")
    complete = event.operation in ("create", "undelete")
    return [SalesforceChange(event.object_name, record_id, event.operation, dict(fields), stamp, event.source,
                             key=f"{prefix}:{record_id}", complete=complete)
            for record_id in event.record_ids]


def read_names(types: dict) -> frozenset:
    """`changes(.., only=)` for a mapping whose fields are `types`: those, the ordering stamp and IsDeleted."""
    return frozenset(name.lower() for name in (*types, STAMP_FIELD, "IsDeleted"))
