"""The fleet report (`occupancy report --from postgresql://...`): one row per box (venue and room) with its
coverage, mean, peak and busiest weekday hours, then the full report of each venue asked for, in the
formats of the local report; `plot_fleet` draws the boxes x hour-of-day picture.

What it is built from (occupancy/fleet/reader.py sums it up inside PostgreSQL) is plain rows: this module
knows no database."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from .plot import FIGURE_DPI, save_figure
from .render import _percent, _rounded, _when, markdown_table, render_json, render_markdown, render_text, text_table
from .summary import Report

BUSIEST_SHOWN = 3  # weekday hours per box in the fleet table
FLEET_KEYS = ("venue", "room", "hours", "monitored_hours", "coverage", "mean_count", "peak_count",
              "speech_minutes", "share_1plus", "busiest", "first_hour", "last_hour", "last_synced")


@dataclass
class FleetReport:
    """The fleet table's rows (`rooms`, keys FLEET_KEYS plus `by_hour`: 24 means of the hours of the day, None
    where unmonitored), and the full Report of each venue asked for."""

    store: str  # the central store's URL, password masked
    zone: str
    first: datetime
    last: datetime
    min_coverage: float
    rooms: list[dict]
    reports: list[Report]


def busiest_slots(slots: list[dict], min_coverage: float, top: int = BUSIEST_SHOWN) -> list[dict]:
    """The `top` well-covered weekday hours of one box by mean (then speech time), busiest first, from its slot
    totals (period, hours, seconds, person_seconds, seconds_1plus)."""
    covered = [s for s in slots if s["seconds"] / 60 >= min_coverage * s["hours"]]
    ranked = sorted(covered, key=lambda s: (s["person_seconds"] / s["seconds"], s["seconds_1plus"]), reverse=True)
    return [{"period": s["period"], "mean_count": s["person_seconds"] / s["seconds"]} for s in ranked[:top]]


def hour_of_day_means(slots: list[dict]) -> list[float | None]:
    """A box's mean count in each hour of the day (0-23) over all weekdays; None where never monitored."""
    means: list[float | None] = []
    for hour in range(24):
        group = [s for s in slots if s["hour"] == hour]
        seconds = sum(s["seconds"] for s in group)
        means.append(sum(s["person_seconds"] for s in group) / seconds if seconds else None)
    return means


def room_label(room: dict) -> str:
    """'Venue / Room', or the venue alone for its only room."""
    return f"{room['venue']} / {room['room']}" if room["room"] else room["venue"]


def _many(n: int, thing: str) -> str:
    return f"{n} {thing}" + ("s" if n != 1 else "")


def _busiest_text(room: dict) -> str:
    return ", ".join(f"{s['period']} ({s['mean_count']:.2f})" for s in room["busiest"]) or "-"


def _heading(fleet: FleetReport) -> list[str]:
    return [
        f"Fleet report: {_many(len(fleet.rooms), 'room')} in {_many(len({r['venue'] for r in fleet.rooms}), 'venue')}",
        f"{_when(fleet.first)} to {_when(fleet.last)}, {fleet.zone}; central store {fleet.store}",
        "Coverage: monitored share of the range's hours; Mean: people speaking at once, averaged over monitored "
        f"time; Busiest: the {BUSIEST_SHOWN} weekday hours with the highest mean (at least {fleet.min_coverage:g} "
        "monitored min per hour).",
    ]


def _table(fleet: FleetReport) -> tuple[str, list[str], list[list[str]]]:
    headers = ["Venue", "Room", "Hours", "Monitored h", "Coverage", "Mean", "Peak", "Speech h", ">=1", "Busiest",
               "Last hour", "Last synced"]
    rows = [
        [r["venue"], r["room"] or "-", str(r["hours"]), f"{r['seconds'] / 3600:.1f}", _percent(r["coverage"]),
         f"{r['mean_count']:.2f}", str(r["peak_count"]), f"{r['speech_minutes'] / 60:.1f}", _percent(r["share_1plus"]),
         _busiest_text(r), _when(r["last_hour"]), f"{r['last_synced']:%Y-%m-%d %H:%M} UTC" if r["last_synced"] else "-"]
        for r in fleet.rooms
    ]
    return "Rooms", headers, rows


def render_fleet_text(fleet: FleetReport, top: int) -> str:
    lines = _heading(fleet) + text_table(*_table(fleet))
    return "\n".join(lines) + "\n" + "".join("\n" + render_text(report, top) for report in fleet.reports)


def render_fleet_markdown(fleet: FleetReport, top: int) -> str:
    title, *rest = _heading(fleet)
    lines = [f"# {title}", "", *[f"{line}  " for line in rest], *markdown_table(*_table(fleet))]
    return "\n".join(lines) + "\n" + "".join("\n" + render_markdown(report, top) for report in fleet.reports)


def fleet_rows(fleet: FleetReport) -> list[dict]:
    """The fleet table as plain values (FLEET_KEYS), times in ISO form, for CSV and JSON."""
    rows = []
    for r in fleet.rooms:
        row = {key: r.get(key) for key in FLEET_KEYS}
        row["monitored_hours"] = r["seconds"] / 3600
        for key in ("first_hour", "last_hour", "last_synced"):
            row[key] = row[key].isoformat() if row[key] else None
        rows.append(_rounded(row))
    return rows


def render_fleet_csv(fleet: FleetReport, top: int) -> str:
    """The fleet table only (one CSV is one table); `busiest` as 'Fri 18:00 (2.10), ...'."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=FLEET_KEYS, lineterminator="\n")
    writer.writeheader()
    for row, room in zip(fleet_rows(fleet), fleet.rooms):
        writer.writerow({**row, "busiest": _busiest_text(room)})
    return out.getvalue()


def render_fleet_json(fleet: FleetReport, top: int) -> str:
    return json.dumps({
        "store": fleet.store,
        "timezone": fleet.zone,
        "since": fleet.first.isoformat(),
        "until": fleet.last.isoformat(),
        "min_coverage_minutes": fleet.min_coverage,
        "rooms": [{**row, "busiest": [_rounded(s) for s in room["busiest"]],
                   "by_hour": [None if m is None else round(m, 4) for m in room["by_hour"]]}
                  for row, room in zip(fleet_rows(fleet), fleet.rooms)],
        "reports": [json.loads(render_json(report, top)) for report in fleet.reports],
    }, indent=2) + "\n"


# The formats of the local report (render.RENDERERS) the fleet report has; a format added there (html) needs
# its fleet form added here before `report --from` offers it.
FLEET_RENDERERS: dict[str, Callable[[FleetReport, int], str]] = {
    "table": render_fleet_text, "markdown": render_fleet_markdown, "csv": render_fleet_csv, "json": render_fleet_json,
}


def plot_fleet(fleet: FleetReport, path: str | Path) -> None:
    """One PNG: the mean count of each box by hour of the day (a heatmap, a row per box) beside its coverage."""
    save_figure(fleet_figure(fleet), path)


def fleet_figure(fleet: FleetReport):
    import numpy as np
    from matplotlib.figure import Figure

    labels = [room_label(r) for r in fleet.rooms]
    height = min(60.0, max(4.0, 1.5 + 0.3 * len(labels)))  # a thousand rows stay one (tall) picture
    fig = Figure(figsize=(14.0, height), dpi=FIGURE_DPI, layout="constrained")
    heat, bars = fig.subplots(1, 2, width_ratios=[5, 1], sharey=True)
    cells = np.array([[np.nan if m is None else m for m in r["by_hour"]] for r in fleet.rooms], dtype=float)
    top = max(1.0, float(np.nanmax(cells))) if np.isfinite(cells).any() else 1.0
    image = heat.imshow(np.ma.masked_invalid(cells), aspect="auto", cmap="YlOrRd", vmin=0, vmax=top)
    heat.set_facecolor("#e8e8e8")
    heat.set_xticks(range(24), [f"{h:02d}" for h in range(24)])
    heat.set_yticks(range(len(labels)), labels, fontsize=8 if len(labels) < 60 else 4)
    heat.set_xlabel(f"hour of day, {fleet.zone}")
    heat.set_title("Mean people speaking at once, by room and hour of day (grey: not monitored)")
    fig.colorbar(image, ax=heat, label="people speaking at once (mean)", location="left")
    bars.barh(range(len(labels)), [100 * r["coverage"] for r in fleet.rooms], color="C0")
    bars.set_xlim(0, 100)
    bars.set_xlabel("coverage, % of the range's hours")
    bars.grid(axis="x", alpha=0.3)
    fig.suptitle(f"Fleet: {_many(len(labels), 'room')}, {fleet.first:%a %d %b %Y} to {fleet.last:%a %d %b %Y}", fontsize=14)
    return fig
