"""Mappings: a Salesforce object <-> a Postgres table. Validation of the JSON users send, no I/O."""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field, replace

from core.convert import SUPPORTED_TYPES, FieldSpec

DIRECTIONS = ("sf_to_pg", "pg_to_sf", "bidirectional")
CONFLICT_RULES = ("last_writer_wins", "salesforce_wins", "postgres_wins")
# A field's owner (its entry's "owner"): both sides write it, or only Salesforce, or only Postgres.
OWNERS = ("both", "salesforce", "postgres")
SYSTEM_COLUMNS = ("id", "sfid", "systemmodstamp", "isdeleted", "_hc_lastop", "_hc_err")
# Fields every mapping carries whether or not the user lists them: they are the system columns.
IMPLIED_FIELDS = {"Id": "id", "SystemModstamp": "datetime", "IsDeleted": "boolean"}

MAX_FIELDS = 1000      # more than any Salesforce object has
_API_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_PG_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# An object's API name: an optional namespace prefix (`ns__`), a name of letters, digits and single
# underscores that starts with a letter and does not end with one, and optionally one of the suffixes
# Salesforce appends after a double underscore (custom object, platform event, custom metadata, ...).
_NAME_PART = r"[A-Za-z](?:[A-Za-z0-9]|_(?=[A-Za-z0-9]))*"
OBJECT_SUFFIXES = ("c", "r", "e", "mdt", "x", "b", "kav", "ka", "share", "history", "feed", "changeevent",
                   "hd", "dlm", "dll", "chn", "xo", "tag", "viewstat", "votestat", "datacategoryselection")
_OBJECT_NAME = re.compile(rf"{_NAME_PART}|(?:{_NAME_PART}__)?{_NAME_PART}__(?P<suffix>[A-Za-z]+)")
MAX_OBJECT_NAME = 80
# The connector's own schema (its ledger, queue and sessions) and Postgres's catalogs are never a mapping's.
RESERVED_SCHEMAS = ("forcebridge", "information_schema")
# Heroku Connect's own tables beside the mapped ones: apps written for it read them there.
RESERVED_TABLES = ("_trigger_log", "_trigger_log_archive", "_hcmeta", "_sf_event_log")
# Heroku Connect's relationship external-id fields: `<Relationship>__r__<parent's external id field>`, e.g.
# Account__r__External_Id__c (lookup AccountId) or Invoice__r__Code__c (lookup Invoice__c, relationship Invoice__r).
RELATIONSHIP_MARK = "__r__"
RELATIONSHIP_DEFAULT_LENGTH = 255


class MappingError(ValueError):
    """The mapping as given cannot be accepted; the message says why (and `field`, when known, which
    part of the request it is about)."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


def check_object_name(name) -> str:
    """The name if it is a Salesforce object API name, else MappingError. Every path that puts an object's
    name into a Salesforce URL or query checks it here first: `../limits#` must never become a call."""
    shown = repr(name[:80]) if isinstance(name, str) else type(name).__name__
    if not isinstance(name, str) or len(name) > MAX_OBJECT_NAME:
        raise MappingError(f"object_name {shown} is not a Salesforce object API name", "object_name")
    m = _OBJECT_NAME.fullmatch(name)
    if m is None or (m.group("suffix") is not None and m.group("suffix").lower() not in OBJECT_SUFFIXES):
        raise MappingError(f"object_name {shown} is not a Salesforce object API name (letters, digits and "
                           "single underscores, starting with a letter, e.g. Account, Invoice__c, ns__Invoice__c)",
                           "object_name")
    return name


@dataclass(frozen=True)
class Mapping:
    object_name: str
    table_schema: str
    table_name: str
    direction: str
    fields: tuple[FieldSpec, ...]            # user fields, without the implied system fields
    upsert_field: str | None = None
    conflict_rule: str = "last_writer_wins"
    active: bool = True
    id: int | None = None
    extra: dict = field(default_factory=dict)  # everything else from the imported config, kept verbatim

    def field(self, name: str) -> FieldSpec | None:
        for f in self.fields:
            if f.name.lower() == name.lower():
                return f
        return None

    @functools.cached_property
    def read_fields(self) -> tuple[FieldSpec, ...]:
        """The fields Salesforce -> Postgres writes: relationship external-id columns are the app's alone."""
        return tuple(f for f in self.fields if not is_relationship(f.name))

    @property
    def sent_fields(self) -> tuple[FieldSpec, ...]:
        """The fields Postgres -> Salesforce captures and sends: a Salesforce-owned field never goes out."""
        return tuple(f for f in self.fields if f.owner != "salesforce")

    @property
    def overwritten_fields(self) -> tuple[FieldSpec, ...]:
        """The read fields Salesforce's changes overwrite in a stored row: a Postgres-owned field is left alone
        (a new row still takes Salesforce's value: there is nothing of Postgres's to keep)."""
        return tuple(f for f in self.read_fields if f.owner != "postgres")

    @property
    def reads(self) -> bool:
        return self.direction in ("sf_to_pg", "bidirectional")

    @property
    def writes(self) -> bool:
        return self.direction in ("pg_to_sf", "bidirectional")


def is_api_name(name) -> bool:
    return isinstance(name, str) and len(name) <= 80 and bool(_API_NAME.match(name))


def is_relationship(name: str) -> bool:
    return RELATIONSHIP_MARK in name.lower()


def relationship_parts(name: str) -> tuple[str, str]:
    """'Account__r__External_Id__c' -> ('Account', 'External_Id__c')."""
    cut = name.lower().index(RELATIONSHIP_MARK)
    return name[:cut], name[cut + len(RELATIONSHIP_MARK):]


def reference_field(describe: dict, name: str) -> dict | None:
    """The describe entry of the lookup a relationship external-id field goes through: the reference field
    whose relationshipName is the field's relationship (`Account`, or `Invoice__r` for a custom one)."""
    base = relationship_parts(name)[0].lower()
    for f in (describe or {}).get("fields", []):
        rel = (f.get("relationshipName") or "").lower()
        if f.get("type") == "reference" and rel and rel in (base, base + "__r"):
            return f
    return None


def relationship_name(name: str, describe: dict | None, mapped: tuple[str, ...] = ()) -> str:
    """The key a write names the parent by. From describe when known; without it, a custom relationship
    (`Foo__r`) when the mapping names the lookup `Foo__c`, else the standard one (`Foo`)."""
    ref = reference_field(describe, name) if describe else None
    if ref is not None:
        return ref["relationshipName"]
    base = relationship_parts(name)[0]
    return base + "__r" if f"{base}__c".lower() in {m.lower() for m in mapped} else base


def relationship_parents(fields: dict, describe: dict | None) -> list[str]:
    """The parent objects whose describe a mapping's relationship fields need (to check their external ids)."""
    parents = []
    for name in fields:
        if isinstance(name, str) and is_relationship(name):
            ref = reference_field(describe, name)
            if ref and ref.get("referenceTo"):
                parents.append(ref["referenceTo"][0])
    return sorted(set(parents))


def _relationship_spec(name: str, opts: dict, describe: dict | None, parents: dict | None) -> FieldSpec:
    """A relationship external-id field: a text column the app fills with the parent's external id."""
    base, ext = relationship_parts(name)
    if not base or not _API_NAME.match(ext) or not _API_NAME.match(base):
        raise MappingError(f"field {name}: a relationship external id is named <Relationship>__r__<ExternalIdField>")
    length = opts.get("length")
    if describe is not None:
        ref = reference_field(describe, name)
        if ref is None:
            raise MappingError(f"field {name}: {describe.get('name', 'the object')} has no lookup whose relationship "
                               f"is {base} or {base}__r")
        parent_name = (ref.get("referenceTo") or [""])[0]
        parent = (parents or {}).get(parent_name.lower())
        if parent is not None:
            found = next((f for f in parent.get("fields", []) if f["name"].lower() == ext.lower()), None)
            if found is None or not (found.get("externalId") or found.get("idLookup")):
                raise MappingError(f"field {name}: {ext} is not an external id field of {parent_name}")
            ext = found["name"]
            length = length or (found.get("length") or None)
        rel = ref["relationshipName"]
        base = rel[:-3] if rel.lower().endswith("__r") else rel
        name = f"{base}__r__{ext}"
    return FieldSpec(name=name, sf_type="string", length=_length(name, length or RELATIONSHIP_DEFAULT_LENGTH),
                     owner=_owner(name, opts))


def field_specs(fields: dict, describe: dict | None, parents: dict | None = None) -> tuple[FieldSpec, ...]:
    """Fields as {"Name": {"type": "string", "length": 80}} or HC's {"Name": {}}; types come from the
    describe result when the entry has none. `parents`: describes of lookup targets by lowercase name, to
    check relationship external-id fields (Account__r__External_Id__c) against the parent's external ids."""
    if not isinstance(fields, dict):
        raise MappingError("config.fields must be an object: {\"Name\": {}, ...}", "config.fields")
    if len(fields) > MAX_FIELDS:
        raise MappingError(f"a mapping takes at most {MAX_FIELDS} fields (Postgres tables hold at most 1,600 columns)")
    by_name = {f["name"].lower(): f for f in (describe or {}).get("fields", [])}
    specs = []
    for name, opts in fields.items():
        if not isinstance(name, str) or not _API_NAME.fullmatch(name) or len(name) > 63:
            raise MappingError(f"field name {name[:80]!r} is not a Salesforce API name (at most 63 characters here: "
                               "its column name must fit Postgres's limit)")
        if name in IMPLIED_FIELDS:
            continue
        opts = {} if opts is None else opts
        if not isinstance(opts, dict):
            raise MappingError(f"field {name}: options must be an object")
        if is_relationship(name):
            specs.append(_relationship_spec(name, opts, describe, parents))
            continue
        described = by_name.get(name.lower())
        if describe is not None and described is None:
            raise MappingError(f"field {name} does not exist on the Salesforce object")
        sf_type = opts.get("type") or (described or {}).get("type") or ""
        if not isinstance(sf_type, str):
            raise MappingError(f"field {name}: type must be a string")
        sf_type = sf_type.lower()
        if not sf_type:
            raise MappingError(f"field {name}: no type given and no describe result to read it from")
        if sf_type not in SUPPORTED_TYPES:
            raise MappingError(f"field {name}: Salesforce type {sf_type!r} is not supported")
        length = _length(name, opts.get("length") or (described or {}).get("length") or None)
        specs.append(FieldSpec(name=(described or {}).get("name", name), sf_type=sf_type, length=length,
                               owner=_owner(name, opts)))
    if len({s.column for s in specs}) != len(specs):
        raise MappingError("two fields map to the same lowercase column name")
    return tuple(specs)


def _owner(name: str, opts: dict) -> str:
    owner = opts.get("owner", "both")
    if not isinstance(owner, str) or owner not in OWNERS:
        raise MappingError(f"field {name}: owner must be one of {', '.join(OWNERS)}", f"config.fields.{name}.owner")
    return owner


def _length(name: str, length) -> int | None:
    """A text length as Salesforce has them (1 to 131,072, Long Text Area's maximum), or none."""
    if length is None:
        return None
    try:
        value = None if isinstance(length, bool) or (isinstance(length, float) and not length.is_integer()) \
            else int(length)
    except (TypeError, ValueError):
        value = None
    if value is None or not 1 <= value <= 131_072:
        raise MappingError(f"field {name}: length must be a whole number from 1 to 131072")
    return value


def from_entry(entry: dict, describe: dict | None = None, default_schema: str = "salesforce",
               parents: dict | None = None) -> Mapping:
    """Build a Mapping from Heroku Connect's exported mapping entry plus our optional extras
    (`table`, `schema`, `direction`, `conflict_rule`, `active`)."""
    if not isinstance(entry, dict):
        raise MappingError("a mapping must be a JSON object")
    object_name = check_object_name(entry.get("object_name"))
    config = entry.get("config") or {}
    if not isinstance(config, dict):
        raise MappingError("config must be an object", "config")
    fields = config.get("fields")
    if not isinstance(fields, dict) or not fields:
        raise MappingError("config.fields must name at least one field", "config.fields")
    direction = _direction(entry, config)
    conflict_rule = entry.get("conflict_rule", "last_writer_wins")
    if not isinstance(conflict_rule, str) or conflict_rule not in CONFLICT_RULES:
        raise MappingError(f"conflict_rule must be one of {', '.join(CONFLICT_RULES)}", "conflict_rule")
    active = entry.get("active", True)
    if not isinstance(active, bool):
        raise MappingError("active must be true or false (a JSON boolean)", "active")
    table = entry.get("table") or object_name.lower()
    schema = entry.get("schema") or default_schema
    for label, name in (("table", table), ("schema", schema)):
        if not isinstance(name, str) or not _PG_NAME.fullmatch(name):
            raise MappingError(f"{label} {name!r} must be a lowercase Postgres name", label)
        if name.startswith("pg_") or name == "information_schema":
            raise MappingError(f"{label} {name!r} is reserved for Postgres's own catalogs", label)
    if schema in RESERVED_SCHEMAS:
        raise MappingError(f"schema {schema!r} is reserved: it holds the connector's own tables", "schema")
    if table in RESERVED_TABLES:
        raise MappingError(f"table {table!r} is reserved for Heroku Connect's own table of that name", "table")
    specs = field_specs(fields, describe, parents)
    upsert_field = config.get("upsert_field") or None
    if upsert_field is not None and (not isinstance(upsert_field, str) or upsert_field not in {s.name for s in specs}):
        raise MappingError(f"upsert_field {str(upsert_field)[:80]} must be one of the mapped fields", "config.upsert_field")
    clashes = {s.column for s in specs} & set(SYSTEM_COLUMNS)
    if clashes:
        raise MappingError(f"fields clash with system columns: {', '.join(sorted(clashes))}")
    extra = {k: v for k, v in config.items() if k not in ("fields", "upsert_field", "access")}
    _check_sf_source(extra, direction)
    from core.loading import check_poll_options   # core.loading builds on this module
    from core.formulas import check_refresh_option   # core.formulas builds on this module
    problem = check_poll_options(extra) or check_refresh_option(extra) or _check_row_filter(extra)
    if problem:
        raise MappingError(f"{problem[0]} {problem[1]}", problem[0])
    return Mapping(object_name=object_name, table_schema=schema, table_name=table, direction=direction,
                   fields=specs, upsert_field=upsert_field, conflict_rule=conflict_rule,
                   active=active, extra=extra)


def _check_row_filter(extra: dict) -> tuple[str, str] | None:
    """`row_filter`: a SOQL condition (null or "" removes it). Salesforce parses it when it is saved."""
    if "row_filter" not in extra:
        return None
    if extra["row_filter"] in (None, ""):
        del extra["row_filter"]
        return None
    from core.soql import check_row_filter   # core.soql builds on this module
    problem = check_row_filter(extra["row_filter"])
    return ("config.row_filter", problem) if problem else None


# Where a reading mapping takes Salesforce's changes from (config key `sf_source`, kept in `extra`): Outbound
# Messages (today's behaviour; the backstop poll every sf_polling_seconds) or Change Data Capture (issue 13).
SF_SOURCES = ("outbound_message", "cdc")
DEFAULT_SF_SOURCE = "outbound_message"


def _check_sf_source(config: dict, direction: str) -> None:
    value = config.get("sf_source", DEFAULT_SF_SOURCE)
    if not isinstance(value, str) or value not in SF_SOURCES:
        raise MappingError(f"config.sf_source must be one of {', '.join(SF_SOURCES)}", "config.sf_source")
    if value == "cdc" and direction == "pg_to_sf":
        raise MappingError("config.sf_source cdc needs a mapping that reads from Salesforce (access read_only "
                           "or read_write)", "config.sf_source")


def sf_source(m: Mapping) -> str:
    """The mapping's Salesforce source: "outbound_message" (default) or "cdc"."""
    value = m.extra.get("sf_source", DEFAULT_SF_SOURCE)
    return value if value in SF_SOURCES else DEFAULT_SF_SOURCE


ACCESS = {"read_only": "sf_to_pg", "read_write": "bidirectional"}


def _direction(entry: dict, config: dict) -> str:
    """`direction` when given, else Heroku Connect's `config.access`; a value that is there must be valid
    (a misspelled access must never fall through to another direction)."""
    access = config.get("access", "read_only")
    if not isinstance(access, str) or access not in ACCESS:
        raise MappingError(f"config.access must be one of {', '.join(ACCESS)}", "config.access")
    direction = entry.get("direction", ACCESS[access])
    if not isinstance(direction, str) or direction not in DIRECTIONS:
        raise MappingError(f"direction must be one of {', '.join(DIRECTIONS)}", "direction")
    if "access" in config and (access == "read_only") != (direction == "sf_to_pg"):
        raise MappingError(f"direction {direction} contradicts config.access {access}", "direction")
    return direction


PATCHABLE_KEYS = ("config", "direction", "conflict_rule", "active")
FIXED_KEYS = ("id", "object_name", "table", "schema")   # a GET's body may be sent back with them unchanged


def patched(m: Mapping, body: dict, describe: dict | None = None, parents: dict | None = None) -> Mapping:
    """The mapping with a PATCH body applied, validated by from_entry exactly as a new one is: a key that is
    absent keeps its value, one that is present must be valid, an unknown key is refused. `describe` checks
    the fields when the body changes them."""
    if not isinstance(body, dict):
        raise MappingError("the body must be a JSON object")
    current = to_entry(m)
    for key in body:
        if key in FIXED_KEYS:
            if body[key] != current[key]:
                raise MappingError(f"{key} cannot be changed; create a new mapping instead", key)
        elif key not in PATCHABLE_KEYS:
            raise MappingError(f"unknown field {key[:80]!r}: a PATCH changes {', '.join(PATCHABLE_KEYS)}", key)
    config = body.get("config", {})
    if not isinstance(config, dict):
        raise MappingError("config must be an object", "config")
    entry = {**current, **{k: body[k] for k in PATCHABLE_KEYS if k in body},
             "config": {**current["config"], **config}}
    # Both given: from_entry refuses them when they disagree (a GET's body sent back must change both).
    if "access" in config and "direction" not in body:
        del entry["direction"]                 # the new access decides the direction
    elif "direction" in body and "access" not in config:
        del entry["config"]["access"]          # the stored access follows the old direction
    checked = from_entry(entry, describe if "fields" in config else None, default_schema=m.table_schema,
                         parents=parents)
    return replace(m, fields=checked.fields, direction=checked.direction, conflict_rule=checked.conflict_rule,
                   upsert_field=checked.upsert_field, active=checked.active, extra=checked.extra)


def to_entry(m: Mapping) -> dict:
    """The mapping in Heroku Connect's export shape, with our extras beside it."""
    fields = {"Id": {}, "SystemModstamp": {}, "IsDeleted": {}}
    fields.update({f.name: {"type": f.sf_type, **({"length": f.length} if f.length else {}),
                            **({"owner": f.owner} if f.owner != "both" else {})} for f in m.fields})
    config = {**m.extra, "access": "read_only" if m.direction == "sf_to_pg" else "read_write", "fields": fields}
    if m.upsert_field:
        config["upsert_field"] = m.upsert_field
    return {"id": m.id, "object_name": m.object_name, "config": config, "table": m.table_name,
            "schema": m.table_schema, "direction": m.direction, "conflict_rule": m.conflict_rule,
            "active": m.active}
