"""Formula and roll-up summary fields of the emulated org: recomputed whenever a record they read is written,
without touching SystemModstamp, as Salesforce keeps them (which is why a connector must refresh them).

A formula field: describe `calculated: true` with `calculatedFormula` (emulator/formula.py: arithmetic, `&`
concatenation, the record's own fields and its parents' as `Parent__r.Field`). A roll-up summary: `calculated:
true` with the emulator's own `rollupSummary` {function: COUNT | SUM, child, field (the child's lookup),
summed (SUM's child field)}, over the live children."""
from __future__ import annotations

import functools
import sqlite3

from emulator.formula import Formula, parse
from emulator.schema import NUMBER_TYPES, SObjectType
from emulator.soql import sqlite_statement as _sql
from emulator.soql import to_json_value


@functools.lru_cache(maxsize=256)
def _parsed(text: str) -> Formula:
    return parse(text)


def _formulas(sobj: SObjectType) -> list[tuple[dict, Formula]]:
    return [(f, _parsed(f["calculatedFormula"])) for f in sobj.describe["fields"]
            if f.get("calculated") and f.get("calculatedFormula")]


def _has_calculated(types: dict[str, SObjectType]) -> bool:
    return any(f.get("calculated") for t in types.values() for f in t.describe["fields"])


def recalculate(conn: sqlite3.Connection, types: dict[str, SObjectType], sobj: SObjectType,
                record_ids: list[str]) -> None:
    """After records of `sobj` were written: their own formulas, their children's formulas that read them
    through a relationship, and the roll-ups summarising `sobj`."""
    if not record_ids or not _has_calculated(types):
        return
    for f in sobj.describe["fields"]:           # its own roll-ups (a new parent counts zero children)
        rollup = f.get("rollupSummary")
        if f.get("calculated") and rollup and rollup["child"].lower() in types:
            _rollup(conn, sobj, f, types[rollup["child"].lower()], rollup)
    _evaluate(conn, types, sobj, record_ids)
    marks = ", ".join("?" for _ in record_ids)
    for child in types.values():
        formulas = _formulas(child)
        for f in child.describe["fields"]:
            if f["type"] != "reference" or sobj.name not in (f.get("referenceTo") or []) or not formulas:
                continue
            prefix = (f.get("relationshipName") or "").lower() + "."
            if not any(name.startswith(prefix) for _, formula in formulas for name in formula.fields()):
                continue
            query = _sql('SELECT "Id" FROM {} WHERE {} IN ({marks})', child.table, f["name"], marks=marks)
            ids = [r[0] for r in conn.execute(query, record_ids)]
            _evaluate(conn, types, child, ids)
    for parent in types.values():
        for f in parent.describe["fields"]:
            rollup = f.get("rollupSummary")
            if f.get("calculated") and rollup and rollup["child"].lower() == sobj.name.lower():
                _rollup(conn, parent, f, sobj, rollup)


def _rollup(conn, parent: SObjectType, field: dict, child: SObjectType, rollup: dict) -> None:
    value = "count(*)" if rollup["function"].upper() == "COUNT" else _sql("coalesce(sum(c.{}), 0)", rollup["summed"])
    conn.execute(_sql('UPDATE {0} SET {1} = (SELECT {value} FROM {2} c WHERE c.{3} = {0}."Id" AND c."IsDeleted" = 0)',
                      parent.table, field["name"], child.table, rollup["field"], value=value))


def _evaluate(conn, types: dict[str, SObjectType], sobj: SObjectType, record_ids: list[str]) -> None:
    formulas = _formulas(sobj)
    if not formulas:
        return
    for record_id in record_ids:
        record = _record(conn, sobj, record_id)
        if record is None:
            continue
        for _, formula in formulas:
            for name in formula.fields():
                if "." in name and name not in record:
                    record[name] = _parent_value(conn, types, sobj, record, name)
        for field, formula in formulas:
            try:
                value = formula.evaluate(record)
            except (TypeError, ValueError, ZeroDivisionError):
                value = None
            if field["type"] in NUMBER_TYPES and isinstance(value, (int, float)) and not isinstance(value, bool):
                value = round(float(value), field.get("scale") or 0) if field["type"] != "int" else int(value)
            elif value is not None and not isinstance(value, (int, float, str)):
                value = str(value)
            conn.execute(_sql('UPDATE {} SET {} = ? WHERE "Id" = ?', sobj.table, field["name"]), (value, record_id))
            record[field["name"].lower()] = value


def _record(conn, sobj: SObjectType, record_id: str) -> dict | None:
    cur = conn.execute(_sql('SELECT * FROM {} WHERE "Id" = ?', sobj.table), (record_id,))
    row = cur.fetchone()
    if row is None:
        return None
    out = {}
    for (name, *_), value in zip(cur.description, row):
        field = sobj.field(name)
        if field is not None:
            out[name.lower()] = to_json_value(field, value)
    return out


def _parent_value(conn, types, sobj: SObjectType, record: dict, dotted: str):
    """`Parent__r.Field` of the record (one level)."""
    relationship, name = dotted.split(".", 1)
    lookup = sobj.relationship(relationship)
    if lookup is None or "." in name:
        return None
    parent_id = record.get(lookup["name"].lower())
    parent = types.get((lookup.get("referenceTo") or [""])[0].lower())
    if not parent_id or parent is None or parent.field(name) is None:
        return None
    row = conn.execute(_sql('SELECT {} FROM {} WHERE "Id" = ?', parent.field(name)["name"], parent.table),
                       (parent_id,)).fetchone()
    return None if row is None else to_json_value(parent.field(name), row[0])
