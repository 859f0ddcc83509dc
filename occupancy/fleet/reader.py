"""`occupancy report --from postgresql://...`: the fleet read back from the central store.

The fleet table (one row per box: coverage, mean, peak, busiest weekday hours) is summed up inside
PostgreSQL, so a year of a thousand rooms never crosses the wire row by row; a venue named with --venue
also gets the local report's full tables, built by occupancy/reporting/summary.py from its hourly rows as
they would come from its own log.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta

from ..engine.store import iso
from ..errors import ConfigError, StorageError
from ..reporting.fleet import FleetReport, busiest_slots, hour_of_day_means, room_label
from ..reporting.queries import Hour, in_zone
from ..reporting.summary import WEEKDAYS, Report, alert_stretches, assemble_report, zone_names
from .central import HOURLY_COLUMNS, SCHEMA, central_error, connect, import_psycopg, masked, pending_migrations

log = logging.getLogger(__name__)

_HOUR = timedelta(hours=1)


def fleet_report(
    url: str, venues: list[str], *, since: datetime | None, until: datetime | None, by: str, utc: bool, top: int,
    min_coverage: float, capacity_limit: int, alert_seconds: float,
) -> FleetReport | None:
    """The fleet table of every box (or of the named venues' boxes), and the named venues' full reports;
    None when nothing is stored in the range."""
    psycopg = import_psycopg()
    from psycopg.rows import dict_row

    since, until = (in_zone(t, utc) if t else None for t in (since, until))
    conn = connect(url)
    conn.row_factory = dict_row
    try:
        if pending_migrations(conn):
            raise StorageError(f"{masked(url)}: no occupancy fleet there, or an older one: run `occupancy sync --to` "
                               "it from a box first (it creates and migrates the central schema)")
        boxes = _boxes(conn, url, venues)
        slots = _slot_rows(conn, boxes if venues else None, since, until, _zone_for_sql(conn, utc))
        rooms = [_room_row(box, slots[box["id"]]) for box in boxes if box["id"] in slots]
        if not rooms:
            return None
        reports = [
            _venue_report(conn, url, box, since=since, until=until, by=by, utc=utc, top=top, min_coverage=min_coverage,
                          capacity_limit=capacity_limit, alert_seconds=alert_seconds)
            for box in boxes if venues
        ]
    except psycopg.Error as exc:
        raise central_error(url, exc) from None
    finally:
        conn.close()
    first = since or in_zone(min(r["first_hour"] for r in rooms), utc)
    last = until or in_zone(max(r["last_hour"] for r in rooms) + _HOUR, utc)
    range_hours = max(1.0, (last - first).total_seconds() / 3600)
    for room in rooms:
        room["first_hour"], room["last_hour"] = in_zone(room["first_hour"], utc), in_zone(room["last_hour"], utc)
        room["coverage"] = room["seconds"] / 3600 / range_hours
        room["busiest"] = busiest_slots(slots[room["box_id"]], min_coverage)
        room["by_hour"] = hour_of_day_means(slots[room["box_id"]])
    return FleetReport(
        store=masked(url), zone="UTC" if utc else zone_names([first]), first=first, last=last,
        min_coverage=min_coverage, rooms=rooms, reports=[r for r in reports if r is not None],
    )


def _boxes(conn, url: str, venues: list[str]) -> list[dict]:
    """The boxes of `venues` (every box where none is named), by venue and room; an unknown venue is an error."""
    boxes = list(conn.execute(f"SELECT id, venue, room, host, last_synced FROM {SCHEMA}.boxes ORDER BY venue, room"))
    unknown = sorted(set(venues) - {b["venue"] for b in boxes})
    if unknown:
        known = ", ".join(sorted({b["venue"] for b in boxes})) or "none yet"
        raise ConfigError(f"--venue {unknown[0]!r}: no such venue in {masked(url)} (venues there: {known})")
    return [b for b in boxes if not venues or b["venue"] in venues]


def _range(since: datetime | None, until: datetime | None) -> tuple[str, list]:
    """The SQL condition on hour_utc for [since, until) and its parameters (the hour `since` falls in counts)."""
    return _between("hour_utc", since.replace(minute=0, second=0, microsecond=0) if since else None, until)


def _between(column: str, low: datetime | None, high: datetime | None) -> tuple[str, list]:
    """`column` in [low, high), only the bounds given, so that the planner sees a whole-table scan for what it is."""
    conditions, params = ["TRUE"], []
    for bound, operator in ((low, ">="), (high, "<")):
        if bound:
            conditions.append(f"{column} {operator} %s")
            params.append(bound)
    return " AND ".join(conditions), params


def _slot_rows(conn, boxes: list[dict] | None, since, until, zone: str) -> dict[int, list[dict]]:
    """Per box, its weekday x hour slots in the report's zone (hours, seconds, person-seconds, speech seconds,
    peak, first and last hour): one pass over the hourly table, which the room totals are summed from too.
    `boxes` None: every box (no filter, so PostgreSQL scans the table rather than its index)."""
    condition, params = _range(since, until)
    if boxes is not None:
        condition += " AND box_id = ANY(%s)"
        params.append([b["id"] for b in boxes])
    result: dict[int, list[dict]] = {}
    for row in conn.execute(
        f"""SELECT box_id, extract(isodow FROM hour_utc AT TIME ZONE %s)::int - 1 AS weekday,
                   extract(hour FROM hour_utc AT TIME ZONE %s)::int AS hour,
                   count(*) AS hours, sum(seconds) AS seconds, sum(person_seconds) AS person_seconds,
                   sum(seconds_1plus) AS seconds_1plus, max(peak_count) AS peak_count,
                   min(hour_utc) AS first_hour, max(hour_utc) AS last_hour
            FROM {SCHEMA}.hourly WHERE {condition} GROUP BY 1, 2, 3""",
        [zone, zone, *params],
    ):
        row["period"] = f"{WEEKDAYS[row['weekday']]} {row['hour']:02d}:00"
        result.setdefault(row["box_id"], []).append(row)
    return result


def _room_row(box: dict, slots: list[dict]) -> dict:
    """A box's fleet-table totals from its slots: hours with data, seconds covered, mean and peak count, speech
    minutes and share, first and last hour."""
    seconds = sum(s["seconds"] for s in slots)
    return {
        "box_id": box["id"], "venue": box["venue"], "room": box["room"], "last_synced": box["last_synced"],
        "hours": sum(s["hours"] for s in slots), "seconds": seconds,
        "mean_count": sum(s["person_seconds"] for s in slots) / seconds,
        "peak_count": max(s["peak_count"] for s in slots),
        "speech_minutes": sum(s["seconds_1plus"] for s in slots) / 60,
        "share_1plus": sum(s["seconds_1plus"] for s in slots) / seconds,
        "first_hour": min(s["first_hour"] for s in slots), "last_hour": max(s["last_hour"] for s in slots),
    }


def _venue_report(conn, url: str, box: dict, *, since, until, utc: bool, capacity_limit: int, alert_seconds: float,
                  **options) -> Report | None:
    """One box's full report, as `occupancy report` builds it from the box's own log."""
    condition, params = _range(since, until)
    rows = conn.execute(
        f"SELECT {', '.join(HOURLY_COLUMNS)} FROM {SCHEMA}.hourly WHERE box_id = %s AND {condition} ORDER BY hour_utc",
        [box["id"], *params],
    ).fetchall()
    if not rows:
        return None
    hours = [Hour(in_zone(row["hour_utc"], utc), {**row, "hour_utc": iso(row["hour_utc"])}) for row in rows]
    alerts = []
    if capacity_limit > 0:
        condition, params = _between("start_utc", since, until)  # as the local report reads events: from `since` on
        events = conn.execute(
            f"""SELECT start_utc, end_utc, seconds, smoothed FROM {SCHEMA}.events
                WHERE box_id = %s AND {condition} AND smoothed > %s ORDER BY start_utc, id""",
            [box["id"], *params, capacity_limit],
        ).fetchall()
        if not events and not conn.execute(f"SELECT 1 FROM {SCHEMA}.events WHERE box_id = %s LIMIT 1", [box["id"]]).fetchone():
            log.warning("%s: no events synced (occupancy sync --events): capacity alerts cannot be shown", room_label(box))
        alerts = alert_stretches(
            ({**e, "start_utc": iso(e["start_utc"]), "end_utc": iso(e["end_utc"])} for e in events), utc, alert_seconds,
            masked(url),
        )
    return assemble_report(
        hours, alerts, database=f"{masked(url)} ({room_label(box)})", venue=room_label(box), since=since, until=until,
        utc=utc, capacity_limit=capacity_limit, alert_seconds=alert_seconds, **options,
    )


def _zone_for_sql(conn, utc: bool) -> str:
    """The report's zone as PostgreSQL names it: UTC, or the machine's zone ($TZ, else /etc/localtime's name);
    UTC, with a warning, where PostgreSQL does not know it."""
    if utc:
        return "UTC"
    name = os.environ.get("TZ", "").lstrip(":")
    if not name:
        try:
            name = os.readlink("/etc/localtime")
        except OSError:
            name = ""
    if "zoneinfo/" in name:  # TZ=/usr/share/zoneinfo/Europe/Paris, or where /etc/localtime links
        name = name.partition("zoneinfo/")[2]
    known = name and conn.execute("SELECT count(*) AS n FROM pg_timezone_names WHERE name = %s", [name]).fetchone()["n"]
    if not known:
        log.warning("the central store does not know this machine's time zone %r: weekday hours are in UTC", name)
        return "UTC"
    return name
