"""Export and import of the whole configuration: Heroku Connect's JSON shape (`heroku connect:export`), or
ours (the same plus types, table names, direction and conflict rule). Pure: documents in, mapping entries
and an import plan out."""
from __future__ import annotations

import re
from dataclasses import dataclass, replace

from core.mapping import Mapping, MappingError, from_entry, is_api_name, to_entry

FLAVORS = ("heroku", "forcebridge")
# What Heroku Connect writes for a mapping we know nothing more about (its defaults).
HEROKU_DEFAULTS = {"sf_notify_enabled": False, "sf_polling_seconds": 600, "sf_max_daily_api_calls": 30000}
DEFAULT_INDEXES = {"Id": {"unique": True}, "SystemModstamp": {"unique": False}}
VERSIONS = (1,)
_OUR_KEYS = ("table", "schema", "direction", "conflict_rule", "active")
# `heroku connect:export` names the connection `<app>:<config var>:<schema>`
_CONNECTION_NAME = re.compile(r"^[^:]*:[A-Za-z0-9_]+:(?P<schema>[^:]+)$")
# Connection keys that describe one export, not the connection: never stored, never compared.
_TRANSIENT_CONNECTION_KEYS = ("exported_at",)


def export_document(mappings: list[Mapping], connection: dict, flavor: str) -> dict:
    """`connection`: the stored connection block (from the last import) or the one we make up."""
    if flavor not in FLAVORS:
        raise ValueError(f"flavor must be one of {', '.join(FLAVORS)}")
    entries = [to_entry(m) for m in mappings]
    if flavor == "heroku":
        schema = default_schema(connection)
        entries = [_heroku_entry(e, schema) for e in entries]
    else:
        entries = [{k: v for k, v in e.items() if k != "id"} for e in entries]
    doc = {"version": 1, "connection": dict(connection), "mappings": entries}
    if flavor == "forcebridge":
        doc["format"] = "forcebridge"
    return doc


def _heroku_entry(entry: dict, schema: str) -> dict:
    """Heroku Connect's entry; what it cannot say (a table name of our own, Postgres -> Salesforce only, a
    conflict rule, a paused mapping) rides beside `config` only when it differs from what HC would do."""
    config = {**HEROKU_DEFAULTS, **entry["config"]}
    # Heroku Connect lists field names only; it reads the types from Salesforce on import.
    config["fields"] = {name: {} for name in config["fields"]}
    config.setdefault("indexes", dict(DEFAULT_INDEXES))
    out = {"object_name": entry["object_name"], "config": config}
    ours = {"table": entry["object_name"].lower(), "schema": schema,
            "direction": "sf_to_pg" if config["access"] == "read_only" else "bidirectional",
            "conflict_rule": "last_writer_wins", "active": True}
    out.update({k: entry[k] for k, usual in ours.items() if entry[k] != usual})
    return out


def read_document(doc) -> tuple[dict, list[dict]]:
    """(connection, mapping entries) from an export of either flavor; entries are checked later against
    Salesforce's describe by core.mapping.from_entry."""
    if not isinstance(doc, dict):
        raise MappingError("the configuration must be a JSON object")
    if "version" in doc and doc["version"] not in VERSIONS:
        raise MappingError(f"version {doc['version']!r} is not one this connector reads (1)")
    mappings = doc.get("mappings")
    if not isinstance(mappings, list):
        raise MappingError('the configuration has no "mappings" list')
    connection = {} if doc.get("connection") is None else doc["connection"]
    if not isinstance(connection, dict):
        raise MappingError('"connection" must be an object')
    if "features" in connection and not isinstance(connection["features"], dict):
        raise MappingError('connection.features must be an object')
    default_schema(connection)
    seen = set()
    for i, entry in enumerate(mappings):
        if not isinstance(entry, dict) or not isinstance(entry.get("object_name"), str):
            raise MappingError(f"mapping #{i + 1} has no object_name")
        if not is_api_name(entry["object_name"]):
            # checked before anything asks Salesforce about it: the name becomes part of a describe URL
            raise MappingError(f"mapping #{i + 1}: object_name {entry['object_name'][:80]!r} is not a Salesforce "
                               "API name")
        key = entry["object_name"].lower()
        if key in seen:
            raise MappingError(f"{entry['object_name']} is mapped twice")
        seen.add(key)
    return connection, mappings


def default_schema(connection: dict) -> str:
    """The mapped tables' schema: ours says `schema_name`; Heroku Connect's export names the connection
    `<app>:DATABASE_URL:<schema>`."""
    if connection.get("schema_name"):
        return connection["schema_name"]
    name = connection.get("name")
    if name is None or name == "":
        return "salesforce"
    match = _CONNECTION_NAME.match(name) if isinstance(name, str) else None
    if match is None:
        if isinstance(name, str) and ":" not in name:
            return "salesforce"          # a plain label (our own older exports)
        raise MappingError(f"connection.name {str(name)[:80]!r} is not <app>:<DATABASE_URL>:<schema>")
    return match.group("schema")


def connection_to_store(connection: dict) -> dict:
    """The connection block as kept (and exported again): without the moment of one export."""
    return {k: v for k, v in connection.items() if k not in _TRANSIENT_CONNECTION_KEYS}


def made_up_connection(org_id: str | None, api_version: str, schema: str) -> dict:
    """The connection block when none was ever imported."""
    return {"app_name": "forcebridge", "organization_id": org_id or "", "api_version": api_version,
            "name": f"forcebridge:DATABASE_URL:{schema}", "features": {}}


def our_extras(entry: dict) -> dict:
    return {k: entry[k] for k in _OUR_KEYS if k in entry}


# --- an import, planned -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ImportStep:
    action: str                    # create | update | unchanged
    mapping: Mapping               # what will be saved (with the existing id for update/unchanged)


def typed_from_existing(entry: dict, existing: Mapping | None) -> dict:
    """Without a describe, fields the existing mapping knows keep their stored types (Heroku Connect's
    export lists names only): re-importing an export of ours needs no Salesforce connection."""
    config = entry.get("config")
    if existing is None or not isinstance(config, dict) or not isinstance(config.get("fields"), dict):
        return entry
    fields = {}
    for name, opts in config["fields"].items():
        known = existing.field(name) if isinstance(name, str) else None
        if known is not None and isinstance(opts, dict) and not opts.get("type"):
            opts = {"type": known.sf_type, **({"length": known.length} if known.length else {}), **opts}
        fields[name] = opts
    return {**entry, "config": {**config, "fields": fields}}


def plan_import(entries: list[dict], existing: dict[str, Mapping], schema: str, describes: dict,
                parents: dict) -> list[ImportStep]:
    """Every entry checked before anything is written; an error names the mapping (and the field, from
    core.mapping). `existing`/`describes` by lowercase object name (a describe may be None: not connected);
    `parents`: describes of lookup targets by lowercase name."""
    steps = []
    for entry in entries:
        name = entry["object_name"]
        old = existing.get(name.lower())
        try:
            describe = describes.get(name.lower())
            m = from_entry(typed_from_existing(entry, old) if describe is None else entry, describe=describe,
                           default_schema=schema, parents=parents)
        except MappingError as exc:
            raise MappingError(f"mapping {name}: {exc}") from None
        if old is None:
            steps.append(ImportStep("create", m))
            continue
        if (m.table_schema, m.table_name) != (old.table_schema, old.table_name) and (
                "table" in entry or "schema" in entry):
            raise MappingError(f"mapping {name}: it is mapped to {old.table_schema}.{old.table_name} already; "
                               f"an import does not move it to {m.table_schema}.{m.table_name}")
        candidate = replace(old, fields=m.fields, direction=m.direction, upsert_field=m.upsert_field,
                            conflict_rule=m.conflict_rule, active=m.active, extra=m.extra)
        same = _comparable(candidate) == _comparable(old)
        steps.append(ImportStep("unchanged" if same else "update", old if same else candidate))
    return steps


def _comparable(m: Mapping) -> tuple:
    """A mapping as an import would change it: Heroku Connect's defaults count as given."""
    extra = {**HEROKU_DEFAULTS, "indexes": DEFAULT_INDEXES, **m.extra}
    return (m.fields, m.direction, m.upsert_field, m.conflict_rule, m.active, extra)
