"""Reading the traffic log for reports: the log opened read-only (migrated first when it is older),
its hourly rows and capacity events placed in the report's time zone.

Reports read the `hourly` rollup (it survives event retention) and, for capacity alerts,
`events.smoothed`. A report can run while a monitor writes (WAL readers never block the writer).
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlite_utils import Database

from ..engine.store import (
    hourly_rows,
    migrations,
    open_store,
    refuse_foreign,
    storage_error,
)

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
