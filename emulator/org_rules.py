"""An org's own refusals, per object: validation rules, duplicate rules and trigger-like failures.

Configured through the admin API (PUT /_emulator/rules) or a rules.json file in the --data directory:

    {"Account": {
        "validationRules": [{"name": "Amount_Not_Negative", "condition": "AnnualRevenue < 0",
                             "message": "Revenue cannot be negative", "field": "AnnualRevenue"}],
        "duplicateRules": [{"name": "Account_Name", "fields": ["Name"]}],
        "triggers": [{"name": "AccountTrigger", "condition": "Name = 'boom'", "message": "no booms"}],
        "lockRate": 0.05}}

A validation rule refuses the record when its condition is TRUE (Salesforce's error condition formula).
"""
from __future__ import annotations

import contextvars
import json
import pathlib
import random
import threading

from emulator import ids
from emulator.errors import SalesforceError
from emulator.formula import FormulaError, parse

FILE_NAME = "rules.json"
# The current call asked to save duplicates (Sforce-Duplicate-Rule-Header: allowSave=true).
ALLOW_SAVE: contextvars.ContextVar[bool] = contextvars.ContextVar("allow_save", default=False)
DUPLICATE_MESSAGE = "Use one of these records?"
_KEYS = {"validationRules", "duplicateRules", "triggers", "lockRate"}


def allow_save_from(header: str | None) -> bool:
    """Sforce-Duplicate-Rule-Header: "allowSave=true, includeRecordDetails=false, runAsCurrentUser=true"."""
    for part in (header or "").split(","):
        key, _, value = part.strip().partition("=")
        if key.strip().lower() == "allowsave":
            return value.strip().lower() == "true"
    return False


class OrgRules:
    """The rules of every object, checked on each insert and update by the store (thread-safe)."""

    def __init__(self, data_dir: pathlib.Path | None = None, seed: int = 0):
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self._path = None if data_dir is None else pathlib.Path(data_dir) / FILE_NAME
        self._config: dict = {}
        self._compiled: dict = {}
        if self._path is not None and self._path.exists():
            self.configure(json.loads(self._path.read_text()), persist=False)

    def configure(self, config: dict, persist: bool = True) -> dict:
        """Replace every rule; ValueError naming the bad part leaves the old rules in place."""
        compiled = compile_rules(config)
        with self._lock:
            self._config = json.loads(json.dumps(config))
            self._compiled = compiled
        if persist and self._path is not None:
            self._path.write_text(json.dumps(self._config, indent=2))
        return self.snapshot()

    def snapshot(self) -> dict:
        with self._lock:
            return json.loads(json.dumps(self._config))

    def for_object(self, name: str) -> dict | None:
        return self._compiled.get(name.lower())

    def draw(self) -> float:
        with self._lock:
            return self._random.random()

    def check(self, sobject: str, record: dict, prior: dict | None, find_duplicate) -> None:
        """Raise the SalesforceError an org gives `record` (field -> JSON value, after the write), or nothing.

        `prior`: the stored record on an update, None on an insert. `find_duplicate(fields, record)` returns
        the Id of a live record (not this one) whose values match on every field, or None."""
        rules = self.for_object(sobject)
        if not rules:
            return
        for rule in rules["validationRules"]:
            if rule["formula"].evaluate(record, prior) is True:
                raise SalesforceError(400, "FIELD_CUSTOM_VALIDATION_EXCEPTION", rule["message"],
                                      [rule["field"]] if rule.get("field") else [])
        for trigger in rules["triggers"]:
            if trigger["formula"] is None or trigger["formula"].evaluate(record, prior) is True:
                when = "BeforeInsert" if prior is None else "BeforeUpdate"
                raise SalesforceError(400, "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY",
                                      f"{trigger['name']}: execution of {when} caused by: {trigger['message']}", [])
        if rules["lockRate"] and self.draw() < rules["lockRate"]:
            raise SalesforceError(400, "UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access to this record", [])
        if ALLOW_SAVE.get():
            return
        for rule in rules["duplicateRules"]:
            match = find_duplicate(rule["fields"], record)
            if match is not None:
                raise duplicates_detected(rule, rules["name"], match)


def duplicates_detected(rule: dict, sobject: str, match_id: str) -> SalesforceError:
    """DUPLICATES_DETECTED with the DuplicateResult the API documents (duplicateRule, matchResults ...)."""
    error = SalesforceError(400, "DUPLICATES_DETECTED", DUPLICATE_MESSAGE, [])
    error.extra = {"duplicateResult": {
        "allowSave": False,
        "duplicateRule": rule["name"],
        "duplicateRuleEntityType": sobject,
        "errorMessage": rule.get("message") or "You're creating a duplicate record. We recommend you use an "
                                               "existing record instead.",
        "matchResults": [{
            "entityType": sobject, "errors": [], "matchEngine": "ExactMatchEngine",
            "matchRecords": [{"additionalInformation": [], "fieldDiffs": [], "matchConfidence": 100.0,
                              "record": {"attributes": {"type": sobject}, "Id": ids.to18(match_id)}}],
            "rule": rule.get("matchingRule") or f"{rule['name']}_Match_Rule", "size": 1, "success": True}]}}
    return error


def compile_rules(config) -> dict:
    """Parse every formula; ValueError naming the object, rule and problem."""
    if not isinstance(config, dict):
        raise ValueError("rules: a JSON object keyed by sObject name")
    compiled = {}
    for sobject, rules in config.items():
        if not isinstance(rules, dict) or set(rules) - _KEYS:
            raise ValueError(f"rules.{sobject}: an object with {sorted(_KEYS)}")
        entry = {"name": sobject, "validationRules": [], "duplicateRules": [], "triggers": [], "lockRate": 0.0}
        for i, rule in enumerate(rules.get("validationRules") or []):
            where = f"rules.{sobject}.validationRules[{i}]"
            _need(rule, ("name", "condition", "message"), where)
            if rule.get("active", True):
                entry["validationRules"].append({**rule, "formula": _formula(rule["condition"], where)})
        for i, rule in enumerate(rules.get("duplicateRules") or []):
            where = f"rules.{sobject}.duplicateRules[{i}]"
            _need(rule, ("name",), where)
            fields = rule.get("fields")
            if not isinstance(fields, list) or not fields or not all(isinstance(f, str) and f for f in fields):
                raise ValueError(f"{where}.fields: a non-empty list of field names")
            if rule.get("active", True):
                entry["duplicateRules"].append(rule)
        for i, trigger in enumerate(rules.get("triggers") or []):
            where = f"rules.{sobject}.triggers[{i}]"
            _need(trigger, ("name", "message"), where)
            formula = _formula(trigger["condition"], where) if trigger.get("condition") else None
            entry["triggers"].append({**trigger, "formula": formula})
        rate = rules.get("lockRate", 0.0)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
            raise ValueError(f"rules.{sobject}.lockRate: a number from 0 to 1")
        entry["lockRate"] = float(rate)
        compiled[sobject.lower()] = entry
    return compiled


def _need(rule, keys, where: str) -> None:
    if not isinstance(rule, dict):
        raise ValueError(f"{where}: an object")
    for key in keys:
        if not isinstance(rule.get(key), str) or not rule[key].strip():
            raise ValueError(f"{where}.{key}: required text")


def _formula(text, where: str):
    try:
        return parse(text)
    except FormulaError as exc:
        raise ValueError(f"{where}.condition: {exc}") from None
