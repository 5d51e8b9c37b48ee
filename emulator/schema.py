"""The org's sObject types, loaded from describe JSON (shipped in emulator/objects/, extra ones from <data>/objects/)."""
import datetime as dt
import json
import pathlib

from emulator.objects import OBJECTS_DIR

TEXT_TYPES = {"string", "textarea", "picklist", "multipicklist", "email", "phone", "url", "id", "reference",
              "combobox", "encryptedstring"}
NUMBER_TYPES = {"double", "currency", "percent", "int", "long"}


# What a field gets when a user's describe JSON leaves a property out (a real describe has them all).
FIELD_DEFAULTS = {
    "aggregatable": True, "autoNumber": False, "byteLength": 0, "calculated": False, "calculatedFormula": None,
    "cascadeDelete": False, "caseSensitive": False, "compoundFieldName": None, "controllerName": None,
    "createable": True, "custom": False, "defaultValue": None, "defaultValueFormula": None,
    "defaultedOnCreate": False, "dependentPicklist": False, "deprecatedAndHidden": False, "digits": 0,
    "displayLocationInDecimal": False, "encrypted": False, "externalId": False, "extraTypeInfo": None,
    "filterable": True, "filteredLookupInfo": None, "groupable": True, "highScaleNumber": False,
    "htmlFormatted": False, "idLookup": False, "inlineHelpText": None, "length": 0, "mask": None,
    "maskType": None, "nameField": False, "namePointing": False, "nillable": True, "permissionable": True,
    "picklistValues": [], "polymorphicForeignKey": False, "precision": 0, "queryByDistance": False,
    "referenceTargetField": None, "referenceTo": [], "relationshipName": None, "relationshipOrder": None,
    "restrictedDelete": False, "restrictedPicklist": False, "scale": 0, "soapType": "xsd:string",
    "sortable": True, "type": "string", "unique": False, "updateable": True, "writeRequiresMasterRead": False,
}
SOBJECT_DEFAULTS = {
    "actionOverrides": [], "activateable": False, "childRelationships": [], "compactLayoutable": True,
    "createable": True, "customSetting": False, "deletable": True, "deprecatedAndHidden": False,
    "feedEnabled": False, "layoutable": True, "mergeable": False, "mruEnabled": True, "namedLayoutInfos": [],
    "queryable": True, "recordTypeInfos": [], "replicateable": True, "retrieveable": True,
    "searchLayoutable": True, "searchable": True, "triggerable": True, "undeletable": True, "updateable": True,
    "urls": {},
}


_SYSTEM_FIELD_DEFS = [
    {"name": "Id", "type": "id", "label": "Record ID", "soapType": "tns:ID", "length": 18, "byteLength": 18,
     "createable": False, "updateable": False, "nillable": False, "defaultedOnCreate": True, "idLookup": True},
    {"name": "IsDeleted", "type": "boolean", "label": "Deleted", "soapType": "xsd:boolean", "createable": False,
     "updateable": False, "nillable": False, "defaultedOnCreate": True, "defaultValue": False},
    {"name": "CreatedDate", "type": "datetime", "label": "Created Date", "soapType": "xsd:dateTime",
     "createable": False, "updateable": False, "nillable": False, "defaultedOnCreate": True},
    {"name": "CreatedById", "type": "reference", "label": "Created By ID", "soapType": "tns:ID", "length": 18,
     "byteLength": 18, "createable": False, "updateable": False, "nillable": False, "defaultedOnCreate": True,
     "referenceTo": ["User"], "relationshipName": "CreatedBy"},
    {"name": "LastModifiedDate", "type": "datetime", "label": "Last Modified Date", "soapType": "xsd:dateTime",
     "createable": False, "updateable": False, "nillable": False, "defaultedOnCreate": True},
    {"name": "LastModifiedById", "type": "reference", "label": "Last Modified By ID", "soapType": "tns:ID",
     "length": 18, "byteLength": 18, "createable": False, "updateable": False, "nillable": False,
     "defaultedOnCreate": True, "referenceTo": ["User"], "relationshipName": "LastModifiedBy"},
    {"name": "SystemModstamp", "type": "datetime", "label": "System Modstamp", "soapType": "xsd:dateTime",
     "createable": False, "updateable": False, "nillable": False, "defaultedOnCreate": True},
]


def complete(describe: dict) -> dict:
    """A user's (possibly partial) describe with every property a client may read filled in.

    The minimum is {"name": "Widget__c", "keyPrefix": "a0W", "fields": [{"name": "Name"}, ...]}; system
    fields (Id, IsDeleted, CreatedDate, ..., SystemModstamp) are added when missing.
    """
    present = {f["name"].lower() for f in describe["fields"]}
    describe = {**describe, "fields": [f for f in _SYSTEM_FIELD_DEFS if f["name"].lower() not in present]
                + list(describe["fields"])}
    full = {**SOBJECT_DEFAULTS, **describe}
    full.setdefault("label", full["name"])
    full.setdefault("labelPlural", full["label"] + "s")
    full.setdefault("custom", full["name"].endswith("__c"))
    full["fields"] = [{**FIELD_DEFAULTS, "label": f["name"], "custom": f["name"].endswith("__c"), **f}
                      for f in describe["fields"]]
    return full


class SObjectType:
    """One sObject type: its describe JSON plus case-insensitive lookups of fields and relationships."""

    def __init__(self, describe: dict):
        describe = complete(describe)
        self.describe = describe
        self.modified: dt.datetime | None = None      # when its describe JSON last changed (If-Modified-Since)
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
        sobject.modified = dt.datetime.fromtimestamp(int(path.stat().st_mtime), dt.timezone.utc)
        types[sobject.name.lower()] = sobject
    return types
