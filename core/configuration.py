"""Export and import of the whole configuration: Heroku Connect's JSON shape, or ours (the same plus types,
table names, direction and conflict rule). Pure: documents in, mapping entries out."""
from __future__ import annotations

from core.mapping import Mapping, MappingError, to_entry

FLAVORS = ("heroku", "forcebridge")
# What Heroku Connect writes for a mapping we know nothing more about (its defaults).
HEROKU_DEFAULTS = {"sf_notify_enabled": False, "sf_polling_seconds": 600, "sf_max_daily_api_calls": 30000}
_OUR_KEYS = ("table", "schema", "direction", "conflict_rule", "active")


def export_document(mappings: list[Mapping], connection: dict, flavor: str) -> dict:
    if flavor not in FLAVORS:
        raise ValueError(f"flavor must be one of {', '.join(FLAVORS)}")
    entries = [to_entry(m) for m in mappings]
    if flavor == "heroku":
        entries = [_heroku_entry(e) for e in entries]
    else:
        entries = [{k: v for k, v in e.items() if k != "id"} for e in entries]
    doc = {"version": 1, "connection": dict(connection), "mappings": entries}
    if flavor == "forcebridge":
        doc["format"] = "forcebridge"
    return doc


def _heroku_entry(entry: dict) -> dict:
    config = {**HEROKU_DEFAULTS, **entry["config"]}
    # Heroku Connect lists field names only; it reads the types from Salesforce on import.
    config["fields"] = {name: {} for name in config["fields"]}
    config.setdefault("indexes", {"Id": {"unique": True}, "SystemModstamp": {"unique": False}})
    return {"object_name": entry["object_name"], "config": config}


def read_document(doc) -> tuple[dict, list[dict]]:
    """(connection, mapping entries) from an export of either flavor; entries are checked later against
    Salesforce's describe by core.mapping.from_entry."""
    if not isinstance(doc, dict):
        raise MappingError("the configuration must be a JSON object")
    mappings = doc.get("mappings")
    if not isinstance(mappings, list):
        raise MappingError('the configuration has no "mappings" list')
    connection = doc.get("connection") or {}
    if not isinstance(connection, dict):
        raise MappingError('"connection" must be an object')
    seen = set()
    for i, entry in enumerate(mappings):
        if not isinstance(entry, dict) or not isinstance(entry.get("object_name"), str):
            raise MappingError(f"mapping #{i + 1} has no object_name")
        key = entry["object_name"].lower()
        if key in seen:
            raise MappingError(f"{entry['object_name']} is mapped twice")
        seen.add(key)
    return connection, mappings


def default_schema(connection: dict) -> str:
    """Heroku Connect names the connection's schema `schema_name`; ours is the same key."""
    return connection.get("schema_name") or "salesforce"


def our_extras(entry: dict) -> dict:
    return {k: entry[k] for k in _OUR_KEYS if k in entry}
