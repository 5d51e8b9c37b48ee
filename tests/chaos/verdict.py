"""The verdict after the load stops: do both sides agree, was anything lost or created twice, was every
acknowledged notification applied, and is every logged conflict one the load caused?"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal

from psycopg import sql

from tests.chaos.faults import REFUSAL_CODES
from tests.chaos.load import TABLE, Ledger
from tests.chaos.system import System

FIELDS = ("Name", "Amount__c", "Status__c", "External_Id__c")


@dataclass
class Drift:
    missing_in_postgres: list = field(default_factory=list)    # sfids
    missing_in_salesforce: list = field(default_factory=list)  # external ids (row never synced or deleted there)
    differ: list = field(default_factory=list)                 # (sfid, field, salesforce value, postgres value)
    duplicated_in_salesforce: list = field(default_factory=list)   # external ids on several records
    duplicated_in_postgres: list = field(default_factory=list)
    # records the org refused (validation or duplicate rule): FAILED with Salesforce's message on the row,
    # waiting for someone to fix the data; (external id or sfid, the row's _hc_err)
    failed_with_reason: list = field(default_factory=list)

    @property
    def lost(self) -> int:
        return (len(self.missing_in_postgres) + len(self.missing_in_salesforce)
                + len({d[0] for d in self.differ}))

    @property
    def duplicated(self) -> int:
        return len(self.duplicated_in_salesforce) + len(self.duplicated_in_postgres)

    def clean(self) -> bool:
        return not (self.lost or self.duplicated)

    def summary(self, limit: int = 5) -> dict:
        return {k: (v[:limit], len(v)) for k, v in self.__dict__.items() if v}


def _same(sf_value, pg_value) -> bool:
    if isinstance(pg_value, Decimal) or isinstance(sf_value, float):
        return sf_value is not None and pg_value is not None and Decimal(str(sf_value)) == Decimal(str(pg_value))
    return sf_value == pg_value


def drift(system: System) -> Drift:
    """Salesforce (SOQL through simple-salesforce) against Postgres (SQL), record by record."""
    sf = system.emulator.salesforce(client="chaos-verdict")
    remote = sf.query_all(f"SELECT Id, {', '.join(FIELDS)} FROM Invoice__c")["records"]
    rows = system.sql(sql.SQL("SELECT sfid, name, amount__c, status__c, external_id__c FROM {} "
                              "WHERE NOT coalesce(isdeleted, false)").format(TABLE))
    found = Drift()
    by_ext = Counter(r["External_Id__c"] for r in remote if r["External_Id__c"])
    found.duplicated_in_salesforce = sorted(e for e, n in by_ext.items() if n > 1)
    local_ext = Counter(r[4] for r in rows if r[4])
    found.duplicated_in_postgres = sorted(e for e, n in local_ext.items() if n > 1)
    local = {r[0]: r for r in rows if r[0]}
    found.missing_in_salesforce = sorted(str(r[4]) for r in rows if not r[0])     # external id
    for rec in remote:
        row = local.pop(rec["Id"], None)
        if row is None:
            found.missing_in_postgres.append(rec["Id"])
            continue
        for name, pg_value in zip(FIELDS, row[1:]):
            if not _same(rec[name], pg_value):
                found.differ.append((rec["Id"], name, rec[name], pg_value))
    found.missing_in_salesforce += sorted(str(r[4] or r[0]) for r in local.values())   # external id, else sfid
    _set_apart_refused(system, found)
    return found


def _set_apart_refused(system: System, found: Drift) -> None:
    """A record the org refused is not lost when its row says so: FAILED, with Salesforce's refusal in
    _hc_err (the console lists it; it is sent again once the data is changed)."""
    pattern = "|".join(REFUSAL_CODES)
    rows = system.sql(sql.SQL("SELECT external_id__c, sfid, _hc_err FROM {} WHERE _hc_lastop = 'FAILED' "
                              "AND _hc_err ~ %s").format(TABLE), (pattern,))
    reasons = {}
    for ext, sfid, err in rows:
        for key in (ext, sfid):
            if key:
                reasons[str(key)] = err
    if not reasons:
        return
    found.failed_with_reason = sorted({(k, reasons[k]) for k in found.missing_in_salesforce if k in reasons}
                                      | {(d[0], reasons[d[0]]) for d in found.differ if d[0] in reasons})
    apart = {k for k, _ in found.failed_with_reason}
    found.missing_in_salesforce = [k for k in found.missing_in_salesforce if k not in apart]
    found.differ = [d for d in found.differ if d[0] not in apart]


def quiet(system: System) -> bool:
    """Nothing in flight: no open change, no pending notification, the emulator's queue empty."""
    open_changes, pending = system.sql(
        "SELECT (SELECT count(*) FROM forcebridge.open_changes),"
        "       (SELECT count(*) FROM forcebridge.inbox WHERE state = 'pending')")[0]
    queued = system.emulator.admin("GET", "/_emulator/outbound/status")["queued"]
    return not (open_changes or pending or queued)


def converge(system: System, limit_s: float) -> tuple[float | None, Drift]:
    """Seconds until the two sides agree and nothing is in flight (None if they never did), last drift."""
    started = time.monotonic()
    last = None
    while time.monotonic() - started < limit_s:
        if quiet(system):
            last = drift(system)
            if last.clean() and quiet(system):
                return round(time.monotonic() - started, 2), last
        time.sleep(0.5)
    return None, last or drift(system)


def acknowledged_not_applied(system: System) -> dict:
    """Every notification the emulator saw acknowledged is in the inbox (a redelivery is the same Id)
    and applied."""
    status = system.emulator.admin("GET", "/_emulator/outbound/status")
    states = dict(system.sql("SELECT state, count(*) FROM forcebridge.inbox GROUP BY state"))
    stored = sum(states.values())
    return {"acked": status["acked"], "stored": stored, "dropped_by_salesforce": status["dropped"],
            "not_applied": stored - states.get("applied", 0),
            "acked_but_not_stored": max(0, status["acked"] - stored)}


def conflicts(system: System, ledger: Ledger) -> dict:
    """Every logged conflict must be a record the load changed on both sides. Not every such record is
    logged: when the Postgres change reached Salesforce before Salesforce's change reached Postgres, the
    two writes were in sequence, not in conflict (the drift check proves they agree)."""
    logged = system.sql("SELECT pg_values->>'external_id__c', winner FROM forcebridge.conflicts")
    both = ledger.touched["pg"] & ledger.touched["sf"]
    unexplained = [ext for ext, _ in logged if ext not in both]
    return {"both_sides_records": len(both), "simultaneous_writes": len(ledger.both_sides),
            "logged": len(logged), "winners": dict(Counter(w for _, w in logged)),
            "unexplained": len(unexplained), "examples": unexplained[:3]}


def explain(system: System, found: Drift, also: list[str] = (), limit: int = 3) -> list[dict]:
    """For a failed verdict: each drifted record's story on both sides (row, change log, inbox, changes);
    `also`: more external ids to tell (unexplained conflicts)."""
    exts = list(found.missing_in_salesforce[:limit]) + list(also)
    sfids = [s for s in found.missing_in_postgres[:limit]] + [d[0] for d in found.differ[:limit]]
    for sfid in sfids:
        row = system.sql(sql.SQL("SELECT external_id__c FROM {} WHERE sfid = %s").format(TABLE), (sfid,))
        exts.append(row[0][0] if row else sfid)
    stories = []
    for key in exts:
        rows = system.sql(sql.SQL("SELECT id, sfid, name, _hc_lastop, _hc_err FROM {} "
                                  "WHERE external_id__c = %s OR sfid = %s").format(TABLE), (key, key))
        record_ids = [r[0] for r in rows]
        sfids_known = {r[1] for r in rows if r[1]} | ({key} if len(key) == 18 else set())
        log = system.sql("SELECT id, op, record_id, sfid, state, attempts, created_at::time, finished_at::time, error::text "
                         "FROM forcebridge.change_log WHERE external_id = %s OR record_id = ANY(%s) "
                         "OR sfid = ANY(%s) ORDER BY id", (key, record_ids, list(sfids_known)))
        sfids_known |= {r[3] for r in log if r[3]}
        inbox = system.sql("SELECT notification_id, sfid, state, fields->>'Name', fields->>'SystemModstamp', "
                           "received_at::time FROM forcebridge.inbox WHERE sfid = ANY(%s) ORDER BY received_at",
                           (list(sfids_known),))
        changes = [c for c in system.emulator.admin("GET", "/_emulator/changes?since=0&limit=100000")["changes"]
                   if c["record_id"] in sfids_known]
        logged = system.sql("SELECT sfid, winner, pg_values::text, sf_values::text, pg_changed_at::time, "
                            "sf_changed_at::time, detected_at::time FROM forcebridge.conflicts "
                            "WHERE sfid = ANY(%s)", (list(sfids_known),))
        stories.append({"key": key, "rows": rows, "change_log": log, "inbox": inbox, "salesforce_changes": changes,
                        "conflicts": logged})
    return stories


def _job_result(system: System, response, timeout: float = 600.0) -> dict:
    """The check runs in the worker (202 and a job to follow); the older synchronous answer is taken as it is."""
    if response.status_code != 202:
        return response.json()
    url = response.json()["url"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = system.api("GET", url).json()
        if job["state"] in ("done", "failed"):
            return job["result"] or {"error": job["error"]}
        time.sleep(1.0)
    return {"error": f"{url} did not finish in {timeout:.0f} s"}


def reconcile(system: System) -> dict:
    """The product's own drift check (issue 6, POST /api/v1/mappings/<id>/reconcile): counts and per-record
    SystemModstamp, beside this suite's field-by-field comparison."""
    reports = {}
    for m in system.api("GET", "/api/v1/mappings").json()["mappings"]:
        r = system.api("POST", f"/api/v1/mappings/{m['id']}/reconcile")
        if r.status_code == 404 and "reconcile" not in r.text:
            return {"available": False}
        body = _job_result(system, r)
        reports[m["object_name"]] = {k: body.get(k) for k in (
            "in_sync", "salesforce_records", "postgres_rows", "missing_in_postgres", "deleted_in_salesforce",
            "older_in_postgres", "not_yet_in_salesforce")}
    # A row whose values match but whose SystemModstamp lags (our own write's echo was recognised and
    # dropped) counts as older_in_postgres there; the field-by-field check above decides about values.
    return {"available": True, "in_sync": all(r["in_sync"] for r in reports.values()),
            "records_differ": sum((r["missing_in_postgres"] or 0) + (r["deleted_in_salesforce"] or 0)
                                  for r in reports.values()),
            "stale_modstamps": sum(r["older_in_postgres"] or 0 for r in reports.values()), "reports": reports}
