"""Conflict rules for a record changed in Postgres and in Salesforce since the last sync (pure)."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from core.convert import FieldSpec, from_salesforce

RULES = ("last_writer_wins", "salesforce_wins", "postgres_wins")
_MISSING = object()
# A lookup we set through a relationship external id ({"Account": {"External_Id__c": ..}}): we never knew the
# Id Salesforce resolved it to, so whatever Id its echo carries is ours.
RESOLVED_BY_SALESFORCE = object()


def winner(rule: str, pg_changed_at: dt.datetime | None, sf_changed_at: dt.datetime | None) -> str:
    """'salesforce' or 'postgres'. last_writer_wins compares the local change's commit-side time with the
    record's SystemModstamp, as Heroku Connect does; a tie or an unknown time keeps the local change,
    because a Postgres change must never be lost silently."""
    if rule == "salesforce_wins":
        return "salesforce"
    if rule == "postgres_wins":
        return "postgres"
    if rule != "last_writer_wins":
        raise ValueError(f"unknown conflict rule {rule!r}")
    if pg_changed_at is None or sf_changed_at is None:
        return "postgres"
    return "salesforce" if sf_changed_at > pg_changed_at else "postgres"


def sent_values(specs: tuple[FieldSpec, ...], sent: dict | None) -> dict[str, object]:
    """The JSON we wrote to Salesforce, back as column -> typed value (as an Outbound Message converts)."""
    out = {}
    for spec in specs:
        if sent and spec.name in sent:
            out[spec.column] = from_salesforce(spec, _as_text(sent[spec.name]))
        elif sent and spec.sf_type.lower() == "reference" and isinstance(sent.get(_relationship_of(spec.name)), dict):
            out[spec.column] = RESOLVED_BY_SALESFORCE
    return out


def _relationship_of(lookup: str) -> str:
    """AccountId -> Account, Invoice__c -> Invoice__r (Salesforce's naming of relationships)."""
    if lookup.lower().endswith("__c"):
        return lookup[:-3] + "__r"
    return lookup[:-2] if lookup.lower().endswith("id") else lookup


def _as_text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def is_echo(incoming: dict[str, object], sent: dict[str, object], row: dict) -> bool:
    """Our own write coming back: every value the notification carries is one we sent, or one the row
    already holds. Anything else is a change somebody made in Salesforce."""
    if all(row.get(column, _MISSING) == value for column, value in incoming.items()):
        return True   # nothing differs: there is nothing to settle
    if not sent:
        return False
    for column, value in incoming.items():
        if sent.get(column, _MISSING) == value or sent.get(column) is RESOLVED_BY_SALESFORCE:
            continue
        if column not in sent and row.get(column, _MISSING) == value:
            continue
        return False
    return True


@dataclass(frozen=True)
class LocalChanges:
    """What a record's open local changes touched: `columns` (None: every column, a local insert) and, where
    the capture kept it, the JSON value each column held before the first of them (`base`)."""
    columns: frozenset[str] | None
    base: dict


def local_changes(entries: list[dict]) -> LocalChanges:
    """From a record's open change-log entries, oldest first ({op, fields, old_values})."""
    columns: set[str] | None = set()
    base: dict = {}
    unknown: set[str] = set()
    for e in entries:
        if e["op"] == "insert":
            columns = None
        for c in e.get("fields") or ():
            if columns is not None:
                columns.add(c)
            if c in base or c in unknown:
                continue   # the oldest entry's value is the base
            if e.get("old_values") is None:
                unknown.add(c)          # captured before old values were kept
            else:
                base[c] = e["old_values"].get(c)
    return LocalChanges(None if columns is None else frozenset(columns), base)


@dataclass(frozen=True)
class FieldSettlement:
    """A record changed on both sides, settled field by field."""
    sf_fields: tuple[str, ...]          # columns Salesforce changed
    pg_fields: tuple[str, ...] | None   # columns Postgres changed (None: all of them, a local insert)
    both: tuple[str, ...]               # changed on both sides: the rule decided these
    winner: str                         # the rule's pick for `both`, or "merged" when there was nothing to decide
    take: tuple[str, ...]               # columns the row takes from Salesforce; the others keep Postgres's values

    @property
    def salesforce_took_all(self) -> bool:
        """Nothing of Postgres's change is left to send."""
        return self.winner == "salesforce" and (self.pg_fields is None or set(self.pg_fields) <= set(self.both))


def settle_fields(rule: str, incoming: dict, row: dict, local: LocalChanges, base: dict,
                  pg_changed_at: dt.datetime | None, sf_changed_at: dt.datetime | None) -> FieldSettlement:
    """Which fields each side changed, and which values the row keeps. `incoming`: column -> Salesforce's value;
    `row`: the row as Postgres holds it; `base`: column -> the value a locally changed column held before
    (typed as the row; only the columns whose base is known). Salesforce changed a column when its value
    differs from the row's and, for a column Postgres changed too, from that column's base (unknown base:
    counted as changed on both sides). Only columns both changed go by the rule."""
    pg = local.columns
    sf_changed = []
    for column, value in incoming.items():
        if row.get(column, _MISSING) == value:
            continue
        if pg is not None and column not in pg:
            sf_changed.append(column)
        elif column in base and base[column] == value:
            continue      # Salesforce still carries the value both sides started from
        else:
            sf_changed.append(column)
    both = tuple(c for c in sf_changed if pg is None or c in pg)
    side = winner(rule, pg_changed_at, sf_changed_at) if both else "merged"
    take = tuple(sf_changed) if side == "salesforce" else tuple(c for c in sf_changed if c not in both)
    return FieldSettlement(sf_fields=tuple(sf_changed), pg_fields=None if pg is None else tuple(sorted(pg)),
                           both=both, winner=side, take=take)
