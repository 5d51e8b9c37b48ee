"""Initial push: rows of a writing mapping that never reached Salesforce go into the change log (the write
path sends them); above a threshold they go in Bulk API 2.0 ingest jobs instead of 200-record calls."""
from __future__ import annotations

import csv
import io
import logging
import time
import uuid
from dataclasses import dataclass

from core.change_states import RecordResult, State
from core.changes import ChangeLogEntry, Outcome, coalesce, outcome_of, references_parents
from core.loading import bulk_error
from core.mapping import Mapping
from gateway import change_log, staging
from gateway.db import Database
from gateway.salesforce import MAX_BUNDLE, PermanentError, Salesforce, SalesforceError
from jobs import drain

log = logging.getLogger("forcebridge.push")


@dataclass(frozen=True)
class PushOptions:
    bulk_threshold: int = 2_000      # more rows than this go through Bulk ingest (when the mapping has an upsert field)
    job_records: int = 10_000        # records per ingest job
    lease_seconds: int = 900
    job_wait_seconds: float = 3600.0
    bundle: int = MAX_BUNDLE         # Collections requests an API call carries (DRAIN_BUNDLE)


def enqueue(db: Database, m: Mapping) -> int:
    """Log every row without sfid as an insert (idempotent: rows with an open change are skipped)."""
    with db.transaction() as conn:
        queued = staging.enqueue_push(conn, m)
        if queued:
            change_log.notify_changes(conn, m.id)
    return queued


def initial_push(db: Database, sf: Salesforce | None, m: Mapping, options: PushOptions = PushOptions()) -> dict:
    """Queue the rows; send them by Bulk ingest when there are many. Below the threshold (or without an upsert
    field to match results by) the drain sends them, as it sends every change."""
    queued = enqueue(db, m)
    with db.transaction() as conn:
        waiting = staging.rows_without_sfid(conn, m)
    result = {"queued": queued, "waiting": waiting, "bulk_jobs": 0, "outcomes": {}}
    if sf is None or waiting <= options.bulk_threshold or not m.upsert_field:
        return result
    token = uuid.uuid4().hex      # as the drain's: a push whose lease lapsed cannot finish the entries
    while True:
        entries = _claim(db, m, options, token)
        if not entries:
            break
        outcomes = _push_bulk(db, sf, m, entries, options, token)
        result["bulk_jobs"] += 1
        for state, n in outcomes.items():
            result["outcomes"][state] = result["outcomes"].get(state, 0) + n
        if outcomes.get("REQUEUED") == len(entries):
            break   # the job failed as a whole; the drain retries these entries on its schedule
    return result


def _claim(db: Database, m: Mapping, options: PushOptions, token: str) -> list[ChangeLogEntry]:
    change_log.absorb(db)
    with db.transaction() as conn:
        db.run(conn, "lock_claims")
        rows = db.run(conn, "claim_initial_push", {"mapping_id": m.id, "limit": options.job_records, "claim": token,
                                                   "lease_seconds": options.lease_seconds}).fetchall()
    return change_log.entries_from_rows(rows)


def _push_bulk(db: Database, sf: Salesforce, m: Mapping, entries: list[ChangeLogEntry], options: PushOptions,
               token: str) -> dict:
    """One ingest job (upsert on the external id) for the claimed inserts; results matched by external id
    and finished exactly as the drain finishes Collections results."""
    drain_options = drain.DrainOptions(lease_seconds=options.lease_seconds)
    writes, nothing = drain.plan(db, sf, m, coalesce(entries))
    drain.mark_sending(db, writes, token)
    # Writes naming a parent by its external id go by Collections after the job, which may create the parent.
    referencing = [w for w in writes if references_parents([w])]
    plain = [w for w in writes if not references_parents([w])]
    upserts = [w for w in plain if w.op == "upsert"]
    others = [w for w in plain if w.op != "upsert"]         # gained an sfid meanwhile: Collections calls
    finished = [RecordResult(c, Outcome(State.MERGED)) for c in nothing]
    finished.extend(RecordResult(w.change, o, w) for w, o in drain.send_in_order(sf, others, options.bundle))
    if upserts:
        # the job may outlast the lease: it is renewed while the push polls the job
        finished.extend(_ingest(sf, m, upserts, options, lambda: drain.renew_lease(db, drain_options, token)))
    finished.extend(RecordResult(w.change, o, w) for w, o in drain.send_in_order(sf, referencing, options.bundle))
    drain.finish(db, m, finished, drain_options, token)
    counts: dict = {}
    for r in finished:
        counts[str(r.outcome.state)] = counts.get(str(r.outcome.state), 0) + 1
    log.info("initial push of %s: %s records in one ingest job: %s", m.object_name, len(upserts), counts)
    return counts


def _ingest(sf: Salesforce, m: Mapping, upserts: list, options: PushOptions, renew) -> list:
    ext = upserts[0].ext_field
    names = list(upserts[0].body)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(names)
    for w in upserts:
        writer.writerow([_csv_value(w.body.get(n)) for n in names])
    try:
        job = sf.bulk_ingest(m.object_name, "upsert", out.getvalue().encode(), external_id=ext)
        job = _wait(sf, job["id"], options, renew)
        if job["state"] == "Failed":
            raise PermanentError(400, "BULK_JOB_FAILED", job.get("errorMessage") or job["state"])
        if job["state"] != "JobComplete":
            raise SalesforceError(500, "BULK_JOB_FAILED", job.get("errorMessage") or job["state"])
        results = _results(sf, job["id"], ext)
    except PermanentError as exc:
        # Refused as a whole (one record's value can fail a job): record by record through Collections
        # calls instead, which isolate the records Salesforce refuses (gateway/salesforce.py split_records).
        log.warning("ingest job for %s records of %s refused as a whole (%s); sending them by Collections",
                    len(upserts), m.object_name, exc)
        return [RecordResult(w.change, o, w) for w, o in drain.send_in_order(sf, upserts, options.bundle)]
    except SalesforceError as exc:
        return [RecordResult(w.change, Outcome(State.REQUEUED, error=exc.as_errors()), w) for w in upserts]
    finished = []
    for w in upserts:
        item = results.get(str(w.body.get(ext)))
        if item is None:   # unprocessed: another try later
            item = {"success": False, "errors": [{"statusCode": "SERVER_UNAVAILABLE",
                                                  "message": "not processed by the ingest job"}]}
        finished.append(RecordResult(w.change, outcome_of(w, item), w))
    return finished


def _wait(sf: Salesforce, job_id: str, options: PushOptions, renew) -> dict:
    delay, waited, renewed = 0.05, 0.0, 0.0
    while True:
        job = sf.bulk_ingest_job(job_id)
        if waited - renewed >= options.lease_seconds / 3:
            renew()
            renewed = waited
        if job["state"] in ("JobComplete", "Failed", "Aborted") or waited > options.job_wait_seconds:
            return job
        time.sleep(delay)
        waited += delay
        delay = min(delay * 1.5, 2.0)


def _results(sf: Salesforce, job_id: str, ext: str) -> dict[str, dict]:
    """External id -> a Collections-shaped result item."""
    items = {}
    for row in csv.DictReader(io.StringIO(sf.bulk_ingest_results(job_id, "successfulResults"))):
        items[row.get(ext, "")] = {"success": True, "id": row["sf__Id"], "created": row.get("sf__Created") == "true"}
    for row in csv.DictReader(io.StringIO(sf.bulk_ingest_results(job_id, "failedResults"))):
        items[row.get(ext, "")] = {"success": False, "errors": [bulk_error(row.get("sf__Error", ""))]}
    return items


def _csv_value(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
