"""Postgres -> Salesforce: claim logged changes, send them in Collections calls, record every outcome."""
from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import uuid
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace

from core import send_window, soql
from core.change_states import FINISHED, Backoff, RecordResult, State, settle
from core.changes import (ChangeLogEntry, Fields, Outcome, RecordChange, Write, coalesce, outcome_of,
                          bundle_batches, plan_batches, plan_writes, references_parents,
                          writable_fields)
from core.mapping import Mapping, is_relationship
from gateway import change_log, mapping_store
from gateway.db import Database
from gateway.salesforce import MAX_BUNDLE, Collection, Salesforce, SalesforceError, TransientError
from gateway.salesforce import for_settings
from jobs import budget, runtime, stats

log = logging.getLogger("forcebridge.drain")


@dataclass(frozen=True)
class DrainOptions:
    claim_records: int = 3200     # records per claim: 16 calls of 200, a few rounds of concurrent calls
    lease_seconds: int = 120      # a claim not renewed for this long is taken again (the worker died)
    concurrency: int = 4          # Collections calls in flight at once
    retry_base_seconds: float = 2.0
    retry_cap_seconds: float = 900.0
    send_window_seconds: float = 0.0   # a mapping's part-filled call waits up to this long for more records
    bundle: int = MAX_BUNDLE      # Collections requests (of up to 200 records) one API call carries (/composite)

    @property
    def backoff(self) -> Backoff:
        return Backoff(self.retry_base_seconds, self.retry_cap_seconds)


@dataclass
class DrainResult:
    claimed: int = 0
    calls: int = 0
    outcomes: Counter = field(default_factory=Counter)
    held_until: dt.datetime | None = None     # the send window holds records back until then


def drain(db: Database, sf: Salesforce, options: DrainOptions = DrainOptions(), max_rounds: int = 10_000,
          stop: threading.Event | None = None, now: dt.datetime | None = None) -> DrainResult:
    """Send every change that is ready, claim after claim, until none is left (or `stop` is set: a
    shutting-down worker finishes the claims in hand and leaves the rest to the next one).
    Two claims overlap: the next one is claimed and planned while the calls of the last are in flight
    (claims never share a record, so per-record order holds). With a send window, part-filled calls wait
    (`now`: the clock the window is measured on, Postgres' change times; the benchmark's simulated one)."""
    total = DrainResult()
    token = uuid.uuid4().hex      # this drain's claims: a drain whose lease lapsed cannot finish them
    in_flight = None
    with ThreadPoolExecutor(max_workers=max(1, options.concurrency)) as pool:
        for _ in range(max_rounds):
            entries = [] if stop is not None and stop.is_set() else claim(db, options, token, total, now)
            started = _start(db, sf, entries, pool, options, token, in_flight) if entries else None
            total.claimed += len(entries)
            if in_flight is not None:
                _complete(db, in_flight, options, total)
            if started is None and in_flight is None:
                break
            in_flight = started
        if in_flight is not None:
            _complete(db, in_flight, options, total)
    return total


def claim(db: Database, options: DrainOptions, token: str, result: DrainResult | None = None,
          now: dt.datetime | None = None) -> list[ChangeLogEntry]:
    change_log.absorb(db)
    with db.transaction() as conn:
        db.run(conn, "lock_claims")
        window = window_claim(db, conn, options.send_window_seconds, now, options.bundle)
        if result is not None:
            result.held_until = window.wake_at
        rows = db.run(conn, "claim_changes", {"records": options.claim_records, "claim": token,
                                              "lease_seconds": options.lease_seconds,
                                              "held": list(window.limits), "limits": list(window.limits.values())
                                              }).fetchall()
    return change_log.entries_from_rows(rows)


def window_claim(db: Database, conn, seconds: float, now: dt.datetime | None = None,
                 bundle: int = MAX_BUNDLE) -> send_window.Claim:
    """What the send window holds back now (nothing without a window: no query)."""
    if seconds <= 0:
        return send_window.Claim({}, None)
    children = {r["id"] for r in db.run(conn, "writing_mappings").fetchall()
                if any(is_relationship(f.name) for f in mapping_store.from_row(r).sent_fields)}
    pending = [send_window.Pending(r["mapping_id"], r["records"], r["oldest"], r["retries"],
                                   names_parents=r["mapping_id"] in children)
               for r in db.run(conn, "pending_by_mapping").fetchall()]
    return send_window.plan_claim(pending, seconds, now or dt.datetime.now(dt.timezone.utc), bundle=bundle)


@dataclass
class _InFlight:
    planned: list            # (Mapping, writes, nothing to send)
    calls: list              # ([(Mapping, batch)], Future of [[(Write, Outcome)] per batch]): one API call each
    token: str


def _start(db: Database, sf: Salesforce, entries: list[ChangeLogEntry], pool: ThreadPoolExecutor,
           options: DrainOptions, token: str, before: _InFlight | None = None) -> _InFlight:
    """Coalesce and plan the claimed entries, then put their calls in flight: Collections batches of up to
    200 records, `options.bundle` of them to an API call (core/changes.bundle_batches). A batch that names
    a parent by its external id is sent after every other call in flight (this claim's and the last one's):
    a parent inserted in the same transaction as its child exists in Salesforce before the child."""
    mappings = {r["id"]: mapping_store.from_row(r) for r in db.fetchall("writing_mappings")}
    by_mapping: dict[int, list[ChangeLogEntry]] = {}
    for e in entries:
        by_mapping.setdefault(e.mapping_id, []).append(e)
    planned = []
    for mapping_id, group in by_mapping.items():
        changes = coalesce(group)
        mapping = mappings.get(mapping_id)
        if mapping is None:   # the mapping was deleted or stopped writing: nothing to send
            finish(db, None, [RecordResult(c, Outcome(State.IGNORED, error={"reason": "mapping no longer writes"}))
                               for c in changes], options, token)
            continue
        writes, nothing = plan(db, sf, mapping, changes)
        planned.append((mapping, writes, nothing))
    mark_sending(db, [w for _, writes, _ in planned for w in writes], token)
    batches = [(mapping, batch) for mapping, writes, _ in planned for batch in plan_batches(writes)]
    calls = [(group, pool.submit(send_bundle, sf, [b for _, b in group]))
             for group in bundle_batches([mb for mb in batches if not references_parents(mb[1])], options.bundle)]
    earlier = [future for _, future in (before.calls if before else [])]
    for group in bundle_batches([mb for mb in batches if references_parents(mb[1])], options.bundle):
        after = earlier + [future for _, future in calls]
        calls.append((group, pool.submit(_send_after, after, sf, [b for _, b in group])))
    return _InFlight(planned, calls, token)


def _send_after(futures: list, sf: Salesforce, batches: list[list[Write]]) -> list[list[tuple[Write, Outcome]]]:
    """Futures run in submission order, so the ones waited for are already running or done: no deadlock."""
    wait(futures)
    return send_bundle(sf, batches)


def _complete(db: Database, flight: _InFlight, options: DrainOptions, result: DrainResult) -> None:
    """Wait for the calls, renewing the lease while they run (a call with its retries can outlast it),
    then record every record's outcome."""
    running = {future for *_, future in flight.calls}
    while running:
        _, running = wait(running, timeout=max(1.0, options.lease_seconds / 3), return_when=FIRST_COMPLETED)
        renew_lease(db, options, flight.token)
    outcomes: dict[int, list[RecordResult]] = {m.id: [RecordResult(c, Outcome(State.MERGED)) for c in nothing]
                                               for m, _, nothing in flight.planned}
    for group, future in flight.calls:
        for (mapping, _batch), done in zip(group, future.result()):
            outcomes[mapping.id].extend(RecordResult(w.change, o, w) for w, o in done)
    result.calls += len(flight.calls)
    for mapping, _, _ in flight.planned:
        finish(db, mapping, outcomes[mapping.id], options, flight.token)
    for finished in outcomes.values():
        result.outcomes.update(str(r.outcome.state) for r in finished)


def plan(db: Database, sf: Salesforce, mapping: Mapping, changes: list[RecordChange]):
    writes_to_make = [c.record_id for c in changes if c.kind == "write"]
    rows: dict[int, dict] = {}
    if writes_to_make:
        with db.transaction(origin="salesforce") as conn:
            if mapping.upsert_field:
                change_log.generate_external_ids(conn, mapping, writes_to_make)
            rows = change_log.read_rows(conn, mapping, writes_to_make)
    changes = _resolve_deleted_ids(sf, mapping, changes)
    return plan_writes(changes, rows, mapping, _writable(sf, mapping))


def _resolve_deleted_ids(sf: Salesforce, mapping: Mapping, changes: list[RecordChange]) -> list[RecordChange]:
    """A delete of a record whose sfid never came back (the worker died after Salesforce created it) finds
    the record by its external id."""
    wanted = {c.external_id for c in changes if c.kind == "delete" and not c.sfid and c.external_id}
    if not wanted or not mapping.upsert_field:
        return changes
    found: dict[str, str] = {}
    ordered = sorted(wanted)
    for i in range(0, len(ordered), 100):
        chunk = ordered[i:i + 100]
        try:
            for rec in sf.query(soql.by_external_ids(mapping.object_name, mapping.upsert_field, chunk)):
                found[str(rec.get(mapping.upsert_field))] = rec["Id"]
        except SalesforceError as exc:
            log.warning("could not look up external ids on %s: %s", mapping.object_name, exc)
            return changes
    return [replace(c, sfid=found.get(c.external_id)) if c.kind == "delete" and not c.sfid else c for c in changes]


def _writable(sf: Salesforce, mapping: Mapping) -> Fields:
    try:
        describe = sf.describe(mapping.object_name)
    except SalesforceError as exc:
        log.warning("describe %s failed (%s); sending every mapped field", mapping.object_name, exc)
        describe = None
    return writable_fields(mapping, describe)


def renew_lease(db: Database, options: DrainOptions, token: str) -> None:
    db.execute("renew_claims", {"claim": token, "lease_seconds": options.lease_seconds})


def mark_sending(db: Database, writes: list[Write], token: str) -> None:
    """Record on each carrier entry what is about to be sent: its echo may arrive before the call returns
    (and before `finish`), and must be recognised as ours then too."""
    entries = [{"id": w.change.carrier_id, "sent": {k: v for k, v in w.body.items() if k != "Id"}}
               for w in writes if w.op != "delete"]
    if entries:
        db.execute("mark_sending", {"entries": json.dumps(entries, default=str), "claim": token})


def send_in_order(sf: Salesforce, writes: list[Write], bundle: int = MAX_BUNDLE) -> list[tuple[Write, Outcome]]:
    """`writes` in batches, `bundle` batches an API call, one call after another (the initial push's path)."""
    return [done for group in bundle_batches(plan_batches(writes), bundle) for batch in send_bundle(sf, group)
            for done in batch]


def send_bundle(sf: Salesforce, batches: list[list[Write]]) -> list[list[tuple[Write, Outcome]]]:
    """One API call for up to MAX_BUNDLE batches (gateway write_collections); a batch refused as a whole gives
    every record of it that outcome, a failure of the call every record of every batch."""
    try:
        answers = sf.write_collections([Collection(b[0].op, b[0].sobject, [w.body for w in b], b[0].ext_field)
                                        for b in batches])
    except Exception as exc:   # not Salesforce's answer (a body that is not JSON, a broken stream): try later
        log.warning("a call of %s records failed: %r", sum(len(b) for b in batches), exc)
        error = [{"statusCode": "CALL_FAILED", "message": f"{type(exc).__name__}: {exc}"[:500]}]
        return [[(w, Outcome(State.REQUEUED, error=error)) for w in batch] for batch in batches]
    return [_outcomes(batch, answer) for batch, answer in zip(batches, answers)]


def _outcomes(batch: list[Write], answer) -> list[tuple[Write, Outcome]]:
    if isinstance(answer, TransientError):
        return [(w, Outcome(State.REQUEUED, error=answer.as_errors())) for w in batch]
    if isinstance(answer, SalesforceError):
        error = answer.body if isinstance(answer.body, list) else answer.as_errors()
        return [(w, Outcome(State.FAILED, error=error)) for w in batch]
    if not isinstance(answer, list) or len(answer) != len(batch) or not all(isinstance(i, dict) for i in answer):
        error = [{"statusCode": "UNEXPECTED_RESPONSE", "message": "result count differs from records sent"}]
        return [(w, Outcome(State.REQUEUED, error=error)) for w in batch]
    return [(w, outcome_of(w, item)) for w, item in zip(batch, answer)]


def finish(db: Database, mapping: Mapping | None, finished: list[RecordResult], options: DrainOptions,
           token: str) -> None:
    """One transaction: store what core.change_states.settle decides (change-log states, sfid write-back and
    row marks, as the sync: not captured), stats. Only changes still claimed under `token` are recorded: a
    drain whose lease lapsed and was taken over must not overwrite the new owner's results."""
    change_log.absorb(db)       # a newer change waiting keeps its row marked PENDING (write_back_results)
    with db.transaction(origin="salesforce") as conn:
        if mapping and mapping.reads and any(r.write is not None and not r.change.sfid for r in finished):
            db.run(conn, "lock_created_rows", {"mapping_id": mapping.id})    # first: it holds nothing yet
        held = {r["id"] for r in db.run(conn, "held_claims", {
            "claim": token, "ids": [r.change.carrier_id for r in finished]}).fetchall()}
        finished = [r for r in finished if r.change.carrier_id in held]
        settled = settle(mapping, finished, options.backoff)
        db.run(conn, "finish_changes", {"entries": settled.entries_json(), "claim": token})
        if mapping and settled.resolved:
            db.run(conn, "resolve_failed_changes", {
                "mapping_id": mapping.id, "record_ids": [r.record_id for r in settled.resolved],
                "carriers": [r.carrier_id for r in settled.resolved],
                "fields": [",".join(r.fields) for r in settled.resolved],
                "from_state": str(State.FAILED), "to_state": str(State.MERGED)})
        if mapping and settled.marks:
            _merge_inbound_copies(db, conn, mapping, settled.marks)
            change_log.write_back_results(conn, mapping, **settled.marks_params())
            _check_row_filter(db, conn, mapping, settled.marks)
        stats.add(db, conn, "pg_to_sf", [(mapping.id if mapping else 0, state.lower(), n)
                                         for state, n in settled.counts.items()])
    for r in finished:
        if r.outcome.state == State.FAILED:
            log.warning("record %s of mapping %s failed: %s", r.change.record_id, r.change.mapping_id,
                        r.outcome.error)


def _merge_inbound_copies(db: Database, conn, mapping: Mapping, marks) -> None:
    """The race between a create and its read-back: a poll, an Outbound Message, a drift repair or a row filter
    check that brought the new record before its sfid came back here inserted it as a second row. That copy is
    merged into the app's row (which keeps its id and gets the sfid); the record is then read again by Id
    (forcebridge.filter_checks, jobs/row_filters.py), through the one apply path, so what Salesforce changed
    since our write lands under the usual rules (echoes, conflicts with a newer local change, field owners)."""
    created = [(m.record_id, m.sfid) for m in marks if m.sfid and not m.failed and m.lastop == "INSERTED"]
    if not created or not mapping.reads:
        return
    merged = change_log.merge_inbound_copies(conn, mapping, [i for i, _ in created], [s for _, s in created])
    if merged:
        log.info("%s: %s records read back before their sfid was written; merged into their rows",
                 mapping.object_name, len(merged))
        db.run(conn, "filter_checks_add", {"mapping_id": mapping.id, "sfids": merged,
                                           "sources": ["write"] * len(merged)})


def _check_row_filter(db: Database, conn, mapping: Mapping, marks) -> None:
    """Rows written to Salesforce for a mapping with a row filter: Salesforce is asked whether their records
    match it (jobs/row_filters.py), and a row outside it leaves the table once written."""
    sfids = sorted({m.sfid for m in marks if m.sfid and not m.failed})
    if sfids and mapping.reads and soql.row_filter(mapping):
        db.run(conn, "filter_checks_add", {"mapping_id": mapping.id, "sfids": sfids, "sources": ["write"] * len(sfids)})


def options_from(settings, db: Database | None = None) -> DrainOptions:
    """The worker's options; the send window from the budget's pressure when `db` is given."""
    window = budget.send_window_seconds(db, settings) if db is not None else 0.0
    return DrainOptions(concurrency=settings.drain_concurrency, lease_seconds=settings.drain_lease_seconds,
                        send_window_seconds=window, bundle=settings.drain_bundle)


def drain_now(stop: threading.Event | None = None) -> DrainResult:
    """Drain with the worker's settings; without Salesforce credentials there is nothing to send to."""
    s = runtime.settings()
    sf = for_settings(s)
    if sf is None or budget.writes_delayed(runtime.db()):
        return DrainResult()
    with sf.work("writes"):
        return drain(runtime.db(), sf, options_from(s, runtime.db()), stop=stop)


def next_retry_in(db: Database, settings=None) -> float | None:
    """Seconds until the earliest change waiting for a retry, or held by the send window, is due; None when
    none waits."""
    row = db.fetchone("next_retry_in")
    due = [float(row["seconds"])] if row is not None and row["seconds"] is not None else []
    window = budget.send_window_seconds(db, settings) if settings is not None else 0.0
    if window > 0:
        with db.transaction() as conn:
            wake_at = window_claim(db, conn, window, bundle=settings.drain_bundle).wake_at
        if wake_at is not None:
            due.append((wake_at - dt.datetime.now(dt.timezone.utc)).total_seconds())
    return min(due, default=None)


def archive(db: Database, after_hours: int, purge_days: int) -> None:
    """Finished entries leave the live table after a day and the archive after 30 (both configurable)."""
    with db.transaction() as conn:
        db.run(conn, "archive_changes", {"after_seconds": after_hours * 3600, "states": sorted(FINISHED)})
        db.run(conn, "purge_archive", {"after_seconds": purge_days * 86400})
        db.run(conn, "purge_conflicts", {"after_seconds": purge_days * 86400})
        db.run(conn, "purge_salesforce_deletes", {"after_seconds": purge_days * 86400})
