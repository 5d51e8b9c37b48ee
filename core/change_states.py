"""The change log's states and every move between them (pure): what a Salesforce result, a retry, an ignore
or a conflict does to a change. The SQL in sql/queries/change_log.sql only stores what this decides."""
from __future__ import annotations

import datetime as dt
import enum
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from core.mapping import Mapping

if TYPE_CHECKING:   # core.changes builds its Outcomes from State: imported lazily below
    from core.changes import Outcome, RecordChange, Write


class State(enum.StrEnum):
    NEW = "NEW"              # logged (or moved in from change_capture), not claimed yet
    PENDING = "PENDING"      # claimed by a drain under a lease
    SUCCESS = "SUCCESS"      # Salesforce took it
    FAILED = "FAILED"        # Salesforce refused it; stays until retried or ignored
    REQUEUED = "REQUEUED"    # to be tried again at next_attempt_at
    MERGED = "MERGED"        # folded into another entry of the same record, or nothing left to send
    IGNORED = "IGNORED"      # dropped by a person, by a conflict Salesforce won, or the mapping stopped writing


OPEN = frozenset({State.NEW, State.PENDING, State.REQUEUED})        # the drain will still send these
FINISHED = frozenset({State.SUCCESS, State.MERGED, State.IGNORED})  # archived after ARCHIVE_AFTER_HOURS
# What a person may do (JSON API, console, an app's UPDATE of <schema>._trigger_log):
RETRYABLE = frozenset({State.FAILED, State.IGNORED})
IGNORABLE = frozenset({State.NEW, State.REQUEUED, State.FAILED})
# A conflict Salesforce won drops the local entries not yet sent; one in flight (PENDING) finishes on its own.
OVERRIDDEN_BY_SALESFORCE = frozenset({State.NEW, State.REQUEUED})


class Action(enum.StrEnum):
    RETRY = "retry"
    IGNORE = "ignore"


def target(action: Action, via_trigger_log: bool = False) -> State:
    """Where a person's retry or ignore moves an entry. A retry through the API or the console waits for the
    drain as REQUEUED (due now); through Heroku Connect's _trigger_log an app sets NEW and reads NEW back."""
    if action is Action.RETRY:
        return State.NEW if via_trigger_log else State.REQUEUED
    return State.IGNORED


def from_states(action: Action) -> list[str]:
    """The states `action` may move an entry from (also the SQL's guard against a concurrent change)."""
    return sorted(RETRYABLE if action is Action.RETRY else IGNORABLE)


def requested(state: State | str, action: Action, via_trigger_log: bool = False) -> State | None:
    """The state `action` moves an entry in `state` to, or None when that state does not allow it."""
    return target(action, via_trigger_log) if str(state) in from_states(action) else None


def retry_delay(attempts: int, base: float = 1.0, cap: float = 600.0) -> float:
    """Exponential backoff: base, 2*base, 4*base ... capped (attempts counts tries so far, from 1)."""
    return min(cap, base * (2 ** max(0, attempts - 1)))


@dataclass(frozen=True)
class Backoff:
    base_seconds: float = 2.0
    cap_seconds: float = 900.0

    def delay(self, attempts: int) -> float:
        return retry_delay(attempts, self.base_seconds, self.cap_seconds)


@dataclass(frozen=True)
class RecordResult:
    """What happened to one folded record change: the outcome of its write (None: nothing was sent)."""
    change: "RecordChange"
    outcome: "Outcome"
    write: "Write | None" = None


@dataclass(frozen=True)
class EntryUpdate:
    """One change-log entry's new state and what goes with it."""
    id: int
    state: State
    sfid: str | None = None
    error: list | dict | None = None
    sent: dict | None = None              # the values a SUCCESS wrote (echo recognition)
    fields: tuple[str, ...] | None = None  # the mapped columns the write carried
    delay: float | None = None            # REQUEUED: seconds until the next attempt

    @property
    def finished(self) -> bool:
        """Done with, for now: an open state (a requeue) has no finishing time."""
        return self.state not in OPEN

    def as_json(self) -> dict:
        return {"id": self.id, "state": str(self.state), "sfid": self.sfid, "error": self.error, "sent": self.sent,
                "fields": ",".join(self.fields) if self.fields else None, "delay": self.delay,
                "finished": self.finished}


@dataclass(frozen=True)
class RowMark:
    """Heroku Connect's marks on the mapped row after a write: sfid back, _hc_lastop, _hc_err."""
    record_id: int
    sfid: str | None
    failed: bool                          # _hc_lastop FAILED, _hc_err from error
    error: list | dict | None
    lastop: str                           # INSERTED | UPDATED after a write that reached Salesforce


@dataclass(frozen=True)
class Resolution:
    """A success that carried every field of a record's older FAILED entries resolves them (-> MERGED)."""
    record_id: int
    carrier_id: int
    fields: tuple[str, ...]


@dataclass
class Settlement:
    entries: list[EntryUpdate] = field(default_factory=list)
    marks: list[RowMark] = field(default_factory=list)
    resolved: list[Resolution] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)   # outcome state -> records

    def entries_json(self) -> str:
        return json.dumps([e.as_json() for e in self.entries], default=_json_default)

    def marks_params(self) -> dict:
        return {"ids": [m.record_id for m in self.marks], "sfids": [m.sfid for m in self.marks],
                "errs": [json.dumps(m.error) if m.failed else None for m in self.marks],
                "lastops": [m.lastop for m in self.marks]}


def _json_default(value):
    return value.isoformat() if isinstance(value, (dt.date, dt.datetime, dt.time)) else str(value)


def settle(mapping: Mapping | None, results: list[RecordResult], backoff: Backoff = Backoff()) -> Settlement:
    """What the outcomes of one drain (or push) do to the change log and the mapped rows.
    REQUEUED: every entry of the record waits for the backoff. Otherwise the record's earlier entries are
    MERGED into the last one (the carrier), which takes the outcome's state; a write that reached Salesforce
    or was refused marks its row. `mapping` None: the mapping no longer writes (nothing is marked)."""
    from core.changes import sent_columns

    out = Settlement()
    for r in results:
        change, outcome, write = r.change, r.outcome, r.write
        out.counts[State(outcome.state)] += 1
        if outcome.state == State.REQUEUED:
            delay = backoff.delay(change.attempts + 1)
            out.entries.extend(EntryUpdate(i, State.REQUEUED, error=outcome.error, delay=delay)
                               for i in change.entry_ids)
            continue
        out.entries.extend(EntryUpdate(i, State.MERGED) for i in change.entry_ids[:-1])
        body = {k: v for k, v in (write.body if write else {}).items() if k != "Id"}
        columns = tuple(sent_columns(mapping, body)) if mapping and write else None
        writes_row = write is not None and write.op != "delete"
        out.entries.append(EntryUpdate(
            change.carrier_id, State(outcome.state), sfid=outcome.sfid, error=outcome.error,
            sent=body if outcome.state == State.SUCCESS and writes_row else None, fields=columns))
        if writes_row and outcome.state in (State.SUCCESS, State.FAILED):
            success = outcome.state == State.SUCCESS
            out.marks.append(RowMark(change.record_id, outcome.sfid if success else None, not success,
                                     None if success else outcome.error,
                                     "UPDATED" if write.op == "update" else "INSERTED"))   # Heroku Connect's marks
            if success and mapping:
                out.resolved.append(Resolution(change.record_id, change.carrier_id, columns or ()))
    return out
