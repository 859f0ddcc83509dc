"""Reading the traffic log for reports: the log opened read-only (migrated first when it is older),
its hourly rows and capacity events placed in the report's time zone.

Reports read the `hourly` rollup (it survives event retention) and, for capacity alerts,
`events.smoothed`. A report can run while a monitor writes (WAL readers never block the writer).
"""

from __future__ import annotations

import logging
import math
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlite_utils import Database

from ..config import shown
from ..engine.store import (
    hourly_rows,
    migrations,
    open_store,
    refuse_foreign,
    storage_error,
)
from ..errors import StorageError

log = logging.getLogger(__name__)


def open_log(path: str | Path) -> Database | None:
    """A read-only connection to the log: an older occupancy schema is migrated first, a foreign one refused.

    None when the file holds no log yet (a monitor is just creating it): nothing to report, and
    nothing is written, so a report never races the monitor's own first migration.
    """
    db = open_store(path, readonly=True)
    try:
        refuse_foreign(path, db)
        pending = migrations.pending(db)
        applied = migrations.applied(db)
    except sqlite3.Error as exc:
        db.close()
        raise storage_error(path, exc) from None
    if not pending:
        return db
    db.close()
    if not applied:
        return None
    log.info("%s: migrating the log to the current schema (%s)", path, ", ".join(m.name for m in pending))
    open_store(path).close()
    return open_store(path, readonly=True)


# The first and last moments every zone can place, and show as local time (two days from the calendar's
# ends): a --since or --until beyond them is one of these, as no log holds a time out there.
EARLIEST = datetime(1, 1, 3, tzinfo=UTC)
LATEST = datetime(9999, 12, 29, tzinfo=UTC)


def in_zone(moment: datetime, utc: bool) -> datetime:
    """The moment in the report's time zone: UTC, or the machine's local zone (DST-aware, per moment);
    kept within [EARLIEST, LATEST]."""
    try:
        if moment.tzinfo is None:  # a naive --since/--until is meant in the report's zone
            moment = moment.replace(tzinfo=UTC) if utc else moment.astimezone()
        moment = min(max(moment, EARLIEST), LATEST)
    except (OverflowError, ValueError):  # the local zone's offset took it past year 1 or 9999
        moment = EARLIEST if moment.year < 5000 else LATEST
    return moment.astimezone(UTC) if utc else moment.astimezone()


def repeated(moment: datetime) -> bool:
    """Whether the local clock shows `moment`'s time twice that day (the hour after the autumn change to
    standard time): then only the UTC offset tells the two apart. Never in a UTC report."""
    if moment.tzinfo is UTC:
        return False
    wall = moment.replace(tzinfo=None)
    first, second = (wall.replace(fold=fold).astimezone() for fold in (0, 1))
    return first.utcoffset() != second.utcoffset() and all(t.replace(tzinfo=None) == wall for t in (first, second))


def clock(moment: datetime, form: str) -> str:
    """`moment` as `form` (a strftime pattern; years always in 4 digits), with its UTC offset where the local
    clock shows that time twice: '2026-10-25 02:00+02:00' and '2026-10-25 02:00+01:00'."""
    text = moment.strftime(form.replace("%Y", f"{moment.year:04d}"))
    return text + moment.isoformat()[-6:] if repeated(moment) else text


@dataclass(frozen=True)
class Hour:
    """One row of the hourly rollup, placed in the report's time zone."""

    local: datetime
    row: dict


def load_hours(db: Database, path: str | Path, since: datetime | None, until: datetime | None, utc: bool) -> list[Hour]:
    """The hourly rows in [since, until), each checked (see checked_hour) and placed in the report's zone."""
    return [Hour(in_zone(checked_hour(path, row), utc), row) for row in hourly_rows(db, since, until)]


# Columns of `hourly` that hold a count or a time, 0 or more, and those that may also be NULL (no figure).
_AMOUNTS = ("windows", "seconds", "count_sum", "peak_count", "person_seconds", "seconds_1plus", "seconds_2plus",
            "seconds_3plus", "women_seconds", "men_seconds", "sex_estimated_seconds")
_OPTIONAL_AMOUNTS = ("distinct_voices_peak", "distinct_voices_mean", "distinct_voices_seconds")
# Columns holding a part of the hour's monitored time.
_PARTS_OF_SECONDS = ("seconds_1plus", "seconds_2plus", "seconds_3plus", "sex_estimated_seconds", "distinct_voices_seconds")


def checked_hour(path: str | Path, row: dict) -> datetime:
    """The start of an hourly row of the log at `path` (UTC), after checking that the row is what the log's
    writer writes: a StorageError naming the row and the column where it is not (a log altered by hand),
    so that no figure is computed from text, a negative time or an hour of more than 3,600 s."""

    def refuse(column: str, what: str):
        raise StorageError(f"{path}: table hourly, row {shown(row['hour_utc'])}, column {column}: "
                           f"{what}, got {shown(row[column])} (was the log altered by hand?)")

    missing = [column for column in ("hour_utc", *_AMOUNTS, *_OPTIONAL_AMOUNTS) if column not in row]
    if missing:
        raise StorageError(f"{path}: table hourly has no column {', '.join(missing)} (was the log altered by hand?)")

    start = _utc_time(row["hour_utc"])
    if start is None or start != start.replace(minute=0, second=0, microsecond=0):
        refuse("hour_utc", "must be the start of a UTC hour in ISO form")
    for column in _AMOUNTS + _OPTIONAL_AMOUNTS:
        if not _amount(row[column]) and not (row[column] is None and column in _OPTIONAL_AMOUNTS):
            refuse(column, "must be a number, 0 or more")
    if not 0 < row["seconds"] <= 3600:
        refuse("seconds", "must be more than 0 and at most 3600")
    for column in _PARTS_OF_SECONDS:
        if (row[column] or 0) > row["seconds"] + 1e-6:
            refuse(column, f"must be at most the hour's seconds ({row['seconds']:g})")
    if row["person_seconds"] > row["peak_count"] * row["seconds"] + 1e-6:  # else a mean above the peak
        refuse("person_seconds", f"must be at most peak_count x seconds ({row['peak_count'] * row['seconds']:g})")
    return start.astimezone(UTC)


def checked_event(path: str | Path, row: dict) -> tuple[datetime, datetime]:
    """The start and end of an events row of the log at `path`, after checking the columns a report reads
    (times, `seconds`, `smoothed`): a StorageError naming the row and column where they are not what the
    log's writer writes."""

    def refuse(column: str, what: str):
        raise StorageError(f"{path}: table events, row starting {shown(row['start_utc'])}, column {column}: "
                           f"{what}, got {shown(row[column])} (was the log altered by hand?)")

    start, end = _utc_time(row["start_utc"]), _utc_time(row["end_utc"])
    for column, moment in (("start_utc", start), ("end_utc", end)):
        if moment is None:
            refuse(column, "must be a UTC time in ISO form")
    for column in ("seconds", "smoothed"):
        if not _amount(row[column]):
            refuse(column, "must be a number, 0 or more")
    return start, end


def _utc_time(value) -> datetime | None:
    """A time as the log's writer writes it (ISO text, offset +00:00, inside [EARLIEST, LATEST]); else None."""
    try:
        moment = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None
    return moment if moment.utcoffset() == timedelta(0) and EARLIEST <= moment <= LATEST else None


def _amount(value) -> bool:
    """Whether a column's value is a count or a time: a finite number, 0 or more (not text, a blob, NULL)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def logged_span(db: Database, path: str | Path) -> tuple[datetime, datetime] | None:
    """The first and last hour of the whole log (UTC), None when it holds none: time outside them was never
    monitored by this log, so it is no gap."""
    ends = [next(db.query(f"SELECT * FROM hourly ORDER BY hour_utc {order} LIMIT 1"), None) for order in ("ASC", "DESC")]
    if ends[0] is None:
        return None
    return checked_hour(path, ends[0]), checked_hour(path, ends[1])
