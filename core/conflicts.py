"""Conflict rules for a record changed in Postgres and in Salesforce since the last sync (pure)."""
from __future__ import annotations

import datetime as dt

from core.convert import FieldSpec, from_salesforce

RULES = ("last_writer_wins", "salesforce_wins", "postgres_wins")
_MISSING = object()


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
    return out


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
        if sent.get(column, _MISSING) == value:
            continue
        if column not in sent and row.get(column, _MISSING) == value:
            continue
        return False
    return True
