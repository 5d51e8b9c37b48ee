"""Formula and roll-up freshness (pure): which mapped fields Salesforce calculates, and how often a mapping
refreshes them. Salesforce does not touch SystemModstamp when a formula's result changes (nor does CDC carry
formula fields), so neither the poll nor any message brings those changes; jobs/formula_refresh.py does."""
from __future__ import annotations

import datetime as dt

from core.convert import FieldSpec
from core.mapping import Mapping

CONFIG_KEY = "formula_refresh_minutes"
DEFAULT_MINUTES = 15
MAX_MINUTES = 7 * 24 * 60


def check_refresh_option(config: dict) -> tuple[str, str] | None:
    """(the config key at fault, why) when `formula_refresh_minutes` cannot be stored, else None."""
    if CONFIG_KEY not in config:
        return None
    value = config[CONFIG_KEY]
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_MINUTES:
        return (f"config.{CONFIG_KEY}",
                f"must be a whole number of minutes (0 turns refreshing off, at most {MAX_MINUTES})")
    return None


def refresh_minutes(m: Mapping) -> int:
    """The mapping's refresh interval: its `formula_refresh_minutes`, else the default (0: off)."""
    value = m.extra.get(CONFIG_KEY, DEFAULT_MINUTES)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else DEFAULT_MINUTES


def calculated_fields(m: Mapping, describe: dict | None) -> tuple[FieldSpec, ...]:
    """The mapped fields Salesforce -> Postgres reads whose describe says `calculated` (formulas and roll-up
    summaries). A Postgres-owned field is left alone, as every inbound source leaves it."""
    calculated = {f["name"].lower() for f in (describe or {}).get("fields", []) if f.get("calculated")}
    return tuple(f for f in m.overwritten_fields if f.name.lower() in calculated)


def next_refresh(m: Mapping, ran_at: dt.datetime, has_calculated: bool, factor: float = 1.0) -> dt.datetime | None:
    """When to refresh next: None when refreshing is off; a mapping without calculated fields is looked at
    again after the default interval (its fields or their describe may change). `factor`: the API budget's
    spacing of formula refreshes (core/budget.py), 1 when it holds nothing back."""
    minutes = refresh_minutes(m)
    if minutes == 0:
        return None
    minutes = minutes if has_calculated else max(minutes, DEFAULT_MINUTES)
    return ran_at + dt.timedelta(minutes=minutes * factor)
