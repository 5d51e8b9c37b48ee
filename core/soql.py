"""Every SOQL query the product sends, built in one place. Values (ids, external ids, date-times) are quoted
by simple-salesforce's formatter; names (objects, fields) are checked to be API names and written as they are."""
from __future__ import annotations

import datetime as dt
import re
from typing import Iterable

from simple_salesforce.format import format_soql

from core.mapping import Mapping

SYSTEM_FIELDS = ("Id", "SystemModstamp", "IsDeleted")
# SystemModstamp is stamped when a transaction starts, so a slow one commits "in the past": each poll
# looks this far behind its watermark. The never-backwards rule makes the overlap harmless. The watermark is
# at least Salesforce's time when the last poll's query ran (jobs/poll.py), so the overlap re-reads only the
# changes of that minute, not the last mass change on every poll of a quiet org.
POLL_OVERLAP = dt.timedelta(seconds=60)
# An API name, or a relationship path of them (Account.External_Id__c): what may stand unquoted in a query.
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)*")


def is_record_id(text) -> bool:
    """Could this be a Salesforce record Id (15 or 18 ASCII letters and digits)? Salesforce refuses a whole
    query naming one that cannot."""
    return isinstance(text, str) and len(text) in (15, 18) and text.isascii() and text.isalnum()


def name(text: str) -> str:
    """An object or field API name, refused (ValueError) if it could be anything else."""
    if not isinstance(text, str) or not _NAME.fullmatch(text):
        raise ValueError(f"not a Salesforce API name: {text!r}")
    return text


def select(object_name: str, fields: Iterable[str], where: str = "", order_by: str | None = None) -> str:
    """SELECT <fields> FROM <object> [WHERE <where>] [ORDER BY <field>]. `where` comes from format_soql."""
    text = f"SELECT {', '.join(name(f) for f in fields)} FROM {name(object_name)}"
    if where:
        text += f" WHERE {where}"
    if order_by:
        text += f" ORDER BY {name(order_by)}"
    return text


def matching(m: Mapping) -> str:
    """How many records the mapping selects (its row filter's COUNT)."""
    return count(m.object_name, _filtered(m))


def count(object_name: str, where: str = "") -> str:
    """How many records (`where`, if any, built with format_soql)."""
    text = f"SELECT COUNT() FROM {name(object_name)}"
    return f"{text} WHERE {where}" if where else text


MAX_FILTER = 4000


def check_row_filter(text) -> str | None:
    """Why a mapping's `row_filter` (a SOQL condition) cannot be stored, else None. Salesforce parses it when
    it is saved (`filter_probe`); here only what must never reach a query: not text, blank, too long, more
    than one line, or parentheses outside quotes that do not balance (the condition must stay inside the
    parentheses the queries put around it)."""
    if not isinstance(text, str) or not text.strip():
        return "must be a SOQL condition, e.g. Industry = 'Banking'"
    if len(text) > MAX_FILTER:
        return f"is at most {MAX_FILTER} characters"
    if "\n" in text or "\r" in text:
        return "must be one line"
    depth, quoted, escaped = 0, False, False
    for ch in text:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = quoted
        elif ch == "'":
            quoted = not quoted
        elif not quoted and ch in "()":
            depth += 1 if ch == "(" else -1
            if depth < 0:
                break
    if quoted or depth != 0:
        return "has unbalanced quotes or parentheses"
    return None


def row_filter(m: Mapping) -> str:
    return m.extra.get("row_filter") or ""


def _filtered(m: Mapping, where: str = "") -> str:
    """The mapping's row filter (in parentheses, so its OR cannot escape) joined with `where`."""
    condition = row_filter(m)
    if not condition:
        return where
    return f"({condition}) AND {where}" if where else f"({condition})"


def filter_condition(m: Mapping) -> str:
    """The WHERE condition of the mapping's row filter ("" without one): what the console's COUNT asks."""
    return _filtered(m)


def filter_probe(object_name: str, condition: str) -> str:
    """A query Salesforce parses and answers with no rows: how a row filter is checked when saved."""
    return f"SELECT Id FROM {name(object_name)} WHERE ({condition}) LIMIT 0"


def record_fields(m: Mapping) -> list[str]:
    """The API names a load or poll selects, system fields first (the staging table's column order)."""
    return [*SYSTEM_FIELDS, *(f.name for f in m.read_fields)]


def records(m: Mapping) -> str:
    """Every record of the mapping's object with the fields Salesforce -> Postgres reads (a load)."""
    return select(m.object_name, record_fields(m), _filtered(m))


def calculated(m: Mapping, fields) -> str:
    """Every record's keys and the given calculated fields (`FieldSpec`s): a formula refresh. The stamps
    come along because the staging rows take them; nothing of them is written."""
    return select(m.object_name, [*SYSTEM_FIELDS, *(f.name for f in fields)], _filtered(m))


def children_calculated(m: Mapping, lookup: str, fields, parent_ids: list[str]) -> str:
    """The keys and given calculated fields (`FieldSpec`s) of the records whose lookup `lookup` names one of
    `parent_ids`: a refresh of the children of changed parents (within the row filter)."""
    return select(m.object_name, [*SYSTEM_FIELDS, *(f.name for f in fields)],
                  _filtered(m, format_soql(f"{name(lookup)} IN {{}}", list(parent_ids))))


def keys(m: Mapping) -> str:
    """Every record's Id, SystemModstamp and IsDeleted only (a drift check): within the row filter, so a record
    outside it is not "missing" (and a row that left it counts as deleted in Salesforce)."""
    return select(m.object_name, SYSTEM_FIELDS, _filtered(m))


def changed_since(m: Mapping, watermark: dt.datetime | None, ordered: bool = True) -> str:
    """Records changed after the watermark (less the overlap), oldest first, so a poll cut short still
    moves the watermark forward correctly (a Bulk job is applied whole, unordered). Whole seconds, rounded
    down by the formatter: the comparison is '>', so down is safe."""
    where = format_soql("SystemModstamp > {}", watermark - POLL_OVERLAP) if watermark else ""
    return select(m.object_name, record_fields(m), _filtered(m, where), "SystemModstamp" if ordered else None)


def recycle_bin(m: Mapping, since: dt.datetime) -> str:
    """Records deleted from `since` on, oldest first: getDeleted's stand-in when its window is older than
    Salesforce keeps. From `since` inclusive: a delete seen twice is harmless, one skipped is not."""
    return select(m.object_name, SYSTEM_FIELDS, format_soql("IsDeleted = true AND SystemModstamp >= {}", since),
                  "SystemModstamp")


def by_ids(m: Mapping, ids: list[str]) -> str:
    """These records (a drift repair, a re-read): every id quoted, none dropped (the caller leaves out what
    `is_record_id` refuses, Salesforce would refuse the query). Within the row filter: a record outside it is
    not returned, so the reader deletes its row as it deletes one Salesforce no longer has."""
    return select(m.object_name, record_fields(m), _filtered(m, format_soql("Id IN {}", list(ids))))


def stamps_by_ids(m: Mapping, ids: list[str]) -> str:
    """Id, SystemModstamp and IsDeleted of these records whatever the row filter says (with queryAll): when the
    filtered read by Id did not return them, whether they left the filter (and at which stamp) or are gone."""
    return select(m.object_name, SYSTEM_FIELDS, format_soql("Id IN {}", list(ids)))


def left_filter_since(m: Mapping, watermark: dt.datetime | None) -> str:
    """Records changed after the watermark (less the overlap; None: all) that do NOT match the row filter: what
    a poll asks, beside its filtered query, to find rows whose records left the filter. SOQL's logic has two
    values (a comparison with an empty field is false, its NOT true), so this is exactly the complement."""
    outside = f"(NOT ({row_filter(m)}))"
    where = f"{format_soql('SystemModstamp > {}', watermark - POLL_OVERLAP)} AND {outside}" if watermark else outside
    return select(m.object_name, ("Id", "SystemModstamp"), where, "SystemModstamp")


def by_external_ids(object_name: str, field: str, values: list[str]) -> str:
    """Id and external id of the records holding these external-id values (the drain's lookup of records
    whose sfid never came back)."""
    return select(object_name, ["Id", field], format_soql(f"{name(field)} IN {{}}", list(values)))
