"""The org's sObject types, loaded from describe JSON (shipped in emulator/objects/, extra ones from <data>/objects/)."""
import json
import pathlib

from emulator.objects import OBJECTS_DIR

TEXT_TYPES = {"string", "textarea", "picklist", "multipicklist", "email", "phone", "url", "id", "reference",
              "combobox", "encryptedstring"}
NUMBER_TYPES = {"double", "currency", "percent", "int", "long"}
SYSTEM_FIELDS = ("Id", "IsDeleted", "CreatedDate", "CreatedById", "LastModifiedDate", "LastModifiedById",
                 "SystemModstamp")


class SObjectType:
    """One sObject type: its describe JSON plus case-insensitive lookups of fields and relationships."""

    def __init__(self, describe: dict):
        self.describe = describe
        self.name: str = describe["name"]
        self.key_prefix: str = describe["keyPrefix"]
        self.fields: dict[str, dict] = {f["name"].lower(): f for f in describe["fields"]}
        self.relationships: dict[str, dict] = {
            f["relationshipName"].lower(): f for f in describe["fields"]
            if f["type"] == "reference" and f.get("relationshipName")}
        self.table = "so_" + self.name
        self.field_names = [f["name"] for f in describe["fields"]]
        # Precomputed for the write path: a 200-record collection call validates 200 bodies.
        self.required = [f["name"] for f in describe["fields"]
                         if f["createable"] and not f["nillable"] and not f["defaultedOnCreate"]
                         and f["type"] != "boolean"]
        self.insert_defaults = _insert_defaults(describe["fields"])
        self.unique_fields = [f["name"] for f in describe["fields"] if f.get("unique") and f["name"] != "Id"]
        missing = [name for name in SYSTEM_FIELDS if name.lower() not in self.fields]
        if missing:
            raise ValueError(f"{self.name}: describe lacks system fields {missing}")

    def field(self, name: str) -> dict | None:
        return self.fields.get(name.lower())

    def relationship(self, name: str) -> dict | None:
        return self.relationships.get(name.lower())

    @property
    def label(self) -> str:
        return self.describe.get("label", self.name)

    def has_compound_name(self) -> bool:
        """Contact/Lead/User style Name = FirstName + LastName, computed by the org."""
        name = self.field("Name")
        return bool(name and not name["createable"] and self.field("LastName"))


def _insert_defaults(fields: list[dict]) -> dict:
    """Values an insert gets when the body leaves the field out: boolean and picklist defaults."""
    result = {}
    for field in fields:
        if not field["createable"]:
            continue
        if field["type"] == "boolean":
            result[field["name"]] = int(bool(field.get("defaultValue")))
        elif field["type"] == "picklist":
            for entry in field["picklistValues"]:
                if entry.get("defaultValue"):
                    result[field["name"]] = entry["value"]
    return result


def load_types(extra_dir: pathlib.Path | None = None) -> dict[str, SObjectType]:
    """All sObject types by lower-case name; a file in extra_dir replaces a shipped one of the same name."""
    files = {p.name: p for p in sorted(OBJECTS_DIR.glob("*.json"))}
    if extra_dir is not None and extra_dir.is_dir():
        files.update({p.name: p for p in sorted(extra_dir.glob("*.json"))})
    types = {}
    for path in files.values():
        describe = json.loads(path.read_text())
        describe.pop("_SOURCE", None)
        sobject = SObjectType(describe)
        types[sobject.name.lower()] = sobject
    return types
