"""Postgres -> Salesforce planning: fold change-log entries per record, turn them into writes, batch them."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from core.change_states import State, retry_delay  # noqa: F401  (retry_delay: where callers found it)
from core.convert import FieldSpec, to_salesforce
from core.mapping import Mapping, is_relationship, reference_field, relationship_name, relationship_parts

MAX_BATCH = 200  # sObject Collections take at most 200 records per request
# Collection item errors that say "try again later", not "this record is wrong".
TRANSIENT_CODES = frozenset({"UNABLE_TO_LOCK_ROW", "REQUEST_LIMIT_EXCEEDED", "SERVER_UNAVAILABLE",
                             "ALL_OR_NONE_OPERATION_ROLLED_BACK", "TXN_SECURITY_NO_ACCESS_TIMEOUT"})
# A delete that finds the record already gone has done its job (a retried delete must stay idempotent).
GONE_CODES = frozenset({"ENTITY_IS_DELETED", "NOT_FOUND", "INVALID_CROSS_REFERENCE_KEY"})


@dataclass(frozen=True)
class ChangeLogEntry:
    id: int
    mapping_id: int
    op: str                       # insert | update | delete
    record_id: int
    sfid: str | None = None
    external_id: str | None = None
    fields: tuple[str, ...] = ()  # update: changed mapped columns
    created_at: dt.datetime | None = None
    attempts: int = 0
    # insert: mapped columns not to send (hc_capture_insert_from_row's excluded_cols); update of a record
    # without sfid: those of its earlier insert that no update changed since (the insert may have failed)
    excluded: tuple[str, ...] = ()


@dataclass(frozen=True)
class RecordChange:
    """Every open entry of one record folded into the one write that has the same effect."""
    mapping_id: int
    record_id: int
    kind: str                     # write | delete | none
    full: bool                    # the record is new to Salesforce as far as the log knows: send every field
    columns: frozenset[str]       # changed columns (when not full)
    sfid: str | None
    external_id: str | None
    entry_ids: tuple[int, ...]
    changed_at: dt.datetime | None
    attempts: int = 0             # tries before this one (the most any entry had)
    excluded: frozenset[str] = frozenset()   # columns an insert was told not to send, changed by no update since

    @property
    def carrier_id(self) -> int:
        return self.entry_ids[-1]


def coalesce(entries: list[ChangeLogEntry]) -> list[RecordChange]:
    """Entries in log order -> one RecordChange per record, records in order of their first entry.
    insert + updates -> one insert with the final values; updates -> the union of changed fields;
    anything + delete -> delete; an insert never sent + delete -> nothing."""
    groups: dict[tuple[int, int], list[ChangeLogEntry]] = {}
    for e in entries:
        groups.setdefault((e.mapping_id, e.record_id), []).append(e)
    return [_fold(group) for group in groups.values()]


def _fold(group: list[ChangeLogEntry]) -> RecordChange:
    kind, full, columns, excluded = "none", False, set(), set()
    sfid = external_id = None
    never_sent_insert = False
    for e in group:
        sfid = e.sfid or sfid
        external_id = e.external_id or external_id
        if e.op == "insert":
            kind, full, columns, excluded = "write", True, set(), set(e.excluded)
            never_sent_insert = e.attempts == 0 and not e.sfid
        elif e.op == "update":
            if kind == "none":    # the record's insert is not among these entries: its exclusions still hold
                excluded = set(e.excluded)
            if kind != "delete":
                kind = "write"
                columns.update(e.fields)
                excluded.difference_update(e.fields)
        else:
            kind = "none" if never_sent_insert and not sfid else "delete"
    return RecordChange(mapping_id=group[0].mapping_id, record_id=group[0].record_id, kind=kind, full=full,
                        columns=frozenset(columns), sfid=sfid, external_id=external_id,
                        entry_ids=tuple(e.id for e in group), changed_at=group[-1].created_at,
                        attempts=max(e.attempts for e in group), excluded=frozenset(excluded))


@dataclass(frozen=True)
class Write:
    """One record in one sObject Collections call."""
    change: RecordChange
    op: str                       # upsert | update | create | delete
    sobject: str
    body: dict                    # API name -> JSON value ({"Id": ...} for update/delete)
    ext_field: str | None = None


@dataclass(frozen=True)
class Fields:
    """Which mapped fields Salesforce lets us write (from describe); None = all of them.
    `relationships`: relationship external-id field -> (relationship name, lookup field name)."""
    createable: frozenset[str] | None = None
    updateable: frozenset[str] | None = None
    relationships: dict | None = None


def writable_fields(mapping: Mapping, describe: dict | None) -> Fields:
    """What describe says about the mapped fields: which ones can be written, and through which
    relationship each relationship external-id field names its parent."""
    names = tuple(f.name for f in mapping.fields)
    relationships = {}
    for f in mapping.fields:
        if is_relationship(f.name):
            ref = reference_field(describe, f.name) if describe else None
            relationships[f.name] = (relationship_name(f.name, describe, names), ref["name"] if ref else None)
    if describe is None:
        return Fields(relationships=relationships)
    fields = describe.get("fields", [])
    return Fields(createable=frozenset(f["name"] for f in fields if f.get("createable", True)),
                  updateable=frozenset(f["name"] for f in fields if f.get("updateable", True)),
                  relationships=relationships)


def _body(specs: list[FieldSpec], row: dict, mapping: Mapping, writable: Fields) -> dict:
    """Field values as Salesforce takes them; a relationship external-id column becomes a reference to the
    parent by its external id ({"Account": {"External_Id__c": "A-1"}}), and is left out while empty."""
    body = {}
    names = tuple(f.name for f in mapping.fields)
    for f in specs:
        value = to_salesforce(f, row.get(f.column))
        if not is_relationship(f.name):
            body[f.name] = value
        elif value is not None:
            rel = (writable.relationships or {}).get(f.name, (relationship_name(f.name, None, names), None))[0]
            body[rel] = {relationship_parts(f.name)[1]: value}
    return body


def _writable_spec(f: FieldSpec, allowed: frozenset[str] | None, writable: Fields) -> bool:
    if is_relationship(f.name):
        lookup = (writable.relationships or {}).get(f.name, (None, None))[1]
        return lookup is None or _allowed(lookup, allowed)
    return _allowed(f.name, allowed)


def sent_columns(mapping: Mapping, body: dict) -> list[str]:
    """The mapped columns a write's body carries (relationship external ids under their relationship)."""
    keys = {k.lower() for k in body}

    def carried(f: FieldSpec) -> bool:
        if not is_relationship(f.name):
            return f.name.lower() in keys
        base = relationship_parts(f.name)[0].lower()
        return base in keys or base + "__r" in keys
    return [f.column for f in mapping.fields if carried(f)]


def plan_writes(changes: list[RecordChange], rows: dict[int, dict], mapping: Mapping,
                writable: Fields = Fields()) -> tuple[list[Write], list[RecordChange]]:
    """Turn folded changes into writes, reading values from `rows` (record id -> current row, as read at
    drain time). Returns (writes, nothing_to_send): the latter need no call (row gone, fields unmapped)."""
    writes, nothing = [], []
    for change in changes:
        write = _write_for(change, rows.get(change.record_id), mapping, writable)
        (writes if write else nothing).append(write or change)
    return writes, nothing


def _write_for(change: RecordChange, row: dict | None, mapping: Mapping, writable: Fields) -> Write | None:
    name = mapping.object_name
    if change.kind == "delete":
        if change.sfid:
            return Write(change, "delete", name, {"Id": change.sfid})
        return None   # never reached Salesforce under an Id we know; the drain resolves external ids first
    if change.kind == "none" or row is None:
        return None   # the row is gone: its delete entry comes next
    sfid = row.get("sfid")
    sent = [f for f in mapping.sent_fields if f.column not in change.excluded]
    if sfid:
        specs = sent if change.full else [f for f in sent if f.column in change.columns]
        specs = [f for f in specs if _writable_spec(f, writable.updateable, writable)]
        body = _body(specs, row, mapping, writable)
        if not body:
            return None
        return Write(change, "update", name, {"Id": sfid, **body})
    specs = [f for f in sent if _writable_spec(f, writable.createable, writable)]
    body = _body(specs, row, mapping, writable)
    if mapping.upsert_field:
        ext = mapping.field(mapping.upsert_field)
        body[ext.name] = to_salesforce(ext, row.get(ext.column))
        return Write(change, "upsert", name, body, ext.name)
    return Write(change, "create", name, body)


def _allowed(name: str, allowed: frozenset[str] | None) -> bool:
    return allowed is None or name in allowed


def references_parents(batch: list[Write]) -> bool:
    """Does a write of the batch name a parent by its external id ({"Account": {"External_Id__c": ..}})?"""
    return any(isinstance(v, dict) for w in batch for v in w.body.values())


def plan_batches(writes: list[Write], size: int = MAX_BATCH) -> list[list[Write]]:
    """Group writes that can share one call (same operation, object and external-id field) into
    batches of at most `size`, keeping each record's relative order."""
    groups: dict[tuple, list[Write]] = {}
    for w in writes:
        groups.setdefault((w.op, w.sobject, w.ext_field), []).append(w)
    return [group[i:i + size] for group in groups.values() for i in range(0, len(group), size)]


def bundle_batches(batches: list, size: int) -> list[list]:
    """Batches into API calls of at most `size` batches each (a /composite call carries several Collections
    requests and counts as one call): as few calls as that allows, sharing the batches out evenly so the
    calls in flight at once take about as long as each other. Order is kept."""
    if not batches:
        return []
    calls = -(-len(batches) // max(1, size))
    share, extra = divmod(len(batches), calls)
    out, start = [], 0
    for n in range(calls):
        end = start + share + (1 if n < extra else 0)
        out.append(batches[start:end])
        start = end
    return out


@dataclass(frozen=True)
class Outcome:
    state: State                  # SUCCESS | FAILED | REQUEUED (what it does to the change: core.change_states)
    sfid: str | None = None
    error: list | dict | None = None


def outcome_of(write: Write, item: dict) -> Outcome:
    """Read one per-record result of a Collections call."""
    if item.get("success"):
        return Outcome(State.SUCCESS, item.get("id") or write.body.get("Id"))
    errors = item.get("errors") or []
    codes = {e.get("statusCode") or e.get("errorCode") for e in errors}
    if write.op == "delete" and codes and codes <= GONE_CODES:
        return Outcome(State.SUCCESS, write.body.get("Id"))
    if codes & TRANSIENT_CODES:
        return Outcome(State.REQUEUED, error=errors)
    return Outcome(State.FAILED, error=errors)
