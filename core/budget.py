"""The API budget (pure): how much of the org's daily allocation we may use, what the rolling 24 hours will
cost at the current pace, and which work is spaced out, paused or delayed to stay inside it."""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field

# Ranked: what is held back first comes last. Writes are never dropped, only delayed at the floor.
# Formula refreshes rank just below polls: a stale formula is less urgent than a missed change.
RANKS = ("writes", "gap_fetches", "polls", "formula_refresh", "drift")
LABELS = {"writes": "writes to Salesforce", "gap_fetches": "CDC gap fetches", "polls": "polls",
          "formula_refresh": "formula refreshes", "drift": "drift checks"}
# (share of the budget the projection reaches, what happens to the work, interval factor when spaced)
LADDER = {
    "drift": ((0.6, "spaced", 4.0), (0.8, "paused", None)),
    "formula_refresh": ((0.7, "spaced", 3.0), (0.9, "paused", None)),
    "polls": ((0.8, "spaced", 3.0), (0.95, "paused", None)),
    "gap_fetches": ((0.95, "spaced", 2.0), (1.0, "paused", None)),
    "writes": (),
}
REST_PAGE = 2000          # records in a REST query page
BULK_RESULTS_PAGE = 50_000  # records a Bulk query results call brings (Salesforce decides; a fair estimate)
BULK_OVERHEAD = 4         # create, at least one status check, the delete, and a first page's wait


class BudgetError(ValueError):
    def __init__(self, field_name: str, message: str):
        super().__init__(message)
        self.field = field_name


@dataclass(frozen=True)
class BudgetSettings:
    share: float = 0.5     # of the org's daily allocation ForceBridge may use
    floor: float = 0.1     # of the allocation we never take the org's remaining calls below

    @classmethod
    def from_document(cls, doc: dict | None) -> "BudgetSettings":
        doc = doc or {}
        return cls(float(doc.get("share", cls.share)), float(doc.get("floor", cls.floor)))

    def as_document(self) -> dict:
        return {"share": self.share, "floor": self.floor}


def parse_settings(form: dict) -> BudgetSettings:
    """From percents (console form, API); a refusal names the field."""
    values = {}
    for name, low, high in (("share", 1, 100), ("floor", 0, 90)):
        raw = str(form.get(name, "")).strip().rstrip("%")
        try:
            value = float(raw)
        except ValueError:
            raise BudgetError(name, f"{name}: a percentage, not {raw[:20]!r}") from None
        if not (low <= value <= high) or math.isnan(value):
            raise BudgetError(name, f"{name}: between {low} and {high} percent")
        values[name] = value / 100
    if values["share"] + values["floor"] > 1:
        raise BudgetError("floor", "floor: share and floor together exceed the allocation")
    return BudgetSettings(**values)


@dataclass(frozen=True)
class Usage:
    """What the budget decides from. `hourly`: our calls in each of the last 24 hours, oldest first, the
    current (partial) hour last. `org_used`/`allocation`: Salesforce's DailyApiRequests (everyone's calls)."""
    allocation: int | None
    org_used: int | None
    hourly: tuple[int, ...]
    now: dt.datetime

    @property
    def ours_24h(self) -> int:
        return sum(self.hourly)


@dataclass(frozen=True)
class Hold:
    kind: str
    action: str               # spaced | paused | delayed
    factor: float | None      # interval multiplier when spaced
    until: dt.datetime | None
    reason: str

    def describe(self) -> str:
        what = LABELS.get(self.kind, self.kind)
        if self.action == "spaced":
            return f"{what} spaced out ×{self.factor:g} ({self.reason})"
        until = f" until {self.until:%H:%M} UTC" if self.until else ""
        return f"{what} {self.action}{until} ({self.reason})"


@dataclass(frozen=True)
class Plan:
    budget: int | None        # calls a day we may make (None: allocation unknown, nothing is held)
    allowed: int | None       # the budget, lowered so the org keeps its floor
    projected: int            # our calls in the 24 hours ending an hour from now, at the current pace
    ours_24h: int
    allocation: int | None
    org_used: int | None
    holds: dict = field(default_factory=dict)   # kind -> Hold

    @property
    def share_of_budget(self) -> float:
        """Our last 24 hours against the budget (alerts fire at 0.8 and 1.0)."""
        return self.ours_24h / self.budget if self.budget else 0.0

    @property
    def pressure(self) -> float:
        return self.projected / self.allowed if self.allowed else (1.0 if self.allowed == 0 else 0.0)

    def hold(self, kind: str) -> Hold | None:
        return self.holds.get(kind)

    def factor(self, kind: str) -> float | None:
        """The interval multiplier for `kind`: 1 runs as configured, None is paused or delayed."""
        h = self.holds.get(kind)
        if h is None:
            return 1.0
        return h.factor if h.action == "spaced" else None


def plan(settings: BudgetSettings, usage: Usage) -> Plan:
    """Decide what runs. The projection is the rolling window as it will stand an hour from now: our last
    24 hours, less the oldest hour (it leaves the window), plus an hour at the current pace."""
    hourly = list(usage.hourly) or [0]
    ours = sum(hourly)
    rate = _hourly_rate(hourly, usage.now)
    projected = ours - (hourly[0] if len(hourly) >= 24 else 0) + rate
    if not usage.allocation:
        return Plan(None, None, projected, ours, usage.allocation, usage.org_used)
    budget = int(usage.allocation * settings.share)
    floor_calls = int(usage.allocation * settings.floor)
    org_used = usage.org_used if usage.org_used is not None else ours
    remaining = usage.allocation - org_used
    # what we may still spend without taking the org below its floor (others' calls count there too)
    allowed = max(0, min(budget, ours + remaining - floor_calls))
    pressure = projected / allowed if allowed else math.inf
    holds = {}
    for kind in RANKS[1:]:
        step = None
        for threshold, action, factor in LADDER[kind]:
            if pressure >= threshold:
                step = (threshold, action, factor)
        if step is None:
            continue
        threshold, action, factor = step
        reason = f"projected {projected:,} of {allowed:,} calls allowed" if allowed else "no calls left above the floor"
        until = None if action == "spaced" else _clears_at(hourly, usage.now, threshold * allowed, rate_kept=0)
        holds[kind] = Hold(kind, action, factor, until, reason)
    if remaining <= floor_calls:
        holds["writes"] = Hold("writes", "delayed", None, _next_hour(usage.now),
                               f"the org has {max(remaining, 0):,} calls left, at its floor of {floor_calls:,}")
    return Plan(budget, allowed, projected, ours, usage.allocation, usage.org_used, holds)


def _hourly_rate(hourly: list[int], now: dt.datetime) -> int:
    """Calls an hour at the current pace: the current hour scaled up (once 15 minutes are in), or the
    previous full hour, whichever is more (a burst counts at once; a quiet minute does not hide an hour)."""
    minutes = max(now.minute + now.second / 60, 15.0)
    current = hourly[-1] * 60 / minutes
    previous = hourly[-2] if len(hourly) > 1 else 0
    return int(math.ceil(max(current, previous)))


def _clears_at(hourly: list[int], now: dt.datetime, target: float, rate_kept: int) -> dt.datetime:
    """The first hour boundary at which the calls still in the window (old hours leave it one by one) drop
    below `target`, if only `rate_kept` calls an hour go on; at most a day away."""
    start = now.replace(minute=0, second=0, microsecond=0)
    window = list(hourly) + [0] * max(0, 24 - len(hourly))
    window = window[-24:]
    for k in range(1, 25):
        if sum(window[k:]) + rate_kept * k < target:
            return start + dt.timedelta(hours=k)
    return start + dt.timedelta(hours=24)


def _next_hour(now: dt.datetime) -> dt.datetime:
    return now.replace(minute=0, second=0, microsecond=0) + dt.timedelta(hours=1)


def next_run(plan_: Plan, kind: str, last_run: dt.datetime | None, interval_seconds: int,
             now: dt.datetime) -> dt.datetime:
    """When work of `kind` that runs every `interval_seconds` may run next under this plan (<= now: run)."""
    hold = plan_.hold(kind)
    if hold is None:
        return last_run + dt.timedelta(seconds=interval_seconds) if last_run else now
    if hold.action == "spaced":
        return last_run + dt.timedelta(seconds=interval_seconds * hold.factor) if last_run else now
    return hold.until or _next_hour(now)


@dataclass(frozen=True)
class ApiChoice:
    api: str                  # rest | bulk
    rest_calls: int
    bulk_calls: int

    @property
    def saved(self) -> int:
        return self.rest_calls - self.bulk_calls if self.api == "bulk" else 0


def cheaper_query(records: int) -> ApiChoice:
    """REST query pages or one Bulk API 2.0 query job, whichever costs fewer calls for `records` (the
    result is the same rows either way)."""
    rest = max(1, math.ceil(records / REST_PAGE))
    bulk = BULK_OVERHEAD + max(1, math.ceil(records / BULK_RESULTS_PAGE))
    return ApiChoice("bulk" if bulk < rest else "rest", rest, bulk)


@dataclass(frozen=True)
class PollChoice:
    api: str                  # bulk: one Bulk 2.0 job from the start | rest: pages (the first one decides)
    expected: int | None      # changed records expected (None: nothing to go by)
    saved: int = 0            # calls the choice saves against finding out with a REST page first


def poll_api(last_changed: int | None, seconds_since_last: float | None, interval_seconds: float,
             bulk_above: int, covered_seconds: float | None = None) -> PollChoice:
    """Decide a poll's API before it spends a call: the last poll's count, scaled from the time it covered
    (`covered_seconds`, since the poll before it; the interval when not known) to the time since it (a poll the
    budget put off finds more; a catch-up poll's count spread over the outage it covered), against
    `bulk_above`. With nothing to go by (no poll yet, no interval) the first REST page decides, as before: a
    COUNT() would cost that same call and bring no record, and below 2,000 records the page is the whole
    answer. Choosing Bulk up front saves that page (`saved`: only if the job brings more than `bulk_above`,
    the caller checks)."""
    if last_changed is None or seconds_since_last is None or interval_seconds <= 0:
        return PollChoice("rest", None)
    covered = covered_seconds if covered_seconds and covered_seconds > 0 else interval_seconds
    expected = math.ceil(last_changed * max(seconds_since_last, 0.0) / covered)
    if expected > bulk_above:
        return PollChoice("bulk", expected, saved=1)
    return PollChoice("rest", expected)


def cheaper_push(records: int, collection_size: int = 200) -> ApiChoice:
    """Collections calls of 200 or one Bulk API 2.0 ingest job (create, upload, close, status, results)."""
    rest = max(1, math.ceil(records / collection_size))
    bulk = 6
    return ApiChoice("bulk" if bulk < rest else "rest", rest, bulk)


def forecast_per_day(calls_recent: int, minutes: float) -> int:
    """Calls a day at the pace of the last `minutes` minutes."""
    return int(round(calls_recent * 1440 / minutes)) if minutes > 0 else 0
