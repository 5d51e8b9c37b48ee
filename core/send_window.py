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
    """A mapping's claimable records: how many, when the oldest was logged, whether any is a retry."""
    mapping_id: int
    records: int
    oldest: dt.datetime
    retries: bool = False


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


def plan_claim(pending: list[Pending], seconds: float, now: dt.datetime, full: int = FULL) -> Claim:
    """A mapping whose oldest record has waited `seconds` (or that has a retry waiting) sends everything. Before
    that, only its full calls go: the records past the last multiple of `full` wait for more (fewer than
    `full`: all of them wait)."""
    if seconds <= 0:
        return Claim({}, None)
    limits, wakes = {}, []
    window = dt.timedelta(seconds=seconds)
    for p in pending:
        due = p.oldest + window
        if p.retries or due <= now or p.records % full == 0:
            continue
        limits[p.mapping_id] = p.records - p.records % full
        wakes.append(due)
    return Claim(limits, min(wakes, default=None))
