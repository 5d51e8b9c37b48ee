"""Hourly sync counts shaped for the Trends chart: one series per direction and outcome, every hour present."""
from __future__ import annotations

RANGES = {"24h": 24, "7d": 24 * 7, "30d": 24 * 30}
# The inbound apply counts "synced", the write path counts Salesforce's "success"; both mean one record synced.
OUTCOME_SERIES = {"synced": "synced", "success": "synced", "failed": "failed", "cdc_events": "cdc_events"}
# (direction, outcome) -> label and colour, in legend order.
SERIES = (
    ("sf_to_pg", "synced", "Salesforce → Postgres", "#1f77b4"),
    ("pg_to_sf", "synced", "Postgres → Salesforce", "#2ca02c"),
    ("sf_to_pg", "failed", "Failures Salesforce → Postgres", "#d62728"),
    ("pg_to_sf", "failed", "Failures Postgres → Salesforce", "#ff7f0e"),
    # events received for mapped objects, echoes of our own writes included (the Overview's "this hour")
    ("sf_to_pg", "cdc_events", "CDC events received (echoes included)", "#9467bd"),
)


def hours_for(range_name: str) -> int:
    try:
        return RANGES[range_name]
    except KeyError:
        raise ValueError(f"range must be one of {', '.join(RANGES)}") from None


def hourly_series(rows: list[dict]) -> dict:
    """rows from the hourly_stats query: (hour, mapping_id, direction, outcome, count), with a row of nulls
    for hours without traffic. Returns {"hours": [...], "series": [{"key", "label", "color", "counts"}]}."""
    hours = sorted({r["hour"] for r in rows})
    index = {h: i for i, h in enumerate(hours)}
    counts = {(d, o): [0] * len(hours) for d, o, _, _ in SERIES}
    for r in rows:
        key = (r["direction"], OUTCOME_SERIES.get(r["outcome"]))
        if key in counts:
            counts[key][index[r["hour"]]] += int(r["count"] or 0)
    return {"hours": hours, "series": [
        {"key": f"{d}:{o}", "label": label, "color": color, "counts": counts[(d, o)]}
        for d, o, label, color in SERIES]}


def figure(shaped: dict, title: str) -> dict:
    """A Plotly figure as plain JSON (plotly.js draws it in the browser)."""
    x = [h.isoformat() for h in shaped["hours"]]
    traces = []
    # Markers on every hour help on a day's chart and clutter a month's.
    mode = "lines+markers" if len(x) <= 48 else "lines"
    for s in shaped["series"]:
        failure = s["key"].endswith(":failed")
        traces.append({"type": "bar" if failure else "scatter", "mode": mode, "name": s["label"],
                       "x": x, "y": s["counts"], "marker": {"color": s["color"]},
                       "line": {"shape": "hv", "width": 2}, "meta": s["key"]})
    peak = max((max(s["counts"], default=0) for s in shaped["series"]), default=0)
    for t in traces:
        if t["type"] == "bar":
            t.pop("mode"), t.pop("line")
    return {"data": traces, "layout": {
        "title": {"text": title}, "barmode": "group", "hovermode": "x unified",
        "xaxis": {"type": "date", "title": {"text": "hour (UTC)"}},
        # Whole records only: without a tick step Plotly puts ticks at 0.5 for small counts.
        "yaxis": {"title": {"text": "records"}, "rangemode": "tozero", "tickformat": ",d",
                  **({"dtick": 1} if peak < 10 else {})},
        "legend": {"orientation": "h", "y": -0.25}, "margin": {"t": 50, "r": 20, "l": 60, "b": 60},
    }}


def totals(shaped: dict) -> dict[str, int]:
    return {s["key"]: sum(s["counts"]) for s in shaped["series"]}
