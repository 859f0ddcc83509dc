"""The log summarised: measures per period (hour, weekday-hour, day), weekdays compared, gaps and
capacity alerts, gathered into one Report. What each measure means is in docs/commands.md ("Reports")
and the README ("Reading the report")."""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlite_utils import Database

from ..engine.store import events_above, hour_start, storage_error
from .queries import Hour, checked_event, clock, in_zone, load_hours, logged_span, open_log

PERIOD_KEYS = (
    "period", "weekday", "hours", "minutes_covered", "mean_count", "peak_count",
    "speech_minutes", "share_1plus", "share_2plus", "share_3plus", "low_coverage",
)
SEX_KEYS = ("mean_women", "mean_men", "sex_minutes")  # shown only where the range has estimates
VOICES_KEYS = ("mean_distinct_voices", "peak_distinct_voices", "distinct_voices_minutes")  # ... has the figure
BY_CHOICES = ("hour", "weekday-hour", "day")
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
DEFAULT_MIN_COVERAGE = 15.0  # minutes per hour: an hour with 5 minutes of data is flagged, not called quiet
DEFAULT_ALERT_SECONDS = 60.0  # a capacity alert lasts at least this long; shorter dips do not end it
_HOUR = timedelta(hours=1)


_PERIOD_OF: dict[str, Callable[[datetime], tuple[object, str]]] = {
    "hour": lambda t: (t, clock(t, "%Y-%m-%d %H:%M")),  # a local hour shown twice carries its UTC offset
    "day": lambda t: (t.date(), t.date().isoformat()),
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
    voiced = [r for r in rows if r["distinct_voices_seconds"]]
    voiced_seconds = sum(r["distinct_voices_seconds"] for r in voiced)
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
        "mean_distinct_voices": sum(r["distinct_voices_mean"] * r["distinct_voices_seconds"] for r in voiced)
        / voiced_seconds if voiced else None,
        "peak_distinct_voices": max((r["distinct_voices_peak"] for r in voiced), default=None),
        "distinct_voices_minutes": voiced_seconds / 60,
    }


def periods(hours: list[Hour], by: str, min_coverage: float) -> list[dict]:
    return [summarize(label, group, min_coverage) for label, group in group_hours(hours, by).values()]


def hourly_table(
    db_path: str | Path, since: datetime | None = None, until: datetime | None = None, *,
    utc: bool = False, min_coverage: float = DEFAULT_MIN_COVERAGE,
) -> list[dict]:
    """One dict per local hour in [since, until), oldest first, keys PERIOD_KEYS + SEX_KEYS + VOICES_KEYS and `local_start`
    (the hour's start in the report's zone): the dashboard's table."""
    db = open_log(db_path)
    if db is None:
        return []
    try:
        return hours_of(db, db_path, since, until, utc=utc, min_coverage=min_coverage)
    except sqlite3.Error as exc:
        raise storage_error(db_path, exc) from None
    finally:
        db.close()


def hours_of(db: Database, db_path: str | Path, since: datetime | None, until: datetime | None, *, utc: bool,
             min_coverage: float = DEFAULT_MIN_COVERAGE) -> list[dict]:
    """hourly_table's rows from a connection already open to `db_path` (the dashboard watching a log opens its own)."""
    since, until = (in_zone(t, utc) if t else None for t in (since, until))
    groups = group_hours(load_hours(db, db_path, since, until, utc), "hour")
    return [{**summarize(label, group, min_coverage), "local_start": group[0].local} for label, group in groups.values()]


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


def gaps(hours: list[Hour], since: datetime | None, until: datetime | None, utc: bool,
         logged: tuple[datetime, datetime] | None) -> list[dict]:
    """Stretches of whole log hours with no data at all, in [since, until) or between the first and last data;
    never before the log's first hour nor after its last (`logged`): that time was not monitored by this
    log at all (nor has it come yet). One step per hour with data, so a range of centuries costs nothing."""
    present = sorted(datetime.fromisoformat(h.row["hour_utc"]) for h in hours)
    if not present:
        return []
    logged = logged or (present[0], present[-1])
    start = max(hour_start(since), logged[0]) if since else present[0]
    end = min(until, logged[1] + _HOUR) if until else present[-1] + _HOUR
    result: list[dict] = []
    moment = start  # the first hour not yet known to have data
    for hour in [*present, end]:
        if hour > moment:
            missing = -(-(min(hour, end) - moment) // _HOUR)  # whole hours starting before `hour` (and `end`)
            nxt = moment + missing * _HOUR
            result.append({"start": in_zone(moment, utc), "end": in_zone(nxt, utc), "hours": missing})
        moment = max(moment, hour + _HOUR)
    return result


def capacity_alerts(
    db: Database, db_path: str | Path, since: datetime | None, until: datetime | None, limit: int, utc: bool, min_seconds: float
) -> list[dict]:
    """Stretches when the smoothed count stayed above `limit`: start, end, duration, peak.

    A stretch lasts at least `min_seconds`; dips shorter than that do not end it, so a busy evening
    is one alert, not hundreds of flickers.
    """
    return alert_stretches(events_above(db, since, until, limit), utc, min_seconds, db_path)


def alert_stretches(rows: Iterable[dict], utc: bool, min_seconds: float, source: str | Path) -> list[dict]:
    """capacity_alerts() from the events above the limit (start_utc, end_utc, seconds, smoothed; oldest
    first), whichever store they come from (`source`, named when a row is not what it should be)."""
    alerts: list[dict] = []
    last_start = None
    for row in rows:
        start, end = checked_event(source, row)
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
    voices: bool  # some window in the range has the distinct-voices figure: only then are VOICES_KEYS shown

    @property
    def keys(self) -> tuple[str, ...]:
        """The period keys the output shows."""
        return PERIOD_KEYS + (SEX_KEYS if self.sex else ()) + (VOICES_KEYS if self.voices else ())

    def shown(self, row: dict) -> dict:
        """The row as the output shows it: without SEX_KEYS or VOICES_KEYS when the range has none."""
        hidden = (() if self.sex else SEX_KEYS) + (() if self.voices else VOICES_KEYS)
        return {k: v for k, v in row.items() if k not in hidden}


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
        hours = load_hours(db, db_path, since, until, utc)
        if not hours:
            return None
        logged = logged_span(db, db_path)
        alerts = capacity_alerts(db, db_path, since, until, capacity_limit, utc, alert_seconds) if capacity_limit > 0 else []
    except sqlite3.Error as exc:
        raise storage_error(db_path, exc) from None
    finally:
        db.close()
    return assemble_report(
        hours, alerts, database=str(db_path), venue=venue, since=since, until=until, by=by, utc=utc, top=top,
        min_coverage=min_coverage, capacity_limit=capacity_limit, alert_seconds=alert_seconds, logged=logged,
    )


def assemble_report(
    hours: list[Hour], alerts: list[dict], *, database: str, venue: str, since: datetime | None,
    until: datetime | None, by: str, utc: bool, top: int, min_coverage: float, capacity_limit: int,
    alert_seconds: float, logged: tuple[datetime, datetime] | None = None,
) -> Report:
    """The Report of hourly rows already read (at least one; `since`/`until` in the report's zone), from the
    local log or the fleet's central store; `logged` is the first and last hour the source holds (UTC;
    None: those of `hours`), outside which no time is a gap."""
    table = periods(hours, by, min_coverage)
    ranked = sorted((p for p in table if not p["low_coverage"]), key=_busyness)
    return Report(
        database=database, venue=venue, zone="UTC" if utc else zone_names([h.local for h in hours]), by=by,
        first=since or hours[0].local, last=until or in_zone(hours[-1].local + _HOUR, utc),
        min_coverage=min_coverage, capacity_limit=capacity_limit, alert_seconds=alert_seconds, hours=hours, periods=table,
        busiest=ranked[::-1][:top], quietest=ranked[:top], weekdays=weekday_comparison(hours, min_coverage),
        alerts=alerts, gaps=gaps(hours, since, until, utc, logged), sex=any(h.row["sex_estimated_seconds"] for h in hours),
        voices=any(h.row["distinct_voices_seconds"] for h in hours),
    )


def zone_names(moments: list[datetime]) -> str:
    """The local zone's names and offsets these moments are in: 'local time CEST (UTC+02:00) and CET
    (UTC+01:00)' for a range over the autumn change."""
    zones = dict.fromkeys((m.tzname(), m.strftime("%z")) for m in moments)
    return "local time " + " and ".join(f"{name} (UTC{offset[:3]}:{offset[3:]})" for name, offset in zones)
