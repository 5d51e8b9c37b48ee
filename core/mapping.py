"""Mappings: a Salesforce object <-> a Postgres table. Validation of the JSON users send, no I/O."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from core.convert import SUPPORTED_TYPES, FieldSpec

DIRECTIONS = ("sf_to_pg", "pg_to_sf", "bidirectional")
CONFLICT_RULES = ("last_writer_wins", "salesforce_wins", "postgres_wins")
SYSTEM_COLUMNS = ("id", "sfid", "systemmodstamp", "isdeleted", "_hc_lastop", "_hc_err")
# Fields every mapping carries whether or not the user lists them: they are the system columns.
IMPLIED_FIELDS = {"Id": "id", "SystemModstamp": "datetime", "IsDeleted": "boolean"}

MAX_FIELDS = 1000      # more than any Salesforce object has
_API_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_PG_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# Heroku Connect's relationship external-id fields: `<Relationship>__r__<parent's external id field>`, e.g.
# Account__r__External_Id__c (lookup AccountId) or Invoice__r__Code__c (lookup Invoice__c, relationship Invoice__r).
RELATIONSHIP_MARK = "__r__"
RELATIONSHIP_DEFAULT_LENGTH = 255


class MappingError(ValueError):
    """The mapping as given cannot be accepted; the message says why."""


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

    @property
    def read_fields(self) -> tuple[FieldSpec, ...]:
        """The fields Salesforce -> Postgres writes: relationship external-id columns are the app's alone."""
        return tuple(f for f in self.fields if not is_relationship(f.name))

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
    return FieldSpec(name=name, sf_type="string", length=_length(name, length or RELATIONSHIP_DEFAULT_LENGTH))


def field_specs(fields: dict, describe: dict | None, parents: dict | None = None) -> tuple[FieldSpec, ...]:
    """Fields as {"Name": {"type": "string", "length": 80}} or HC's {"Name": {}}; types come from the
    describe result when the entry has none. `parents`: describes of lookup targets by lowercase name, to
    check relationship external-id fields (Account__r__External_Id__c) against the parent's external ids."""
    if len(fields) > MAX_FIELDS:
        raise MappingError(f"a mapping takes at most {MAX_FIELDS} fields (Postgres tables hold at most 1,600 columns)")
    by_name = {f["name"].lower(): f for f in (describe or {}).get("fields", [])}
    specs = []
    for name, opts in fields.items():
        if not isinstance(name, str) or not _API_NAME.match(name) or len(name) > 63:
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
        specs.append(FieldSpec(name=(described or {}).get("name", name), sf_type=sf_type, length=length))
    if len({s.column for s in specs}) != len(specs):
        raise MappingError("two fields map to the same lowercase column name")
    return tuple(specs)


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
    object_name = entry.get("object_name")
    if not isinstance(object_name, str) or not _API_NAME.match(object_name):
        raise MappingError("object_name must be a Salesforce object API name")
    config = entry.get("config") or {}
    if not isinstance(config, dict):
        raise MappingError("config must be an object")
    fields = config.get("fields")
    if not isinstance(fields, dict) or not fields:
        raise MappingError("config.fields must name at least one field")
    direction = entry.get("direction") or {"read_only": "sf_to_pg", "read_write": "bidirectional"}.get(
        config.get("access", "read_only"))
    if direction not in DIRECTIONS:
        raise MappingError(f"direction must be one of {', '.join(DIRECTIONS)}")
    conflict_rule = entry.get("conflict_rule", "last_writer_wins")
    if conflict_rule not in CONFLICT_RULES:
        raise MappingError(f"conflict_rule must be one of {', '.join(CONFLICT_RULES)}")
    table = entry.get("table") or object_name.lower()
    schema = entry.get("schema") or default_schema
    for label, name in (("table", table), ("schema", schema)):
        if not isinstance(name, str) or not _PG_NAME.match(name):
            raise MappingError(f"{label} {name!r} must be a lowercase Postgres name")
        if name.startswith("pg_") or name == "information_schema":
            raise MappingError(f"{label} {name!r} is reserved for Postgres's own catalogs")
    specs = field_specs(fields, describe, parents)
    upsert_field = config.get("upsert_field") or None
    if upsert_field is not None and (not isinstance(upsert_field, str) or upsert_field not in {s.name for s in specs}):
        raise MappingError(f"upsert_field {upsert_field} must be one of the mapped fields")
    clashes = {s.column for s in specs} & set(SYSTEM_COLUMNS)
    if clashes:
        raise MappingError(f"fields clash with system columns: {', '.join(sorted(clashes))}")
    extra = {k: v for k, v in config.items() if k not in ("fields", "upsert_field", "access")}
    return Mapping(object_name=object_name, table_schema=schema, table_name=table, direction=direction,
                   fields=specs, upsert_field=upsert_field, conflict_rule=conflict_rule,
                   active=bool(entry.get("active", True)), extra=extra)


def to_entry(m: Mapping) -> dict:
    """The mapping in Heroku Connect's export shape, with our extras beside it."""
    fields = {"Id": {}, "SystemModstamp": {}, "IsDeleted": {}}
    fields.update({f.name: {"type": f.sf_type, **({"length": f.length} if f.length else {})} for f in m.fields})
    config = {**m.extra, "access": "read_only" if m.direction == "sf_to_pg" else "read_write", "fields": fields}
    if m.upsert_field:
        config["upsert_field"] = m.upsert_field
    return {"id": m.id, "object_name": m.object_name, "config": config, "table": m.table_name,
            "schema": m.table_schema, "direction": m.direction, "conflict_rule": m.conflict_rule,
            "active": m.active}
