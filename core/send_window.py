"""The write path's send window (pure): how long a small batch may wait for more records so a Collections call
carries more of them, and which records of each mapping the next claim takes. Writes are never dropped, only
held, and never longer than the window."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

FULL = 200            # records in a full Collections call
RELAXED_BELOW = 0.5   # budget pressure (core/budget.Plan.pressure) under which the relaxed window applies
PRESSED_FROM = 0.8    # pressure from which the whole pressed window applies (polls are spaced out there too)


@dataclass(frozen=True)
class Pending:
    """A mapping's claimable records: how many, when the oldest was logged, whether any is a retry, whether its
    writes name parents by external id (Account__r__External_Id__c: the parent must exist before them)."""
    mapping_id: int
    records: int
    oldest: dt.datetime
    retries: bool = False
    names_parents: bool = False


@dataclass(frozen=True)
class Claim:
    limits: dict          # mapping id -> records the claim may take now (absent: no limit)
    wake_at: dt.datetime | None   # when the first held record's window ends (None: nothing held)


def window_seconds(relaxed: float, pressed: float, pressure: float) -> float:
    """The window at this budget pressure: `relaxed` while the budget is relaxed, growing linearly to
    `pressed` as the projection nears the budget (never shorter than `relaxed`)."""
    if pressure <= RELAXED_BELOW or pressed <= relaxed:
        return relaxed
    if pressure >= PRESSED_FROM:
        return pressed
    return relaxed + (pressed - relaxed) * (pressure - RELAXED_BELOW) / (PRESSED_FROM - RELAXED_BELOW)


def plan_claim(pending: list[Pending], seconds: float, now: dt.datetime, full: int = FULL,
               bundle: int = 1) -> Claim:
    """A mapping whose oldest record has waited `seconds` (or that has a retry waiting) sends everything. Before
    that, only its full calls go: the records past the last multiple of `full` wait for more (fewer than
    `full`: all of them wait).
    Riding along: an API call carries `bundle` Collections requests (/composite). When calls go anyway and their
    last one has room, held part-filled requests fill it, oldest first: sent now at no extra call.
    A child (a mapping naming parents by external id) never goes ahead of a record held back: the held one may
    be its parent, and a child sent first fails for good (Foreign key external ID not found). While anything
    is held, children wait whole until their own window ends; a child that is due releases everything."""
    if seconds <= 0:
        return Claim({}, None)
    window = dt.timedelta(seconds=seconds)
    due = {p.mapping_id: p.retries or p.oldest + window <= now for p in pending}
    limits = {p.mapping_id: p.records - p.records % full for p in pending
              if not due[p.mapping_id] and p.records % full}
    if limits and bundle > 1:
        _ride_along(pending, limits, full, bundle)
    if not limits:
        return Claim({}, None)
    children = [p for p in pending if p.names_parents and limits.get(p.mapping_id) != 0]
    if any(due[p.mapping_id] for p in children):
        return Claim({}, None)
    limits.update({p.mapping_id: 0 for p in children})
    return Claim(limits, min(p.oldest + window for p in pending if p.mapping_id in limits))


def _ride_along(pending: list[Pending], limits: dict, full: int, bundle: int) -> None:
    """Release held remainders (one Collections request each) into the room the calls that go anyway leave.
    Children (writes naming parents) are left to the rule in plan_claim. An estimate: a mapping whose records
    mix operations needs more requests than its count says; that costs a call, never a record."""
    plain = [p for p in pending if not p.names_parents]
    going = sum(-(-limits.get(p.mapping_id, p.records) // full) for p in plain)
    room = -(-going // bundle) * bundle - going
    for p in sorted((p for p in plain if p.mapping_id in limits), key=lambda p: p.oldest):
        if room <= 0:
            break
        del limits[p.mapping_id]
        room -= 1
