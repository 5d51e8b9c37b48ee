"""Plan how a batch of stored notifications lands in mapped tables: typed rows, grouped, deduplicated."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from core.convert import ConversionError, FieldSpec, from_salesforce, parse_datetime
from core.mapping import Mapping


@dataclass(frozen=True)
class InboxItem:
    notification_id: str
    object_name: str
    sfid: str
    fields: dict  # API name -> text or None, as received


@dataclass
class UpsertBatch:
    """Rows for one mapped table that carry the same set of columns: one SQL statement."""
    mapping: Mapping
    columns: tuple[FieldSpec, ...]
    sfids: list = field(default_factory=list)
    modstamps: list = field(default_factory=list)
    isdeleted: list = field(default_factory=list)
    values: list = field(default_factory=list)  # one list per column, aligned with sfids
    notification_ids: list = field(default_factory=list)


@dataclass
class ApplyPlan:
    batches: list[UpsertBatch] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)     # notification id -> reason
    unmapped: list[str] = field(default_factory=list)        # notification ids with no active mapping
    superseded: list[str] = field(default_factory=list)      # a newer notification for the record came in the same batch


def modstamp_of(fields: dict) -> dt.datetime | None:
    """The record's change time: SystemModstamp, else LastModifiedDate (setup docs ask for SystemModstamp)."""
    for name in ("SystemModstamp", "LastModifiedDate"):
        text = fields.get(name)
        if text:
            return parse_datetime(text)
    return None


def _typed(item: InboxItem, mapping: Mapping):
    """(modstamp, isdeleted, {FieldSpec: value}) or raises ConversionError / ValueError."""
    try:
        stamp = modstamp_of(item.fields)
    except ValueError as exc:
        raise ConversionError("SystemModstamp", item.fields.get("SystemModstamp") or "", str(exc)) from None
    deleted_text = item.fields.get("IsDeleted")
    isdeleted = deleted_text is not None and deleted_text.strip().lower() == "true"
    values = {}
    by_lower = None
    for spec in mapping.read_fields:
        if spec.name in item.fields:
            values[spec] = from_salesforce(spec, item.fields[spec.name])
            continue
        # Outbound Messages name fields case-insensitively in some captures (e.g. UNIT__C). One dict of the
        # notification's names, built once: the lookup stays linear whatever the sizes (a scan per mapped
        # field cost seconds for a 5 MB notification against a 200-field mapping).
        if by_lower is None:
            by_lower = {}
            for name, text in item.fields.items():
                by_lower.setdefault(name.lower(), text)
        if spec.name.lower() in by_lower:
            values[spec] = from_salesforce(spec, by_lower[spec.name.lower()])
    return stamp, isdeleted, values


def within_budget(sizes: list[int], max_bytes: int) -> int:
    """How many of the claimed rows (in order) one batch takes: at least one, then while the sum fits."""
    total = 0
    for n, size in enumerate(sizes):
        total += size or 0
        if n and total > max_bytes:
            return n
    return len(sizes)


def plan_apply(items: list[InboxItem], mappings: dict[str, Mapping]) -> ApplyPlan:
    """Group items into upsert batches. `mappings` maps lowercase object name -> active reading Mapping.
    Items are given in arrival order; for one record only the newest state is kept (ties: the later one)."""
    plan = ApplyPlan()
    newest: dict[tuple[str, str], tuple] = {}
    for item in items:
        mapping = mappings.get(item.object_name.lower())
        if mapping is None:
            plan.unmapped.append(item.notification_id)
            continue
        try:
            stamp, isdeleted, values = _typed(item, mapping)
        except ConversionError as exc:
            plan.failed[item.notification_id] = str(exc)
            continue
        key = (mapping.object_name.lower(), item.sfid)
        previous = newest.get(key)
        if previous is not None:
            prev_item, prev_stamp = previous[0], previous[1]
            if prev_stamp is not None and stamp is not None and stamp < prev_stamp:
                plan.superseded.append(item.notification_id)
                continue
            plan.superseded.append(prev_item.notification_id)
        newest[key] = (item, stamp, isdeleted, values, mapping)

    groups: dict[tuple, UpsertBatch] = {}
    for item, stamp, isdeleted, values, mapping in newest.values():
        columns = tuple(spec for spec in mapping.fields if spec in values)
        gkey = (mapping.object_name.lower(), tuple(c.name for c in columns))
        batch = groups.get(gkey)
        if batch is None:
            batch = groups[gkey] = UpsertBatch(mapping=mapping, columns=columns, values=[[] for _ in columns])
        batch.sfids.append(item.sfid)
        batch.modstamps.append(stamp)
        batch.isdeleted.append(isdeleted)
        for i, spec in enumerate(columns):
            batch.values[i].append(values[spec])
        batch.notification_ids.append(item.notification_id)
    plan.batches = list(groups.values())
    return plan
