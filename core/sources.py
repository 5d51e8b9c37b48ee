"""What every Salesforce -> Postgres source produces: a `SalesforceChange` (a change Salesforce told us about),
and the registry of sources with what the one apply path (jobs/apply.py) needs to know about each.

A source knows its transport (SOAP pushes, REST pages, Bulk jobs, getDeleted, ...) and nothing about tables:
it turns what it hears into changes (or, for large reads, stages rows in a staging table) and hands them to
jobs/apply.py. Pure: no I/O, no clock.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Callable, Iterable

from core.convert import ConversionError, parse_datetime

OPERATIONS = ("create", "update", "delete", "undelete")


@dataclass(frozen=True)
class SalesforceChange:
    """One record's change as a source heard it.

    `fields` are API name -> text as an Outbound Message carries it (None: empty); core.convert types them by
    the mapping. `complete`: the fields are all the record's mapped fields (False: only the changed ones; the
    others keep their stored values). `stamp` orders changes of one record (SystemModstamp; a source that has
    none gives what it has instead, e.g. the deletion time); None: unknown (the change is applied whatever the
    row holds). `operation` is "update" when a source cannot tell a create from an update: both are upserts.
    `key` is what the source marks done (an Outbound Message's notification Id; the record Id otherwise).
    `within_filter`: the record came from a query built with the mapping's row filter (core/soql.py), so it
    matches it; other changes of a filtered mapping are checked with Salesforce first (jobs/row_filters.py).
    """
    object_name: str
    record_id: str
    operation: str
    fields: dict
    stamp: dt.datetime | None
    source: str
    key: str = ""
    complete: bool = True
    within_filter: bool = False

    def __post_init__(self):
        if self.operation not in OPERATIONS:
            raise ValueError(f"unknown operation {self.operation!r}")
        if not self.key:
            object.__setattr__(self, "key", self.record_id)

    @property
    def deletes(self) -> bool:
        return self.operation == "delete"


@dataclass(frozen=True)
class Source:
    """How the apply path treats what a source brings (the transport itself lives in the source's module)."""
    name: str
    transport: str
    # What it brings was read just now: in a staged merge it wins over the stored row at an equal
    # SystemModstamp (whole seconds). A snapshot (a load) only fills what the row lacks at an equal stamp.
    fresh: bool = True
    # It reads overlapping windows: records Postgres already holds in exactly that state are left alone.
    rereads: bool = False


# Registering a source is one entry here (its module produces SalesforceChange or staged rows).
SOURCES: dict[str, Source] = {s.name: s for s in (
    Source("outbound", "Outbound Messages (SOAP, pushed to /outbound/<token>, stored in the inbox)"),
    Source("load", "a REST query or a Bulk API 2.0 query job, staged page by page (a snapshot)", fresh=False),
    Source("poll", "REST query pages after a watermark (a Bulk job above LOAD_REST_MAX), getDeleted",
           rereads=True),
    Source("drift", "queryAll by Id for the records a drift check found different", rereads=True),
    # jobs/row_filters.py: records of a mapping with a row filter that an Outbound Message, a CDC event or our
    # own write touched, read whole through the filter
    Source("row_filter", "queryAll by Id through the mapping's row filter", rereads=True),
    # Change Data Capture (core/cdc.py `changes`, jobs/cdc_source.py): events over the Pub/Sub API, one change per
    # record, only the changed fields on updates; stamp: LastModifiedDate (a delete: the commit time)
    Source("cdc", "Change Data Capture events over the Pub/Sub API (gRPC, Avro), replay id stored with them"),
)}


def source(name: str) -> Source:
    try:
        return SOURCES[name]
    except KeyError:
        raise ValueError(f"unknown Salesforce source {name!r} (core.sources.SOURCES)") from None


def stamp_of(fields: dict) -> dt.datetime | None:
    """The record's change time: SystemModstamp, else LastModifiedDate (setup docs ask for SystemModstamp)."""
    for name in ("SystemModstamp", "LastModifiedDate"):
        text = fields.get(name)
        if text:
            try:
                return parse_datetime(text)
            except ValueError as exc:
                raise ConversionError(name, text, str(exc)) from None
    return None


def from_fields(object_name: str, record_id: str, fields: dict, source_name: str, key: str = "",
                operation: str = "update", within_filter: bool = False) -> SalesforceChange:
    """A record's state as text fields (an Outbound Message's sObject, a REST record): the stamp is its
    SystemModstamp. Raises ConversionError for an unreadable stamp."""
    return SalesforceChange(object_name, record_id, operation, fields, stamp_of(fields), source(source_name).name,
                            key, within_filter=within_filter)


def rest_text(value) -> str | None:
    """A REST JSON value as the text an Outbound Message would carry (core.convert converts text)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        raise ValueError("compound fields are not mapped")
    return str(value)


def rest_fields(record: dict) -> dict:
    """A REST query record -> {API name: text}, without `attributes`."""
    return {k: rest_text(v) for k, v in record.items() if k != "attributes" and not isinstance(v, (dict, list))}


def from_rest_record(object_name: str, record: dict, source_name: str) -> SalesforceChange:
    """One record of a REST query (or queryAll) page; one in the recycle bin (IsDeleted) is a delete. Every
    query of records is built with the mapping's row filter (core/soql.py), so the record is within it."""
    return from_fields(object_name, record["Id"], rest_fields(record), source_name,
                       operation="delete" if record.get("IsDeleted") else "update", within_filter=True)


def deleted(object_name: str, record_id: str, stamp: dt.datetime | None, source_name: str) -> SalesforceChange:
    """A record Salesforce says is gone (getDeleted's deletedRecords, or absent from a queryAll by Id)."""
    return SalesforceChange(object_name, record_id, "delete", {}, stamp, source(source_name).name)


@dataclass
class Collected:
    changes: list[SalesforceChange] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)    # key -> why the source's item is unreadable


def collect(items: Iterable[tuple[str, object]], to_change: Callable[[object], SalesforceChange]) -> Collected:
    """(key, raw item) pairs through a source's converter; an item that does not convert fails alone."""
    out = Collected()
    for key, raw in items:
        try:
            out.changes.append(to_change(raw))
        except (ConversionError, ValueError) as exc:
            out.failed[key] = str(exc)
    return out
