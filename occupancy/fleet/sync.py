"""`occupancy sync`: push this box's log (hourly rows, runs and, if asked, events) to the fleet's central
PostgreSQL, keyed by the box's venue and room.

The local SQLite log stays the source of truth; the central store is a copy that upserts make idempotent:
an hour pushed twice is one row, an hour that grew since is updated. Where the sync stands is the log's
`sync_cursor` row for that store (occupancy/engine/store.py), written only after the central transaction
it follows has committed, so a sync cut anywhere (the process killed, the network or the server gone)
loses nothing: the next sync pushes again what was not yet acknowledged.

The first sync walks the whole hourly table (in hour order, resumable); later ones push the hours of the
events logged since, found by event id. The sync reads the log without holding a transaction open between
its short reads (WAL: the monitor's writer never waits for them) and takes the write lock only to move its
cursor, a one-row update.
"""

from __future__ import annotations

import logging
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlite_utils import Database

from ..config import MonitorConfig
from ..engine.store import iso, open_store, write_transaction
from ..errors import ConfigError, StorageError
from .central import (
    EVENT_COLUMNS,
    HOURLY_COLUMNS,
    RUN_COLUMNS,
    SCHEMA,
    central_error,
    connect,
    import_psycopg,
    migrate,
    target_name,
)

log = logging.getLogger(__name__)

DEFAULT_BATCH_HOURS = 2000  # hourly rows per central transaction
EVENTS_PER_STEP = 100_000  # event ids the incremental pass looks at per step
_HOUR = timedelta(hours=1)


@dataclass
class Cursor:
    """The log's sync_cursor row for one central store."""

    target: str
    box: str
    events_id: int
    events_run: int | None
    first_pass_hour: str | None  # None once the first pass is done
    runs_from: int


@dataclass
class SyncResult:
    hours: int = 0
    runs: int = 0
    events: int = 0
    seconds: float = 0.0


def check_venue(venue: str) -> None:
    """A fleet tells its boxes apart by monitor.venue (and monitor.room): the default is no name."""
    if not venue.strip() or venue == MonitorConfig.venue:
        raise ConfigError(f"monitor.venue: set this box's own venue name in config.yaml before syncing "
                          f"(it is {venue!r}; the central store keys each box by venue and monitor.room)")


def sync_log(
    log_path: str | Path, url: str, venue: str, room: str = "", *, events: bool = False,
    batch_hours: int = DEFAULT_BATCH_HOURS, full: bool = False, take_over: bool = False,
) -> SyncResult:
    """Push what the central store at `url` lacks of the log at `log_path`; one-line errors (passwords masked)."""
    check_venue(venue)
    path = Path(log_path).expanduser()
    if not path.is_file():
        raise StorageError(f"{path}: no occupancy log yet (run `occupancy monitor` or `occupancy replay`)")
    psycopg = import_psycopg()
    started = time.monotonic()
    conn = connect(url)
    try:
        migrate(conn)
        local = open_store(path)  # migrated to a log with a sync_cursor table where it is older
        try:
            cursor = _load_cursor(local, target_name(conn), full)
            box_id = _claim_box(conn, venue, room, cursor.box, take_over, target_name(conn))
            result = _Push(local, conn, box_id, cursor, events, batch_hours).run()
        finally:
            local.close()
    except psycopg.Error as exc:
        raise central_error(url, exc) from None
    finally:
        conn.close()
    result.seconds = time.monotonic() - started
    return result


def _load_cursor(local: Database, target: str, full: bool) -> Cursor:
    """The log's cursor for `target`; a new one (the first pass to do, this log's box id kept) where there is
    none or `full` asks to push everything again."""
    row = next(local.query("SELECT * FROM sync_cursor WHERE target = ?", [target]), None)
    if row and not full:
        row.pop("updated_utc")
        return Cursor(**row)
    top_id, top_run = local.execute("SELECT id, run_id FROM events ORDER BY id DESC LIMIT 1").fetchone() or (0, None)
    cursor = Cursor(target, row["box"] if row else uuid.uuid4().hex, top_id, top_run, "", 0)
    _save(local, cursor)
    return cursor


def _save(local: Database, cursor: Cursor) -> None:
    """Move the cursor: a one-row write, the only time the sync takes the log's write lock."""
    with write_transaction(local):
        local.execute(
            "INSERT OR REPLACE INTO sync_cursor (target, box, events_id, events_run, first_pass_hour, runs_from, "
            "updated_utc) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [cursor.target, cursor.box, cursor.events_id, cursor.events_run, cursor.first_pass_hour,
             cursor.runs_from, iso(datetime.now(UTC))],
        )


def _claim_box(conn, venue: str, room: str, box: str, take_over: bool, target: str) -> int:
    """The central id of (venue, room), claimed for this log; another log's claim is refused unless `take_over`."""
    with conn.transaction():
        conn.execute(f"INSERT INTO {SCHEMA}.boxes (venue, room, box, host) VALUES (%s, %s, %s, %s) "
                     "ON CONFLICT (venue, room) DO NOTHING", [venue, room, box, socket.gethostname()])
        box_id, owner, host, last = conn.execute(
            f"SELECT id, box, host, last_synced FROM {SCHEMA}.boxes WHERE venue = %s AND room = %s", [venue, room]
        ).fetchone()
        if owner != box:
            if not take_over:
                where = f"{venue!r}" + (f" room {room!r}" if room else "")
                when = f", last synced {last:%Y-%m-%d %H:%M} UTC" if last else ""
                raise ConfigError(f"{target}: {where} is already synced there from another log (on host {host}{when}): "
                                  "give this box its own monitor.venue or monitor.room, or pass --take-over if this "
                                  "log replaces that one")
            log.info("%s: taking over %r %r from the log on host %s", target, venue, room, host)
            conn.execute(f"UPDATE {SCHEMA}.boxes SET box = %s, host = %s WHERE id = %s", [box, socket.gethostname(), box_id])
    return box_id


class _Push:
    """One sync's work: the runs, the first pass over the hourly rows, then the hours of newer events."""

    def __init__(self, local: Database, conn, box_id: int, cursor: Cursor, events: bool, batch_hours: int):
        self.local, self.conn, self.box_id, self.cursor = local, conn, box_id, cursor
        self.events, self.batch_hours = events, batch_hours
        self.result = SyncResult()

    def run(self) -> SyncResult:
        self._runs()
        self._first_pass()
        self._rewind_after_reused_ids()
        self._newer_events()
        with self.conn.transaction():
            self.conn.execute(f"UPDATE {SCHEMA}.boxes SET last_synced = now() WHERE id = %s", [self.box_id])
        return self.result

    def _runs(self) -> None:
        """The runs from runs_from on (new ones, and those still running: their totals grow)."""
        rows = list(self.local.query("SELECT * FROM runs WHERE id >= ? ORDER BY id", [self.cursor.runs_from]))
        if not rows:
            return
        with self.conn.transaction(), self.conn.cursor() as cur:
            self._upsert(cur, "runs", ("run_id", *RUN_COLUMNS[1:]), [[row[c] for c in RUN_COLUMNS] for row in rows])
        open_runs = [row["id"] for row in rows if row["stopped_utc"] is None]
        self.cursor.runs_from = min(open_runs) if open_runs else rows[-1]["id"] + 1
        _save(self.local, self.cursor)
        self.result.runs += len(rows)

    def _first_pass(self) -> None:
        """Every hourly row, in hour order, a batch per central transaction; the cursor remembers the last."""
        while self.cursor.first_pass_hour is not None:
            rows = list(self.local.query(
                f"SELECT {', '.join(HOURLY_COLUMNS)} FROM hourly WHERE hour_utc > ? ORDER BY hour_utc LIMIT ?",
                [self.cursor.first_pass_hour, self.batch_hours],
            ))
            if rows:
                self._upsert_hours(rows)
            self.cursor.first_pass_hour = rows[-1]["hour_utc"] if rows else None
            _save(self.local, self.cursor)

    def _rewind_after_reused_ids(self) -> None:
        """SQLite gives a new event the highest id + 1: where `replay --replace` deleted the newest events, the
        replacing run's events reuse their ids. The event at the cursor then belongs to another run (or is
        gone), and the cursor goes back to before the first event of any run newer than the one it saw."""
        cursor = self.cursor
        if not cursor.events_id:
            return
        row = self.local.execute("SELECT run_id FROM events WHERE id = ?", [cursor.events_id]).fetchone()
        if row is not None and row[0] == cursor.events_run:
            return
        (first,) = self.local.execute("SELECT min(id) FROM events WHERE run_id > ?", [cursor.events_run or 0]).fetchone()
        if first and first - 1 < cursor.events_id:
            cursor.events_id = first - 1
            log.info("the log's event ids were reused (replay --replace): pushing again from event %d", first)

    def _newer_events(self) -> None:
        """The hours of the events logged after the cursor, EVENTS_PER_STEP event ids at a time."""
        while True:
            (top,) = self.local.execute("SELECT max(id) FROM events").fetchone()
            if top is None or self.cursor.events_id >= top:
                return
            upper = min(top, self.cursor.events_id + EVENTS_PER_STEP)
            hours = [iso(datetime.fromisoformat(f"{h}:00:00+00:00")) for (h,) in self.local.execute(
                "SELECT DISTINCT substr(start_utc, 1, 13) FROM events WHERE id > ? AND id <= ? ORDER BY 1",
                [self.cursor.events_id, upper],
            )]
            for batch in _chunks(hours, self.batch_hours):
                rows = list(self.local.query(
                    f"SELECT {', '.join(HOURLY_COLUMNS)} FROM hourly WHERE hour_utc IN ({', '.join('?' * len(batch))}) "
                    "ORDER BY hour_utc", batch,
                ))
                self._upsert_hours(rows)
            (run,) = self.local.execute("SELECT run_id FROM events WHERE id <= ? ORDER BY id DESC LIMIT 1", [upper]).fetchone()
            self.cursor.events_id, self.cursor.events_run = upper, run
            _save(self.local, self.cursor)

    def _upsert_hours(self, rows: list[dict]) -> None:
        """Hourly rows (and with --events those hours' events) into the central store: one transaction."""
        with self.conn.transaction(), self.conn.cursor() as cur:
            self._upsert(cur, "hourly", HOURLY_COLUMNS, [[row[c] for c in HOURLY_COLUMNS] for row in rows])
            if self.events:
                self.result.events += self._replace_events(cur, [row["hour_utc"] for row in rows])
        self.result.hours += len(rows)

    def _upsert(self, cur, table: str, columns: tuple[str, ...], rows: list[list]) -> None:
        """Insert this box's `rows` into a central table, or where (box_id, columns[0]) is there, update them."""
        names = ", ".join(("box_id", *columns))
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns[1:])
        cur.executemany(
            f"INSERT INTO {SCHEMA}.{table} ({names}) VALUES ({', '.join(['%s'] * (len(columns) + 1))}) "
            f"ON CONFLICT (box_id, {columns[0]}) DO UPDATE SET {updates}",
            [[self.box_id, *row] for row in rows],
        )

    def _replace_events(self, cur, hours: list[str]) -> int:
        """The central events of `hours` replaced by the log's (so an hour whose events changed is right again)."""
        cur.executemany(
            f"DELETE FROM {SCHEMA}.events WHERE box_id = %s AND start_utc >= %s AND start_utc < %s::timestamptz + interval '1 hour'",
            [[self.box_id, hour, hour] for hour in hours],
        )
        written = 0
        with cur.copy(f"COPY {SCHEMA}.events (box_id, {', '.join(EVENT_COLUMNS)}) FROM STDIN") as copy:
            for hour in hours:
                for row in self.local.execute(
                    f"SELECT {', '.join(EVENT_COLUMNS)} FROM events WHERE start_utc >= ? AND start_utc < ? ORDER BY id",
                    [hour, iso(datetime.fromisoformat(hour) + _HOUR)],
                ):
                    copy.write_row([self.box_id, *row])
                    written += 1
        return written


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
