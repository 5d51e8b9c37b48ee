"""Conflict rules for a record changed in Postgres and in Salesforce since the last sync (pure)."""
from __future__ import annotations

import datetime as dt

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
