"""Formula and roll-up freshness (pure): which mapped fields Salesforce calculates, and how often a mapping
refreshes them. Salesforce does not touch SystemModstamp when a formula's result changes (nor does CDC carry
formula fields), so neither the poll nor any message brings those changes; jobs/formula_refresh.py does.
A cross-object formula (Contact's over Account.Industry) also changes when its parent does: which parents a
mapping's formulas read comes from describe's `calculatedFormula` (`parent_references`)."""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from core.convert import FieldSpec
from core.mapping import Mapping

CONFIG_KEY = "formula_refresh_minutes"
DEFAULT_MINUTES = 15
# A mapping without calculated fields costs a describe each time it is looked at: once a day is enough, since
# saving the mapping (the only way its fields change) makes it due at once (gateway/mapping_store.py).
IDLE_MINUTES = 24 * 60
MAX_MINUTES = 7 * 24 * 60
# Children of changed parents are re-read this many parents to a query (`Lookup IN (...)`), at most
# MAX_TARGETED_PARENTS parents per mapping and turn: the rest wait for the next turn or the mapping's full
# refresh on its schedule, which serves them all (however fast parents change, the schedule holds).
PARENTS_PER_QUERY = 200
MAX_TARGETED_PARENTS = 2000
# A targeted refresh Salesforce refuses with these has a stale idea of the mapping's calculated fields (one was
# deleted or changed type): the full refresh, which describes the object again, takes over.
STALE_QUERY_CODES = frozenset({"INVALID_FIELD", "MALFORMED_QUERY", "INVALID_TYPE"})
# Text a formula holds that names no field: string literals and comments.
_NOT_NAMES = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|/\*.*?\*/", re.S)
# A parent's field read through a relationship: Account.Industry, Shipment__r.Rate__c (the first name is the
# relationship). `$User.Name` and `$ObjectType...` are global variables, not parents.
_PARENT_PATH = re.compile(r"(?<![\w$.])([A-Za-z][A-Za-z0-9_]*)\.[A-Za-z][A-Za-z0-9_]*")


def check_refresh_option(config: dict) -> tuple[str, str] | None:
    """(the config key at fault, why) when `formula_refresh_minutes` cannot be stored, else None."""
    if CONFIG_KEY not in config:
        return None
    value = config[CONFIG_KEY]
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_MINUTES:
        return (f"config.{CONFIG_KEY}",
                f"must be a whole number of minutes (0 turns refreshing off, at most {MAX_MINUTES})")
    return None


def refresh_minutes(m: Mapping) -> int:
    """The mapping's refresh interval: its `formula_refresh_minutes`, else the default (0: off)."""
    value = m.extra.get(CONFIG_KEY, DEFAULT_MINUTES)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else DEFAULT_MINUTES


def calculated_fields(m: Mapping, describe: dict | None) -> tuple[FieldSpec, ...]:
    """The mapped fields Salesforce -> Postgres reads whose describe says `calculated` (formulas and roll-up
    summaries). A Postgres-owned field is left alone, as every inbound source leaves it."""
    calculated = {f["name"].lower() for f in (describe or {}).get("fields", []) if f.get("calculated")}
    return tuple(f for f in m.overwritten_fields if f.name.lower() in calculated)


def next_refresh(m: Mapping, ran_at: dt.datetime, has_calculated: bool, factor: float = 1.0) -> dt.datetime | None:
    """When to refresh next: None when refreshing is off; a mapping without calculated fields is looked at
    again after a day (a field of Salesforce's may have become a formula). `factor`: the API budget's
    spacing of formula refreshes (core/budget.py), 1 when it holds nothing back."""
    minutes = refresh_minutes(m)
    if minutes == 0:
        return None
    minutes = minutes if has_calculated else max(minutes, IDLE_MINUTES)
    return ran_at + dt.timedelta(minutes=minutes * factor)


def targeted_due(state: dict, now: dt.datetime, factor: float = 1.0) -> bool:
    """May the children of changed parents be refreshed now? `state`: the mapping's forcebridge.formula_refresh
    row. Not while the last full refresh failed, nor after a targeted one failed since it: the next full
    refresh (on its schedule) re-describes and serves them. The budget's spacing (`factor`, e.g. 3) applies
    as to full refreshes: a targeted refresh each `factor` minutes instead of each minute."""
    if state["error"] is not None:
        return False
    last, targeted = state["last_run_at"], state["targeted_at"]
    if targeted is None:
        return True
    if state["targeted_error"] is not None and (last is None or targeted > last):
        return False
    return now >= targeted + dt.timedelta(minutes=factor - 1)


@dataclass(frozen=True)
class ParentReference:
    """Calculated fields of the mapping that read a parent's fields through the lookup `lookup`."""
    object_name: str          # the parent object
    lookup: str               # the child's lookup field naming the parent (its Id)
    fields: tuple[str, ...]   # the mapping's calculated fields reading through it

    def as_document(self) -> dict:
        return {"object": self.object_name, "lookup": self.lookup, "fields": list(self.fields)}


def relationships_read(formula: str | None) -> set[str]:
    """The relationship names (lower case) through which a formula reads its parents' fields. Only the first
    hop: a grandparent's change (Account.Owner.Name) is left to the scheduled refresh."""
    text = _NOT_NAMES.sub(" ", formula or "")
    return {match.group(1).lower() for match in _PARENT_PATH.finditer(text)}


def parent_references(m: Mapping, describe: dict | None) -> tuple[ParentReference, ...]:
    """Per (parent object, lookup): the mapped calculated fields whose formula reads that parent. A lookup to
    several objects (polymorphic) gives one reference per object; roll-ups read children, not parents."""
    fields = (describe or {}).get("fields", [])
    formula_of = {f["name"].lower(): f.get("calculatedFormula") for f in fields}
    lookups = {f["relationshipName"].lower(): f for f in fields
               if f.get("type") == "reference" and f.get("relationshipName")}
    found: dict[tuple[str, str], list[str]] = {}
    for spec in calculated_fields(m, describe):
        for relationship in sorted(relationships_read(formula_of.get(spec.name.lower()))):
            lookup = lookups.get(relationship)
            for parent in (lookup or {}).get("referenceTo") or ():
                names = found.setdefault((parent, lookup["name"]), [])
                if spec.name not in names:
                    names.append(spec.name)
    return tuple(ParentReference(parent, lookup, tuple(names)) for (parent, lookup), names in found.items())


def references_from(document) -> tuple[ParentReference, ...]:
    """ParentReferences from what `as_document` stored (forcebridge.formula_refresh.parents)."""
    return tuple(ParentReference(d["object"], d["lookup"], tuple(d["fields"])) for d in document or ())
