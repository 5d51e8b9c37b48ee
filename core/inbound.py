"""Plan how a batch of Salesforce changes (core.sources) lands in mapped tables: typed rows, grouped, deduplicated."""
from __future__ import annotations

from dataclasses import dataclass, field

from core.convert import ConversionError, FieldSpec, from_salesforce
from core.mapping import Mapping
from core.sources import SalesforceChange


@dataclass
class UpsertBatch:
    """Rows for one mapped table that carry the same set of columns: one SQL statement."""
    mapping: Mapping
    columns: tuple[FieldSpec, ...]
    sfids: list = field(default_factory=list)
    modstamps: list = field(default_factory=list)
    isdeleted: list = field(default_factory=list)
    values: list = field(default_factory=list)  # one list per column, aligned with sfids
    keys: list = field(default_factory=list)    # the changes' keys (notification Ids, record Ids), aligned

    @property
    def notification_ids(self) -> list:
        return self.keys

    def subset(self, keep: list[int]) -> "UpsertBatch":
        """The batch cut to the rows at these positions (in this order); itself when it keeps them all."""
        if list(keep) == list(range(len(self.sfids))):
            return self
        return UpsertBatch(mapping=self.mapping, columns=self.columns, sfids=[self.sfids[i] for i in keep],
                           modstamps=[self.modstamps[i] for i in keep], isdeleted=[self.isdeleted[i] for i in keep],
                           values=[[col[i] for i in keep] for col in self.values], keys=[self.keys[i] for i in keep])

    def without(self, keys) -> "UpsertBatch":
        """The batch without the rows of these change keys."""
        drop = set(keys)
        return self.subset([i for i, k in enumerate(self.keys) if k not in drop]) if drop else self


@dataclass
class DeleteBatch:
    """Records of one mapping that Salesforce deleted: one statement (and their tombstones)."""
    mapping: Mapping
    sfids: list = field(default_factory=list)
    stamps: list = field(default_factory=list)     # when deleted, as the source knows it (None: unknown)
    keys: list = field(default_factory=list)


@dataclass
class ApplyPlan:
    batches: list[UpsertBatch] = field(default_factory=list)
    deletes: list[DeleteBatch] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)     # change key -> reason
    unmapped: list[str] = field(default_factory=list)        # change keys with no active mapping
    superseded: list[str] = field(default_factory=list)      # a newer change for the record came in the same batch


def _typed(change: SalesforceChange, mapping: Mapping):
    """(isdeleted, {FieldSpec: value}) or raises ConversionError / ValueError."""
    deleted_text = change.fields.get("IsDeleted")
    isdeleted = deleted_text is not None and deleted_text.strip().lower() == "true"
    values = {}
    by_lower = None
    for spec in mapping.read_fields:
        if spec.name in change.fields:
            values[spec] = from_salesforce(spec, change.fields[spec.name])
            continue
        # Outbound Messages name fields case-insensitively in some captures (e.g. UNIT__C). One dict of the
        # notification's names, built once: the lookup stays linear whatever the sizes (a scan per mapped
        # field cost seconds for a 5 MB notification against a 200-field mapping).
        if by_lower is None:
            by_lower = {}
            for name, text in change.fields.items():
                by_lower.setdefault(name.lower(), text)
        if spec.name.lower() in by_lower:
            values[spec] = from_salesforce(spec, by_lower[spec.name.lower()])
    return isdeleted, values


def within_budget(sizes: list[int], max_bytes: int) -> int:
    """How many of the claimed rows (in order) one batch takes: at least one, then while the sum fits."""
    total = 0
    for n, size in enumerate(sizes):
        total += size or 0
        if n and total > max_bytes:
            return n
    return len(sizes)


def plan_apply(changes: list[SalesforceChange], mappings: dict[str, Mapping]) -> ApplyPlan:
    """Group changes into upsert and delete batches. `mappings` maps lowercase object name -> active reading
    Mapping. Changes are given in arrival order; for one record only the newest is kept (ties: the later one)."""
    plan = ApplyPlan()
    newest: dict[tuple[str, str], tuple] = {}
    for change in changes:
        mapping = mappings.get(change.object_name.lower())
        if mapping is None:
            plan.unmapped.append(change.key)
            continue
        try:
            isdeleted, values = (False, {}) if change.deletes else _typed(change, mapping)
        except ConversionError as exc:
            plan.failed[change.key] = str(exc)
            continue
        key = (mapping.object_name.lower(), change.record_id)
        previous = newest.get(key)
        if previous is not None:
            prev, stamp = previous[0], change.stamp
            if prev.stamp is not None and stamp is not None and stamp < prev.stamp:
                plan.superseded.append(change.key)
                continue
            plan.superseded.append(prev.key)
        newest[key] = (change, isdeleted, values, mapping)

    groups: dict[tuple, UpsertBatch] = {}
    deletes: dict[str, DeleteBatch] = {}
    for change, isdeleted, values, mapping in newest.values():
        if change.deletes:
            gone = deletes.get(mapping.object_name.lower())
            if gone is None:
                gone = deletes[mapping.object_name.lower()] = DeleteBatch(mapping=mapping)
            gone.sfids.append(change.record_id)
            gone.stamps.append(change.stamp)
            gone.keys.append(change.key)
            continue
        columns = tuple(spec for spec in mapping.fields if spec in values)
        gkey = (mapping.object_name.lower(), tuple(c.name for c in columns))
        batch = groups.get(gkey)
        if batch is None:
            batch = groups[gkey] = UpsertBatch(mapping=mapping, columns=columns, values=[[] for _ in columns])
        batch.sfids.append(change.record_id)
        batch.modstamps.append(change.stamp)
        batch.isdeleted.append(isdeleted)
        for i, spec in enumerate(columns):
            batch.values[i].append(values[spec])
        batch.keys.append(change.key)
    plan.batches = list(groups.values())
    plan.deletes = list(deletes.values())
    return plan
