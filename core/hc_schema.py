"""Heroku Connect's names for what it creates beside a mapped table (pure): its indexes."""
from __future__ import annotations

from dataclasses import dataclass

from core.mapping import Mapping, MappingError

MAX_NAME = 63                     # Postgres truncates longer identifiers
# Salesforce's system fields and the columns that hold them
_SYSTEM = {"id": "sfid", "systemmodstamp": "systemmodstamp", "isdeleted": "isdeleted"}


@dataclass(frozen=True)
class Index:
    name: str
    column: str
    unique: bool


def index_name(table: str, column: str, unique: bool) -> str:
    return f"{'hcu' if unique else 'hc'}_idx_{table}_{column}"[:MAX_NAME]


def table_indexes(m: Mapping) -> list[Index]:
    """Every index Heroku Connect makes on the mapped table, in creation order: unique on sfid, on
    systemmodstamp, unique on the upsert field, then one per entry of the mapping's `indexes` config
    ({"Field": {"unique": bool}}, kept in Mapping.extra)."""
    wanted: dict[str, bool] = {"sfid": True, "systemmodstamp": False}
    if m.upsert_field and m.field(m.upsert_field):
        wanted[m.field(m.upsert_field).column] = True
    config = m.extra.get("indexes") or {}
    if not isinstance(config, dict):
        raise MappingError("indexes must be an object of field name -> {\"unique\": true|false}")
    for name, opts in config.items():
        column = _column(m, name)
        if opts is not None and not isinstance(opts, dict):
            raise MappingError(f"indexes.{name} must be an object like {{\"unique\": true}}")
        unique = bool((opts or {}).get("unique", False))
        wanted[column] = wanted.get(column, False) or unique
    return [Index(index_name(m.table_name, c, u), c, u) for c, u in wanted.items()]


def _column(m: Mapping, name) -> str:
    if isinstance(name, str) and name.lower() in _SYSTEM:
        return _SYSTEM[name.lower()]
    spec = m.field(name) if isinstance(name, str) else None
    if spec is None:
        raise MappingError(f"indexes: {name!r} is not a mapped field")
    return spec.column
