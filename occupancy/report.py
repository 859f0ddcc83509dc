"""`occupancy report`: busy hours, weekday comparison, capacity alerts and charts from the traffic log.

The log is why a venue runs the monitor; this turns it into answers: when is it busy, when is it
quiet, which days differ, when was it over capacity.

Where the numbers come from: the `hourly` rollup (it survives event retention) and, for capacity
alerts, `events.smoothed`. The log is opened read-only, so a report can run while a monitor writes
it (WAL readers never block the writer). A log from an older occupancy schema is migrated first; a
database that is not an occupancy log is refused with a one-line error.

Time: the log stores UTC; reports show local time, the machine's time zone (`TZ=Europe/Paris
occupancy report` for a venue elsewhere), or UTC with `--utc`. `--since`/`--until` are read in the
same time zone (a date alone means its midnight; `--until` is exclusive). Periods are made of the
log's whole UTC hours: in a zone with a half-hour offset an hour is labelled by its local start
(e.g. 14:30). Weekdays and days are local.

Measures of a period (an hour, a weekday-hour such as "Tue 18:00" over all Tuesdays, or a day):
  hours            log hours with any data in the period
  minutes_covered  minutes actually monitored
  mean_count       people speaking at once, averaged over the monitored time
  peak_count       highest count of any window (the top class means "that many or more")
  speech_minutes   monitored minutes with at least one person speaking
  share_1plus, share_2plus, share_3plus   share of monitored time with at least 1, 2, 3 speakers
  low_coverage     fewer than `min_coverage` monitored minutes per hour with data: such a period is
                   flagged and kept out of the busiest/quietest lists, so a gap is not a quiet hour
Only when some window in the range carries the optional women/men estimate (`model.sex`):
  mean_women, mean_men  women and men speaking at once, averaged over the monitored time with an
                   estimate: mean_count's unit, so they add up to it where all of the period has one
                   (None: no estimate in the period)
  sex_minutes      monitored minutes with an estimate (json and csv only)

Capacity alerts (when `monitor.capacity_limit` or --capacity-limit is above 0): stretches when the
smoothed count (events.smoothed) stayed above the limit for at least --alert-seconds (default 60);
dips shorter than that do not end a stretch. Counts stop at the model's top class (3 = "3 or more"),
so a limit at or above it never fires. Events deleted by retention have no alerts.

Output: `table` (default) and `markdown` print every section (periods, busiest and quietest
well-covered periods, weekdays, capacity alerts, longest gaps); `json` holds them all with full
timestamps; `csv` holds only the period table (one CSV is one table). The women/men columns and
keys appear only when the range has estimates, so a log without them reports as it always did.
`--plot FILE.png` also writes one 1200x900 PNG: a weekday x hour heatmap of the mean (grey: not
monitored, hatched: low coverage) above a daily line chart (each day's mean and its busiest
well-covered hour).

For the dashboard: `hourly_table(db_path, since=None, until=None, *, utc=False)` returns one dict
per local hour, oldest first, with the keys PERIOD_KEYS and SEX_KEYS (floats unrounded);
`build_report()` returns everything the command prints as a Report.

Exit codes: 0 report printed; 1 nothing logged in the range (one line on stderr, nothing on stdout);
2 missing file, not an occupancy log, or unreadable (one line on stderr).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import sqlite3
import sys
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlite_utils import Database

from .config import Config
from .errors import ConfigError, StorageError
from .store import hour_start, hourly_rows, iso, migrations, open_store, storage_error

log = logging.getLogger(__name__)

PERIOD_KEYS = (
    "period", "weekday", "hours", "minutes_covered", "mean_count", "peak_count",
    "speech_minutes", "share_1plus", "share_2plus", "share_3plus", "low_coverage",
)
SEX_KEYS = ("mean_women", "mean_men", "sex_minutes")  # shown only where the range has estimates
BY_CHOICES = ("hour", "weekday-hour", "day")
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
DEFAULT_MIN_COVERAGE = 15.0  # minutes per hour: an hour with 5 minutes of data is flagged, not called quiet
DEFAULT_ALERT_SECONDS = 60.0  # a capacity alert lasts at least this long; shorter dips do not end it
FIGURE_INCHES = (12.0, 9.0)
FIGURE_DPI = 100  # --plot writes FIGURE_INCHES x FIGURE_DPI = 1200 x 900 pixels
_HOUR = timedelta(hours=1)


# ---- reading the log ------------------------------------------------------------------------------


def open_log(path: str | Path) -> Database | None:
    """A read-only connection to the log: an older occupancy schema is migrated first, a foreign one refused.

    None when the file holds no log yet (a monitor is just creating it): nothing to report, and
    nothing is written, so a report never races the monitor's own first migration.
    """
    db = open_store(path, readonly=True)
    try:
        pending = migrations.pending(db)
        applied = migrations.applied(db)
        tables = set(db.table_names()) - {migrations.migrations_table}
    except sqlite3.Error as exc:
        db.close()
        raise storage_error(path, exc) from None
    if not pending:
        return db
    db.close()
    if not applied:
        if tables:
            raise StorageError(f"{path}: not an occupancy log (its tables {', '.join(sorted(tables))} were not written by occupancy)")
        return None
    log.info("%s: migrating the log to the current schema (%s)", path, ", ".join(m.name for m in pending))
    open_store(path).close()
    return open_store(path, readonly=True)


def parse_when(text: str) -> datetime:
    """argparse type for --since/--until: an ISO date or date-time; no offset means the report's time zone."""
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date or time (e.g. 2026-11-23 or 2026-11-23T18:00), got {text!r}") from None


def in_zone(moment: datetime, utc: bool) -> datetime:
    """The moment in the report's time zone: UTC, or the machine's local zone (DST-aware, per moment)."""
    if moment.tzinfo is None:  # a naive --since/--until is meant in the report's zone
        return moment.replace(tzinfo=UTC) if utc else moment.astimezone()
    return moment.astimezone(UTC) if utc else moment.astimezone()


@dataclass(frozen=True)
class Hour:
    """One row of the hourly rollup, placed in the report's time zone."""

    local: datetime
    row: dict


def load_hours(db: Database, since: datetime | None, until: datetime | None, utc: bool) -> list[Hour]:
    return [
        Hour(in_zone(datetime.fromisoformat(row["hour_utc"]), utc), row)
        for row in hourly_rows(db, since, until)
    ]


# ---- periods ------------------------------------------------------------------------------------------

_PERIOD_OF: dict[str, Callable[[datetime], tuple[object, str]]] = {
    "hour": lambda t: (t, f"{t:%Y-%m-%d %H:%M}"),
    "day": lambda t: (t.date(), f"{t:%Y-%m-%d}"),
    "weekday-hour": lambda t: ((t.weekday(), t.hour, t.minute), f"{WEEKDAYS[t.weekday()]} {t:%H:%M}"),
}


def group_hours(hours: list[Hour], by: str) -> dict[object, tuple[str, list[Hour]]]:
    """Hours grouped into periods: sort key -> (label, hours)."""
    groups: dict[object, tuple[str, list[Hour]]] = {}
    for hour in hours:
        key, label = _PERIOD_OF[by](hour.local)
        groups.setdefault(key, (label, []))[1].append(hour)
    return dict(sorted(groups.items()))


def summarize(label: str, hours: list[Hour], min_coverage: float) -> dict:
    """The measures of one period (see the module docstring), from its hourly rows."""
    rows = [h.row for h in hours]
    seconds = sum(r["seconds"] for r in rows)

    def share(column: str) -> float:
        return sum(r[column] for r in rows) / seconds

    weekdays = {WEEKDAYS[h.local.weekday()] for h in hours}
    estimated = sum(r["sex_estimated_seconds"] for r in rows)
    return {
        "period": label,
        "weekday": weekdays.pop() if len(weekdays) == 1 else "",
        "hours": len(rows),
        "minutes_covered": seconds / 60,
        "mean_count": sum(r["person_seconds"] for r in rows) / seconds,
        "peak_count": max(r["peak_count"] for r in rows),
        "speech_minutes": sum(r["seconds_1plus"] for r in rows) / 60,
        "share_1plus": share("seconds_1plus"),
        "share_2plus": share("seconds_2plus"),
        "share_3plus": share("seconds_3plus"),
        "low_coverage": seconds / 60 < min_coverage * len(rows),
        "mean_women": sum(r["women_seconds"] for r in rows) / estimated if estimated else None,
        "mean_men": sum(r["men_seconds"] for r in rows) / estimated if estimated else None,
        "sex_minutes": estimated / 60,
    }


def periods(hours: list[Hour], by: str, min_coverage: float) -> list[dict]:
    return [summarize(label, group, min_coverage) for label, group in group_hours(hours, by).values()]


def hourly_table(
    db_path: str | Path, since: datetime | None = None, until: datetime | None = None, *,
    utc: bool = False, min_coverage: float = DEFAULT_MIN_COVERAGE,
) -> list[dict]:
    """One dict per local hour in [since, until), oldest first, keys PERIOD_KEYS + SEX_KEYS: the dashboard's table."""
    since, until = (in_zone(t, utc) if t else None for t in (since, until))
    db = open_log(db_path)
    if db is None:
        return []
    try:
        return periods(load_hours(db, since, until, utc), "hour", min_coverage)
    except sqlite3.Error as exc:
        raise storage_error(db_path, exc) from None
    finally:
        db.close()


def weekday_comparison(hours: list[Hour], min_coverage: float) -> list[dict]:
    """Per local weekday: the period measures plus days seen, speech minutes per day and its busiest hour."""
    by_weekday: dict[int, list[Hour]] = defaultdict(list)
    for hour in hours:
        by_weekday[hour.local.weekday()].append(hour)
    slots = periods(hours, "weekday-hour", min_coverage)
    result = []
    for weekday, group in sorted(by_weekday.items()):
        row = summarize(WEEKDAYS[weekday], group, min_coverage)
        row["days"] = len({h.local.date() for h in group})
        row["speech_minutes_per_day"] = row["speech_minutes"] / row["days"]
        covered = [s for s in slots if s["weekday"] == WEEKDAYS[weekday] and not s["low_coverage"]]
        row["busiest_hour"] = max(covered, key=_busyness)["period"].split()[1] if covered else None
        result.append(row)
    return result


def _busyness(period: dict) -> tuple[float, float]:
    return period["mean_count"], period["speech_minutes"]


def gaps(hours: list[Hour], since: datetime | None, until: datetime | None, utc: bool) -> list[dict]:
    """Stretches of whole log hours with no data at all, in [since, until) or between the first and last data."""
    present = {datetime.fromisoformat(h.row["hour_utc"]) for h in hours}
    if not present:
        return []
    moment = hour_start(since) if since else min(present)
    end = until if until else max(present) + _HOUR
    result: list[dict] = []
    while moment < end:
        if moment not in present:
            if result and result[-1]["_next"] == moment:
                result[-1].update(_next=moment + _HOUR, hours=result[-1]["hours"] + 1)
            else:
                result.append({"_next": moment + _HOUR, "start": moment, "hours": 1})
        moment += _HOUR
    return [
        {"start": in_zone(g["start"], utc), "end": in_zone(g["_next"], utc), "hours": g["hours"]} for g in result
    ]


def capacity_alerts(
    db: Database, since: datetime | None, until: datetime | None, limit: int, utc: bool, min_seconds: float
) -> list[dict]:
    """Stretches when the smoothed count stayed above `limit`: start, end, duration, peak.

    A stretch lasts at least `min_seconds`; dips shorter than that do not end it, so a busy evening
    is one alert, not hundreds of flickers.
    """
    rows = db.query(
        "SELECT start_utc, end_utc, seconds, smoothed FROM events "
        "WHERE start_utc >= ? AND start_utc < ? AND smoothed > ? ORDER BY start_utc, id",
        [iso(since) if since else "", iso(until) if until else "~", limit],
    )
    alerts: list[dict] = []
    last_start = None
    for row in rows:
        start, end = datetime.fromisoformat(row["start_utc"]), datetime.fromisoformat(row["end_utc"])
        # the next window of a stretch starts one hop (`seconds`) later (allowing for clock jitter),
        # or after a dip shorter than min_seconds
        if alerts and (
            (start - last_start).total_seconds() <= 1.5 * row["seconds"]
            or (start - alerts[-1]["end"]).total_seconds() < min_seconds
        ):
            alerts[-1]["end"] = max(alerts[-1]["end"], end)
            alerts[-1]["peak_smoothed"] = max(alerts[-1]["peak_smoothed"], row["smoothed"])
        else:
            alerts.append({"start": start, "end": end, "peak_smoothed": row["smoothed"]})
        last_start = start
    for alert in alerts:
        alert["duration_s"] = (alert["end"] - alert["start"]).total_seconds()
        alert["start"], alert["end"] = in_zone(alert["start"], utc), in_zone(alert["end"], utc)
    return [a for a in alerts if a["duration_s"] >= min_seconds]


# ---- the report -----------------------------------------------------------------------------------------


@dataclass
class Report:
    """Everything `occupancy report` shows; times are in the report's zone (`zone` names it)."""

    database: str
    venue: str
    zone: str
    by: str
    first: datetime  # start of the range shown: --since, else the first hour with data
    last: datetime  # end of the range shown (exclusive): --until, else the end of the last hour with data
    min_coverage: float
    capacity_limit: int
    alert_seconds: float
    hours: list[Hour]
    periods: list[dict]
    busiest: list[dict]
    quietest: list[dict]
    weekdays: list[dict]
    alerts: list[dict]
    gaps: list[dict]
    sex: bool  # some window in the range has a women/men estimate: only then are SEX_KEYS shown

    def shown(self, row: dict) -> dict:
        """The row as the output shows it: without SEX_KEYS when the range has no estimates."""
        return row if self.sex else {k: v for k, v in row.items() if k not in SEX_KEYS}


def build_report(
    db_path: str | Path, *, since: datetime | None = None, until: datetime | None = None, by: str = "hour",
    utc: bool = False, top: int = 5, min_coverage: float = DEFAULT_MIN_COVERAGE, capacity_limit: int = 0,
    alert_seconds: float = DEFAULT_ALERT_SECONDS, venue: str = "",
) -> Report | None:
    """The report for [since, until) (aware datetimes, or naive in the report's zone); None when nothing is logged."""
    since, until = (in_zone(t, utc) if t else None for t in (since, until))
    db = open_log(db_path)
    if db is None:
        return None
    try:
        hours = load_hours(db, since, until, utc)
        if not hours:
            return None
        alerts = capacity_alerts(db, since, until, capacity_limit, utc, alert_seconds) if capacity_limit > 0 else []
    except sqlite3.Error as exc:
        raise storage_error(db_path, exc) from None
    finally:
        db.close()
    table = periods(hours, by, min_coverage)
    ranked = sorted((p for p in table if not p["low_coverage"]), key=_busyness)
    return Report(
        database=str(db_path), venue=venue, zone="UTC" if utc else _zone_name(hours[0].local), by=by,
        first=since or hours[0].local, last=until or in_zone(hours[-1].local + _HOUR, utc),
        min_coverage=min_coverage, capacity_limit=capacity_limit, alert_seconds=alert_seconds, hours=hours, periods=table,
        busiest=ranked[::-1][:top], quietest=ranked[:top], weekdays=weekday_comparison(hours, min_coverage),
        alerts=alerts, gaps=gaps(hours, since, until, utc), sex=any(h.row["sex_estimated_seconds"] for h in hours),
    )


def _zone_name(moment: datetime) -> str:
    offset = moment.strftime("%z")
    return f"local time {moment.tzname()} (UTC{offset[:3]}:{offset[3:]})"


# ---- output -------------------------------------------------------------------------------------------------


def _percent(share: float) -> str:
    return f"{share * 100:.0f}%"


def _when(moment: datetime, seconds: bool = False) -> str:
    return f"{moment:%a %Y-%m-%d %H:%M:%S}" if seconds else f"{moment:%a %Y-%m-%d %H:%M}"


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


def sections(report: Report, top: int) -> list[tuple[str, list[str], list[list[str]]]]:
    """The report as titled tables of text cells, shared by the table and markdown formats."""
    what = {"hour": "hours", "weekday-hour": "weekday hours", "day": "days"}[report.by]
    low = f"under {report.min_coverage:g} monitored min per hour"
    sex_headers = ["Women", "Men"] if report.sex else []
    period_headers = _PERIOD_HEADERS + sex_headers

    def sex_cells(p: dict) -> list[str]:
        return ["-" if p[k] is None else f"{p[k]:.2f}" for k in ("mean_women", "mean_men")] if report.sex else []

    def period_rows(rows: list[dict]) -> list[list[str]]:
        return [_period_cells(p) + sex_cells(p) for p in rows]

    result = [
        (f"Traffic by {report.by} (LOW coverage: {low})", period_headers, period_rows(report.periods)),
        (f"Busiest {what} (top {top}, well covered)", period_headers, period_rows(report.busiest)),
        (f"Quietest open {what} (well covered)", period_headers, period_rows(report.quietest)),
        (
            "Weekdays",
            ["Day", "Days", "Covered", "Mean", "Peak", "Speech min/day", ">=1", ">=2", ">=3", "Busiest hour", *sex_headers],
            [
                [w["period"], str(w["days"]), _span(w["minutes_covered"]), f"{w['mean_count']:.2f}",
                 str(w["peak_count"]), f"{w['speech_minutes_per_day']:.1f}", _percent(w["share_1plus"]),
                 _percent(w["share_2plus"]), _percent(w["share_3plus"]), w["busiest_hour"] or "-", *sex_cells(w)]
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


def _heading(report: Report) -> list[str]:
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
    return lines


def render_text(report: Report, top: int) -> str:
    lines = _heading(report)
    for title, headers, rows in sections(report, top):
        lines += ["", title]
        if not rows:
            lines.append("  (none)")
            continue
        widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
        for cells in [headers, *rows]:
            lines.append("  " + "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))))
    return "\n".join(lines) + "\n"


def render_markdown(report: Report, top: int) -> str:
    title, *rest = _heading(report)
    lines = [f"# {title}", "", *[f"{line}  " for line in rest]]
    for name, headers, rows in sections(report, top):
        lines += ["", f"## {name}", ""]
        if not rows:
            lines.append("(none)")
            continue
        lines.append("| " + " | ".join(headers) + " |")
        lines.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|")
        lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines) + "\n"


def _rounded(row: dict) -> dict:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}


def render_csv(report: Report, top: int) -> str:
    """The period table only (one CSV is one table), columns PERIOD_KEYS (and SEX_KEYS with estimates)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=PERIOD_KEYS + (SEX_KEYS if report.sex else ()), lineterminator="\n")
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


# ---- pictures -----------------------------------------------------------------------------------------------


def plot_report(report: Report, path: str | Path) -> None:
    """One PNG, FIGURE_INCHES at FIGURE_DPI: a weekday x hour heatmap above a daily line chart."""
    import numpy as np
    from matplotlib.figure import Figure  # no pyplot: renders with Agg, no display, no global state
    from matplotlib.patches import Rectangle

    fig = Figure(figsize=FIGURE_INCHES, dpi=FIGURE_DPI, layout="constrained")
    heat, daily = fig.subplots(2, 1, height_ratios=[3, 2])
    span = f"{report.first:%a %d %b %Y} to {report.last:%a %d %b %Y}"
    fig.suptitle(f"{report.venue or 'Traffic'}: people speaking at once, {span}, {report.zone}", fontsize=14)

    cells = np.full((7, 24), np.nan)
    low = np.zeros((7, 24), dtype=bool)
    for (weekday, hour, _minute), (label, group) in group_hours(report.hours, "weekday-hour").items():
        summary = summarize(label, group, report.min_coverage)
        cells[weekday, hour], low[weekday, hour] = summary["mean_count"], summary["low_coverage"]
    top = max(1.0, float(np.nanmax(cells)))
    image = heat.imshow(np.ma.masked_invalid(cells), aspect="auto", cmap="YlOrRd", vmin=0, vmax=top)
    heat.set_facecolor("#e8e8e8")
    for weekday, hour in zip(*np.nonzero(~np.isnan(cells))):
        value = cells[weekday, hour]
        heat.text(hour, weekday, f"{value:.1f}", ha="center", va="center", fontsize=7,
                  color="white" if value > 0.6 * top else "black")
        if low[weekday, hour]:
            heat.add_patch(Rectangle((hour - 0.5, weekday - 0.5), 1, 1, fill=False, hatch="///", edgecolor="grey", lw=0))
    heat.set_xticks(range(24), [f"{h:02d}" for h in range(24)])
    heat.set_yticks(range(7), WEEKDAYS)
    heat.set_xlabel(f"hour of day, {report.zone}")
    heat.set_title(
        f"Mean by weekday and hour (grey: not monitored; hatched: under {report.min_coverage:g} monitored min per hour)"
    )
    fig.colorbar(image, ax=heat, label="people speaking at once (mean)")

    days = group_hours(report.hours, "day")
    dates = list(days)
    day_rows = [summarize(label, group, report.min_coverage) for label, group in days.values()]
    busiest_hour = [
        max((p["mean_count"] for p in periods(group, "hour", report.min_coverage) if not p["low_coverage"]), default=np.nan)
        for _, group in days.values()
    ]
    daily.plot(dates, [d["mean_count"] for d in day_rows], "o-", label="mean over the monitored time")
    daily.plot(dates, busiest_hour, "s--", label="busiest hour of the day")
    poor = [(d, r["mean_count"]) for d, r in zip(dates, day_rows) if r["low_coverage"]]
    if poor:
        daily.plot(*zip(*poor), "o", mfc="white", color="C0", label="low coverage")
    daily.set_ylim(bottom=0)
    daily.set_ylabel("people speaking at once")
    daily.set_xlabel(f"day, {report.zone}")
    daily.set_title("Daily occupancy")
    daily.grid(alpha=0.3)
    daily.legend(loc="upper left")
    if len(dates) == 1:
        daily.set_xticks(dates, [f"{dates[0]:%a %d %b}"])
    else:
        import matplotlib.dates as mdates

        daily.xaxis.set_major_formatter(mdates.DateFormatter("%a %d %b"))
    try:
        fig.savefig(path)
    except OSError as exc:
        raise StorageError(f"{path}: cannot write the picture ({exc.strerror or exc})") from None
    log.info("wrote %s", path)


# ---- the command --------------------------------------------------------------------------------------------


def add_command(subparsers) -> None:
    p = subparsers.add_parser(
        "report", help="busy hours, weekdays, capacity alerts and charts from the traffic log",
        description="Summarize the traffic log: per period coverage, mean and peak speakers, speech minutes and "
                    "shares of time with 1+/2+/3+ speakers; busiest and quietest well-covered periods; weekdays; "
                    "capacity alerts; gaps. Times are local (the machine's time zone; set TZ to change) unless "
                    "--utc. Exit 1 when nothing is logged in the range.",
    )
    p.add_argument("--db", metavar="PATH", help="SQLite log (default: storage.database in the config)")
    p.add_argument("--since", type=parse_when, metavar="DATE", help="start, inclusive: 2026-11-23 or 2026-11-23T18:00")
    p.add_argument("--until", type=parse_when, metavar="DATE", help="end, exclusive (a date alone: its midnight)")
    p.add_argument("--by", choices=BY_CHOICES, default="hour", help="period of the main table (default: %(default)s)")
    p.add_argument("--format", choices=list(RENDERERS), default="table", help="output (default: %(default)s; "
                   "csv holds only the period table)")
    p.add_argument("--plot", metavar="FILE.png", help="also write a weekday x hour heatmap and a daily chart "
                   f"into one PNG ({FIGURE_INCHES[0] * FIGURE_DPI:.0f}x{FIGURE_INCHES[1] * FIGURE_DPI:.0f} px)")
    p.add_argument("--top", type=int, default=5, metavar="N", help="busiest/quietest periods and gaps listed (default: 5)")
    p.add_argument("--utc", action="store_true", help="show and read times in UTC instead of local time")
    p.add_argument("--min-coverage", type=float, default=DEFAULT_MIN_COVERAGE, metavar="MIN",
                   help="monitored minutes per hour below which a period is flagged LOW (default: %(default)g)")
    p.add_argument("--capacity-limit", type=int, metavar="N",
                   help="alert when the smoothed count stays above N (default: monitor.capacity_limit; 0: no alerts)")
    p.add_argument("--alert-seconds", type=float, default=DEFAULT_ALERT_SECONDS, metavar="S",
                   help="shortest alert; shorter dips below the limit do not end one (default: %(default)g)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace, config: Config) -> int:
    db_path = args.db or config.storage.database
    limit = config.monitor.capacity_limit if args.capacity_limit is None else args.capacity_limit
    if args.since and args.until and args.since >= args.until:
        raise ConfigError(f"--since {args.since:%Y-%m-%d %H:%M} must be before --until {args.until:%Y-%m-%d %H:%M}")
    report = build_report(
        db_path, since=args.since, until=args.until, by=args.by, utc=args.utc, top=max(0, args.top),
        min_coverage=args.min_coverage, capacity_limit=limit, alert_seconds=args.alert_seconds,
        venue=config.monitor.venue,
    )
    if report is None:
        span = "".join(f" {word} {when}" for word, when in (("since", args.since), ("until", args.until)) if when)
        print(f"occupancy: no traffic logged in {db_path}{span}", file=sys.stderr)
        return 1
    sys.stdout.write(RENDERERS[args.format](report, max(0, args.top)))
    if args.plot:
        plot_report(report, args.plot)
    return 0
