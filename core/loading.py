"""Loads, polls and drift checks decided without I/O: poll settings, progress, value shapes (SOQL: core/soql.py)."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from core.convert import FieldSpec, parse_datetime
from core.mapping import Mapping, sf_source

DEFAULT_POLL_SECONDS = 600      # Heroku Connect's default
CDC_POLL_SECONDS = 3600         # a mapping on Change Data Capture: the backstop is a rare safety net
MIN_POLL_SECONDS = 60
DELETE_MODES = ("queryAll", "getDeleted")


def staging_columns(m: Mapping) -> list[str]:
    """The staging table's columns, in the order core.soql.record_fields selects their fields."""
    return ["sfid", "systemmodstamp", "isdeleted", *(f.column for f in m.read_fields)]


def rest_datetime(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S+00:00")


@dataclass(frozen=True)
class PollSettings:
    seconds: int            # 0: polling is off
    delete_mode: str        # queryAll (one call finds changes and deletes) or getDeleted
    keep_deleted: bool      # keep deleted rows with isdeleted = true instead of deleting them


def check_poll_options(config: dict) -> tuple[str, str] | None:
    """(the config key at fault, why) when the mapping config's polling options cannot be stored, else None.
    Every poll reads them, so a value that would mislead it ("false" read as true) is refused when saved."""
    seconds = config.get("sf_polling_seconds", DEFAULT_POLL_SECONDS)
    if isinstance(seconds, str) and seconds.isascii() and seconds.isdigit() and len(seconds) < 10:
        seconds = int(seconds)   # some exports write numbers as text
    if seconds is not None and seconds is not False and (
            isinstance(seconds, bool) or not isinstance(seconds, int) or not 0 <= seconds <= 30 * 86_400):
        return "config.sf_polling_seconds", "must be a whole number of seconds (0 to 2592000) or false"
    if config.get("sf_delete_detection", "queryAll") not in DELETE_MODES:
        return "config.sf_delete_detection", f"must be one of {', '.join(DELETE_MODES)}"
    if not isinstance(config.get("keep_deleted_rows", False), bool):
        return "config.keep_deleted_rows", "must be true or false (a JSON boolean)"
    return None


def poll_settings(m: Mapping) -> PollSettings:
    """From the mapping's config: sf_polling_seconds (Heroku Connect's name; 0 or false turns polling off,
    values under a minute count as a minute; default 600 s, an hour for a mapping whose sf_source is cdc),
    sf_delete_detection, keep_deleted_rows."""
    default = CDC_POLL_SECONDS if sf_source(m) == "cdc" else DEFAULT_POLL_SECONDS
    raw = m.extra.get("sf_polling_seconds", default)
    if raw is False or raw is None:
        seconds = 0
    else:
        try:
            seconds = int(raw)
        except (TypeError, ValueError, OverflowError):   # OverflowError: a stored Infinity
            seconds = default
        seconds = 0 if seconds <= 0 else max(seconds, MIN_POLL_SECONDS)
    mode = m.extra.get("sf_delete_detection", "queryAll")
    return PollSettings(seconds=seconds, delete_mode=mode if mode in DELETE_MODES else "queryAll",
                        keep_deleted=m.extra.get("keep_deleted_rows") is True)


def newest_modstamp(records: list[dict]) -> dt.datetime | None:
    stamps = [parse_datetime(r["SystemModstamp"]) for r in records if r.get("SystemModstamp")]
    return max(stamps) if stamps else None


def bulk_error(text: str) -> dict:
    """sf__Error as Bulk writes it ("CODE:message:fields --") in the shape of a Collections error."""
    code, _, rest = text.partition(":")
    message, _, fields = rest.rpartition(":")
    if not message:
        message, fields = rest, ""
    return {"statusCode": code.strip(), "message": message.strip(),
            "fields": [f for f in fields.replace("--", "").strip().split(",") if f]}


@dataclass(frozen=True)
class Progress:
    loaded: int
    total: int | None
    seconds: float
    rate: float | None          # records per second
    eta_seconds: float | None
    fraction: float | None

    def as_dict(self) -> dict:
        return {"loaded": self.loaded, "total": self.total, "seconds": round(self.seconds, 1),
                "rate": round(self.rate, 1) if self.rate is not None else None,
                "eta_seconds": round(self.eta_seconds, 1) if self.eta_seconds is not None else None,
                "percent": round(100 * self.fraction, 1) if self.fraction is not None else None}


def progress(loaded: int, total: int | None, seconds: float) -> Progress:
    rate = loaded / seconds if seconds > 0 and loaded else None
    fraction = min(1.0, loaded / total) if total else (1.0 if total == 0 else None)
    eta = (max(0, total - loaded) / rate) if rate and total is not None else None
    return Progress(loaded, total, seconds, rate, eta, fraction)


def progress_bar(p: Progress, width: int = 30) -> str:
    """One terminal line: [#####-----]  45.0%  450,000/1,000,000  81,234 rec/s  ETA 7s"""
    fraction = p.fraction or 0.0
    filled = int(round(width * fraction))
    total = f"{p.total:,}" if p.total is not None else "?"
    rate = f"{p.rate:,.0f} rec/s" if p.rate else "- rec/s"
    eta = f"ETA {p.eta_seconds:,.0f}s" if p.eta_seconds is not None else "ETA -"
    percent = f"{100 * fraction:5.1f}%" if p.fraction is not None else "  ?  %"
    return f"[{'#' * filled}{'-' * (width - filled)}] {percent}  {p.loaded:,}/{total}  {rate}  {eta}"


def spec_by_column(m: Mapping) -> dict[str, FieldSpec]:
    return {f.column: f for f in m.read_fields}
