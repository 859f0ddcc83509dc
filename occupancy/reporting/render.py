"""The report as text: a table, markdown, CSV (the period table only) or JSON (everything, full timestamps).
The women/men columns and keys appear only when the range has estimates, the distinct-voices ones only
when it has that figure."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from datetime import datetime

from .queries import clock
from .summary import Report


def _percent(share: float) -> str:
    return f"{share * 100:.0f}%"


def _when(moment: datetime, seconds: bool = False) -> str:
    """A local time as the text shows it, with its UTC offset where the clock shows that time twice."""
    return clock(moment, "%a %Y-%m-%d %H:%M:%S" if seconds else "%a %Y-%m-%d %H:%M")


def _span(minutes: float) -> str:
    return f"{minutes / 60:.1f} h" if minutes >= 60 else f"{minutes:.1f} min"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


_PERIOD_HEADERS = ["Period", "Day", "Hours", "Covered min", "Mean", "Peak", "Speech min", ">=1", ">=2", ">=3", "Coverage"]


def _period_cells(p: dict) -> list[str]:
    return [
        p["period"], p["weekday"], str(p["hours"]), f"{p['minutes_covered']:.1f}", f"{p['mean_count']:.2f}",
        str(p["peak_count"]), f"{p['speech_minutes']:.1f}", _percent(p["share_1plus"]),
        _percent(p["share_2plus"]), _percent(p["share_3plus"]), "LOW" if p["low_coverage"] else "ok",
    ]


def _optional_columns(report: Report) -> list[tuple[str, str, str]]:
    """(header, key, format) of the columns shown only where the range has them: women/men, distinct voices."""
    columns = [("Women", "mean_women", "{:.2f}"), ("Men", "mean_men", "{:.2f}")] if report.sex else []
    if report.voices:
        columns += [("Voices", "mean_distinct_voices", "{:.1f}"), ("Voices peak", "peak_distinct_voices", "{}")]
    return columns


def sections(report: Report, top: int) -> list[tuple[str, list[str], list[list[str]]]]:
    """The report as titled tables of text cells, shared by the table and markdown formats."""
    what = {"hour": "hours", "weekday-hour": "weekday hours", "day": "days"}[report.by]
    low = f"under {report.min_coverage:g} monitored min per hour"
    optional = _optional_columns(report)
    optional_headers = [header for header, _, _ in optional]
    period_headers = _PERIOD_HEADERS + optional_headers

    def optional_cells(p: dict) -> list[str]:
        return ["-" if p[key] is None else form.format(p[key]) for _, key, form in optional]

    def period_rows(rows: list[dict]) -> list[list[str]]:
        return [_period_cells(p) + optional_cells(p) for p in rows]

    result = [
        (f"Traffic by {report.by} (LOW coverage: {low})", period_headers, period_rows(report.periods)),
        (f"Busiest {what} (top {top}, well covered)", period_headers, period_rows(report.busiest)),
        (f"Quietest open {what} (well covered)", period_headers, period_rows(report.quietest)),
        (
            "Weekdays",
            ["Day", "Days", "Covered", "Mean", "Peak", "Speech min/day", ">=1", ">=2", ">=3", "Busiest hour",
             *optional_headers],
            [
                [w["period"], str(w["days"]), _span(w["minutes_covered"]), f"{w['mean_count']:.2f}",
                 str(w["peak_count"]), f"{w['speech_minutes_per_day']:.1f}", _percent(w["share_1plus"]),
                 _percent(w["share_2plus"]), _percent(w["share_3plus"]), w["busiest_hour"] or "-", *optional_cells(w)]
                for w in report.weekdays
            ],
        ),
    ]
    if report.capacity_limit > 0:
        result.append((
            f"Capacity alerts (smoothed count above {report.capacity_limit} for {report.alert_seconds:g} s or more, "
            f"{len(report.alerts)} in all)",
            ["Start", "End", "Duration", "Peak"],
            [[_when(a["start"], seconds=True), _when(a["end"], seconds=True), _duration(a["duration_s"]), f"{a['peak_smoothed']:g}"]
             for a in report.alerts],
        ))
    longest = sorted(report.gaps, key=lambda g: -g["hours"])[:top]
    result.append((
        f"Longest gaps (whole hours not monitored, {len(report.gaps)} in all)",
        ["From", "To", "Hours"],
        [[_when(g["start"]), _when(g["end"]), str(g["hours"])] for g in sorted(longest, key=lambda g: g["start"])],
    ))
    return result


def heading(report: Report) -> list[str]:
    covered = sum(h.row["seconds"] for h in report.hours) / 60
    lines = [
        f"Traffic report: {report.venue}" if report.venue else "Traffic report",
        f"{_when(report.first)} to {_when(report.last)}, {report.zone}; log hours with data: {len(report.hours)}, "
        f"{_span(covered)} monitored; database {report.database}",
        "Mean: people speaking at once, averaged over monitored time; >=1/>=2/>=3: share of monitored time "
        "with at least that many speakers; Peak: most in one window.",
    ]
    if report.sex:
        estimated = sum(h.row["sex_estimated_seconds"] for h in report.hours) / 60
        lines.append(
            f"Women/Men: women and men speaking at once, estimated (model.sex, a rough guess) and averaged over the "
            f"{_span(estimated)} with an estimate, so they add up to Mean where all of a period has one; "
            "-: none in that period."
        )
    if report.voices:
        voiced = sum(h.row["distinct_voices_seconds"] or 0 for h in report.hours) / 60
        lines.append(
            f"Voices: different people heard within the monitor's voices_minutes (monitor.voices, approximate), "
            f"averaged over the {_span(voiced)} with the figure; Voices peak: the highest; -: none in that period."
        )
    return lines


def text_table(title: str, headers: list[str], rows: list[list[str]]) -> list[str]:
    """A titled table as aligned text lines (the first column left-aligned, the others right-aligned)."""
    lines = ["", title]
    if not rows:
        return lines + ["  (none)"]
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    for cells in [headers, *rows]:
        lines.append("  " + "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))))
    return lines


def markdown_table(title: str, headers: list[str], rows: list[list[str]]) -> list[str]:
    """A titled table as markdown lines (a level-2 heading, then the table)."""
    lines = ["", f"## {title}", ""]
    if not rows:
        return lines + ["(none)"]
    lines.append("| " + " | ".join(headers) + " |")
    lines.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|")
    return lines + ["| " + " | ".join(cells) + " |" for cells in rows]


def render_text(report: Report, top: int) -> str:
    lines = heading(report)
    for title, headers, rows in sections(report, top):
        lines += text_table(title, headers, rows)
    return "\n".join(lines) + "\n"


def render_markdown(report: Report, top: int) -> str:
    title, *rest = heading(report)
    lines = [f"# {title}", "", *[f"{line}  " for line in rest]]
    for name, headers, rows in sections(report, top):
        lines += markdown_table(name, headers, rows)
    return "\n".join(lines) + "\n"


def _rounded(row: dict) -> dict:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}


def render_csv(report: Report, top: int) -> str:
    """The period table only (one CSV is one table), columns `report.keys`."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=report.keys, lineterminator="\n")
    writer.writeheader()
    writer.writerows(_rounded(report.shown(p)) for p in report.periods)
    return out.getvalue()


def render_json(report: Report, top: int) -> str:
    def timed(row: dict) -> dict:
        return _rounded({k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()})

    return json.dumps({
        "venue": report.venue,
        "database": report.database,
        "timezone": report.zone,
        "by": report.by,
        "since": report.first.isoformat(),
        "until": report.last.isoformat(),
        "min_coverage_minutes": report.min_coverage,
        "capacity_limit": report.capacity_limit,
        "alert_seconds": report.alert_seconds,
        "periods": [_rounded(report.shown(p)) for p in report.periods],
        "busiest": [_rounded(report.shown(p)) for p in report.busiest],
        "quietest": [_rounded(report.shown(p)) for p in report.quietest],
        "weekdays": [_rounded(report.shown(w)) for w in report.weekdays],
        "alerts": [timed(a) for a in report.alerts],
        "gaps": [timed(g) for g in report.gaps],
    }, indent=2) + "\n"


RENDERERS: dict[str, Callable[[Report, int], str]] = {
    "table": render_text, "markdown": render_markdown, "csv": render_csv, "json": render_json,
}
