"""The SQLite traffic log: one row per counted window, an hourly rollup, and one row per run.

Written by exactly one writer thread (StoreWriter) with its own connection; read by anyone else
(dashboard, reports) through their own connections: the file is in WAL mode, so readers never
block the writer. Raw audio is never stored.

All times are UTC ISO-8601 text with milliseconds, e.g. '2026-11-25T14:00:01.000+00:00' (see
`iso()`); they sort as text and parse with `datetime.fromisoformat`.

Schema (applied as sqlite-utils Migrations, recorded in `_sqlite_migrations`):

runs     one row per `monitor`/`replay` session
  id INTEGER PK, started_utc TEXT, stopped_utc TEXT (NULL while running or if killed),
  source TEXT ('microphone' | 'replay' | 'demo'), device TEXT (input device name or file names),
  model TEXT, compute TEXT ('cpu' | 'cuda'), hop_s REAL,
  windows INTEGER (its windows the log holds: `replay --replace` lowers it),
  overflows INTEGER (input overflows PortAudio reported),
  dropped INTEGER (audio blocks dropped because the queue was full, or because the input ran more than
  a window ahead of the wall clock), restarts INTEGER (stream errors recovered by reopening the
  device). Counters are updated with every batch.

events   one row per window
  id INTEGER PK, run_id INTEGER -> runs.id, start_utc TEXT, end_utc TEXT,
  seconds REAL (the time this window accounts for: the hop, so overlapping windows are not counted
  twice), count INTEGER (0, 1, 2, 3 where 3 means "3 or more"), smoothed REAL (median/max/mean of
  the last `monitor.smoothing_windows` counts), probabilities TEXT (JSON list, one per class),
  level_dbfs REAL, latency_ms REAL (window captured -> count computed), women INTEGER, men INTEGER
  (how many of `count` are women and men, only with `model.sex`, else NULL), voices INTEGER (distinct
  voices heard within `monitor.voices_minutes` up to this window, only with `monitor.voices`, else NULL:
  the figure alone, never a voiceprint). Indexed on start_utc.

hourly   one row per UTC hour, rebuilt from `events` for every hour a batch touches (same
         transaction), so it is always consistent with the events and survives restarts
  hour_utc TEXT PK (start of the hour), windows INTEGER, seconds REAL (time covered),
  count_sum INTEGER, peak_count INTEGER, person_seconds REAL (sum of count x seconds),
  seconds_1plus / seconds_2plus / seconds_3plus REAL (time with at least 1 / 2 / 3 speakers),
  and derived (generated) columns: mean_count REAL, speech_seconds REAL (= seconds_1plus),
  busy_share REAL (seconds_1plus / seconds), minutes_covered REAL;
  women_seconds / men_seconds REAL (sum of women x seconds, men x seconds) and
  sex_estimated_seconds REAL (time whose windows carry a women/men estimate), all 0 without model.sex;
  distinct_voices_peak INTEGER, distinct_voices_mean REAL (peak and time-weighted mean of the events'
  `voices` figure) and distinct_voices_seconds REAL (time whose windows carry one), all NULL where
  no window of the hour has the figure (monitor.voices off).
  Hours whose events were removed by retention keep their rollup.

sync_cursor  one row per central store `occupancy sync` pushes to (see occupancy/fleet/sync.py)
  target TEXT PK (user@host:port/database, never a password), box TEXT (this log's id there),
  events_id INTEGER (the events up to this id have their hours pushed), events_run INTEGER (the run of
  that event: another run there means ids were reused after `replay --replace`), first_pass_hour TEXT (the first
  sync's progress through the hourly rows; NULL once done), runs_from INTEGER (runs from this id on are
  pushed again: they may still grow), updated_utc TEXT.

Crash safety: each batch (events + hourly + run totals) is one transaction, so `kill -9` loses
at most the batch not yet flushed (`storage.flush_interval_s`) and never leaves the file corrupt.
Before each commit the writer checks that the file at the log's path is still the one it opened.

One time, one count: a batch whose windows meet time another run has logged is refused, and so is a
run claiming such time (a replay's files) unless it replaces it; no hour may hold more than 3600 s.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import sqlite3
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from .. import __version__
from ..errors import LogGoneError, StorageError
from ..paths import WINDOW_S
from .events import CountEvent

log = logging.getLogger(__name__)

BUSY_TIMEOUT_S = 5.0
_LONGEST_EVENT = timedelta(seconds=WINDOW_S)  # an event accounts for its hop: at most a window
_HOUR_S = 3600.0
_LOG_FILES = ("", "-wal", "-shm")  # a log in WAL mode: the database, its write-ahead log and the log's index
_HOUR = timedelta(hours=1)

migrations = Migrations("occupancy")


@migrations()
def m001_initial_schema(db: Database) -> None:
    db.execute(
        """CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            started_utc TEXT NOT NULL,
            stopped_utc TEXT,
            source TEXT NOT NULL,
            device TEXT NOT NULL,
            model TEXT NOT NULL,
            compute TEXT NOT NULL,
            hop_s REAL NOT NULL,
            windows INTEGER NOT NULL DEFAULT 0,
            overflows INTEGER NOT NULL DEFAULT 0,
            dropped INTEGER NOT NULL DEFAULT 0,
            restarts INTEGER NOT NULL DEFAULT 0
        )"""
    )
    db.execute(
        """CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            run_id INTEGER NOT NULL REFERENCES runs(id),
            start_utc TEXT NOT NULL,
            end_utc TEXT NOT NULL,
            seconds REAL NOT NULL,
            count INTEGER NOT NULL,
            smoothed REAL NOT NULL,
            probabilities TEXT NOT NULL,
            level_dbfs REAL NOT NULL,
            latency_ms REAL NOT NULL
        )"""
    )
    db.execute("CREATE INDEX events_start ON events(start_utc)")
    db.execute(
        """CREATE TABLE hourly (
            hour_utc TEXT PRIMARY KEY,
            windows INTEGER NOT NULL,
            seconds REAL NOT NULL,
            count_sum INTEGER NOT NULL,
            peak_count INTEGER NOT NULL,
            person_seconds REAL NOT NULL,
            seconds_1plus REAL NOT NULL,
            seconds_2plus REAL NOT NULL,
            seconds_3plus REAL NOT NULL,
            mean_count REAL GENERATED ALWAYS AS (CAST(count_sum AS REAL) / windows) VIRTUAL,
            speech_seconds REAL GENERATED ALWAYS AS (seconds_1plus) VIRTUAL,
            busy_share REAL GENERATED ALWAYS AS (seconds_1plus / seconds) VIRTUAL,
            minutes_covered REAL GENERATED ALWAYS AS (seconds / 60.0) VIRTUAL
        )"""
    )


@migrations()
def m002_sex_composition(db: Database) -> None:
    """Optional women/men estimate per window (model.sex); NULL where it was not asked for."""
    db["events"].add_column("women", int)
    db["events"].add_column("men", int)


# The UTC hour an event belongs to, as hourly.hour_utc spells it.
_HOUR_OF_EVENT = "substr(start_utc, 1, 13) || ':00:00.000+00:00'"
# An hour's women/men totals; total() is 0.0, not NULL, for an hour without estimates.
_SEX_TOTALS = """total(women * seconds) AS women_seconds, total(men * seconds) AS men_seconds,
       total(CASE WHEN women IS NOT NULL THEN seconds END) AS sex_estimated_seconds"""


@migrations()
def m003_hourly_sex_composition(db: Database) -> None:
    """Hourly women/men totals, so reports can show them; filled in from the events already logged,
    leaving every other column of every hour as it was (hours emptied by retention get 0)."""
    for column in ("women_seconds", "men_seconds", "sex_estimated_seconds"):
        db["hourly"].add_column(column, float, not_null_default=0)
    db.execute(f"""
        UPDATE hourly SET women_seconds = totals.women_seconds, men_seconds = totals.men_seconds,
                          sex_estimated_seconds = totals.sex_estimated_seconds
        FROM (SELECT {_HOUR_OF_EVENT} AS hour_utc, {_SEX_TOTALS} FROM events WHERE women IS NOT NULL GROUP BY 1) AS totals
        WHERE hourly.hour_utc = totals.hour_utc
    """)


@migrations()
def m004_distinct_voices(db: Database) -> None:
    """Optional distinct-voices figure per window and per hour (monitor.voices); NULL where it was not
    asked for, so a log from before has nothing to fill in."""
    db["events"].add_column("voices", int)
    db["hourly"].add_column("distinct_voices_peak", int)
    db["hourly"].add_column("distinct_voices_mean", float)
    db["hourly"].add_column("distinct_voices_seconds", float)


@migrations()
def m005_sync_cursor(db: Database) -> None:
    """Where `occupancy sync` stands with each central store it pushes to (occupancy/fleet/sync.py): the log
    stays the source of truth, so a sync cut anywhere resumes from here."""
    db.execute(
        """CREATE TABLE sync_cursor (
            target TEXT PRIMARY KEY,
            box TEXT NOT NULL,
            events_id INTEGER NOT NULL DEFAULT 0,
            events_run INTEGER,
            first_pass_hour TEXT,
            runs_from INTEGER NOT NULL DEFAULT 0,
            updated_utc TEXT NOT NULL
        )"""
    )


# An hour's distinct-voices figures: NULL (sum() and max() of nothing) for an hour without them.
_VOICES_TOTALS = """max(voices) AS distinct_voices_peak,
       sum(voices * seconds) / sum(CASE WHEN voices IS NOT NULL THEN seconds END) AS distinct_voices_mean,
       sum(CASE WHEN voices IS NOT NULL THEN seconds END) AS distinct_voices_seconds"""

# The rollup of a range of events, grouped by hour; the one definition both the incremental update
# and recompute_hourly() use.
_ROLLUP = f"""
INSERT OR REPLACE INTO hourly (hour_utc, windows, seconds, count_sum, peak_count, person_seconds,
                               seconds_1plus, seconds_2plus, seconds_3plus,
                               women_seconds, men_seconds, sex_estimated_seconds,
                               distinct_voices_peak, distinct_voices_mean, distinct_voices_seconds)
SELECT {_HOUR_OF_EVENT}, count(*), sum(seconds), sum(count),
       max(count), sum(count * seconds),
       sum(CASE WHEN count >= 1 THEN seconds ELSE 0 END),
       sum(CASE WHEN count >= 2 THEN seconds ELSE 0 END),
       sum(CASE WHEN count >= 3 THEN seconds ELSE 0 END),
       {_SEX_TOTALS},
       {_VOICES_TOTALS}
FROM events WHERE start_utc >= ? AND start_utc < ?
GROUP BY 1
"""


@contextmanager
def write_transaction(db: Database) -> Iterator[Database]:
    """BEGIN IMMEDIATE: take the write lock first, so a busy database is waited for (busy timeout)
    instead of failing at once when a read inside the transaction would need upgrading."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.rollback()
        raise
    db.execute("COMMIT")


def iso(moment: datetime) -> str:
    """The one text form of a time in the log (UTC, milliseconds), so times sort as text."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def hour_start(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def storage_error(path: str | Path, exc: Exception) -> StorageError:
    """Turn an sqlite3/OS error into a one-line message saying what the user can do."""
    text = str(exc)
    lowered = text.lower()
    if "readonly" in lowered or "read-only" in lowered:
        reason = "the database is read-only (check the file's and folder's permissions)"
    elif "locked" in lowered or "busy" in lowered:
        reason = "the database is locked by another program (is another monitor or replay writing it?)"
    elif "full" in lowered or getattr(exc, "errno", None) == 28:
        reason = "disk full: the batch in progress was not written, everything logged before is intact"
    elif "disk i/o error" in lowered:
        reason = "cannot write the database (disk full, a file-size limit or a failing disk): everything logged before is intact"
    elif "unable to open" in lowered or isinstance(exc, OSError):
        reason = f"cannot open the database file ({text})"
    elif "not a database" in lowered or "malformed" in lowered:
        reason = f"not a valid occupancy log ({text})"
    else:
        reason = text
    return StorageError(f"{path}: {reason}")


def open_store(path: str | Path, *, readonly: bool = False, timeout: float = BUSY_TIMEOUT_S) -> Database:
    """Open (creating and migrating if needed) the log; readers pass readonly=True.

    The connection belongs to the calling thread. Any failure is a one-line StorageError.
    """
    path = Path(os.path.expanduser(str(path)))
    try:
        if readonly:
            if not path.is_file():
                raise StorageError(f"{path}: no occupancy log yet (run `occupancy monitor` or `occupancy replay`)")
            conn = sqlite3.connect(read_only_uri(path), uri=True, timeout=timeout)
            conn.execute("PRAGMA query_only=ON")  # a reader opened read-write (see read_only_uri) still writes nothing
            db = Database(conn)
            with _closed_on_error(db):
                refuse_newer(path, db)
            return db
        path.parent.mkdir(parents=True, exist_ok=True)
        # Another program's file is refused before anything is written to it, not even WAL mode; through
        # a connection of its own (a read first on the writer's connection made one of two first opens
        # fail to switch to WAL mode).
        with closing(sqlite3.connect(str(path), timeout=timeout)) as probe:
            refuse_foreign(path, Database(probe))
            refuse_newer(path, Database(probe))
        db = Database(sqlite3.connect(str(path), timeout=timeout))
        switch_to_wal(db, timeout)
        db.execute("PRAGMA synchronous=FULL")  # every commit reaches the disk: a power cut loses nothing committed
        if migrations.pending(db):
            with write_transaction(db):  # under the write lock: two first opens cannot both migrate
                migrations.apply(db)
        return db
    except (sqlite3.Error, OSError) as exc:
        raise storage_error(path, exc) from None


@contextmanager
def _closed_on_error(db: Database) -> Iterator[None]:
    try:
        yield
    except sqlite3.Error:
        db.close()
        raise


def switch_to_wal(db: Database, timeout: float) -> None:
    """WAL mode (a new log's first open), waiting up to `timeout` for other first opens: SQLite answers a
    journal-mode change that meets another connection's lock with SQLITE_BUSY at once, without waiting
    out its busy timeout (eight programs opening one new log together: 11 of 922 races had one fail)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            db.enable_wal()
            return
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


def refuse_foreign(path: str | Path, db: Database) -> None:
    """A one-line StorageError (closing `db`) when the database holds tables occupancy did not write:
    another program's file is never taken over (nor reported on). The tables are read first: a first open
    migrating at the same moment commits its tables and their record together, so they are then seen
    with their record."""
    tables = set(db.table_names()) - {migrations.migrations_table}
    if tables and not migrations.applied(db):
        db.close()
        raise StorageError(f"{path}: not an occupancy log (its tables {', '.join(sorted(tables))} were not written by occupancy)")


def refuse_newer(path: str | Path, db: Database) -> None:
    """A one-line StorageError (closing `db`) when the log's schema has steps this version does not know:
    a newer occupancy wrote it, and reading or writing it as this version's schema could mislead or damage it."""
    known = {m.name for m in migrations.pending(Database(memory=True))}  # pending on an empty database: every step
    newer = [m.name for m in migrations.applied(db) if m.name not in known]
    if newer:
        db.close()
        raise StorageError(f"{path}: written by a newer version of occupancy (schema steps {', '.join(newer)} "
                           f"are unknown to occupancy {__version__}): upgrade occupancy to use this log")


def read_only_uri(path: Path) -> str:
    """The URI a reader opens the log with: mode=ro, sharing the writer's WAL index (the -shm file, which
    SQLite memory-maps and may have to create or grow). Where that file cannot be made or grown (a
    read-only mount or folder, or a disk too full: growing the mapping there kills the reader with
    SIGBUS), the -shm is only read (readonly_shm: SQLite then indexes the -wal in private memory), or
    without -shm and -wal the database alone is read (immutable).
    A log found without -wal and -shm is opened read-write (the caller sets query_only): the -wal and -shm
    SQLite makes for it are then removed when the last connection closes, where a read-only connection
    would leave them behind."""
    uri = path.resolve().as_uri() + "?mode=ro"
    wal, shm = Path(f"{path}-wal"), Path(f"{path}-shm")
    wal_bytes = wal.stat().st_size if wal.exists() else 0
    disk = os.statvfs(path.parent)
    # The index takes 32 kB per 4,096 pages of -wal (1/512 of it); a MB more leaves the disk room to work.
    if os.access(path.parent, os.W_OK) and disk.f_bavail * disk.f_frsize >= (1 << 20) + wal_bytes // 512:
        return uri.replace("mode=ro", "mode=rw") if not wal.exists() and not shm.exists() else uri
    if shm.exists():
        return uri + "&readonly_shm=1"
    if not wal_bytes:
        return uri + "&immutable=1"
    raise StorageError(f"{path}: cannot be read here: its {wal.name} holds entries that need a {shm.name} beside it, "
                       "which cannot be made on this read-only or full disk (copy the log's files to another disk)")


Span = tuple[datetime, datetime]


def start_run(
    db: Database, *, source: str, device: str, model: str, compute: str, hop_s: float,
    claim: Iterable[Span] = (), replace: bool = False,
) -> int:
    """Record a new run and return its id. `claim` is the time its windows will cover when that is known
    before they are counted (a replay's files, by their headers): time another run logged there refuses
    the run, in the run's own transaction, so two runs cannot both claim it. With `replace` nothing is
    refused or deleted here: each batch deletes what it replaces (write_batch), so a header claiming
    more audio than the file holds never costs another run's windows."""
    row = {
        "started_utc": iso(datetime.now(UTC)), "source": source, "device": device,
        "model": model, "compute": compute, "hop_s": hop_s,
    }
    with write_transaction(db):
        if not replace:
            _refuse_logged(db, claim, None, "`replay --replace` deletes it first")
        return db["runs"].insert(row).last_pk


def event_row(event: CountEvent, run_id: int) -> dict:
    return {
        "run_id": run_id,
        "start_utc": iso(event.start),
        "end_utc": iso(event.end),
        "seconds": event.seconds,
        "count": event.count,
        "smoothed": event.smoothed,
        "probabilities": json.dumps([round(float(p), 4) for p in event.probabilities]),
        "level_dbfs": round(event.level_dbfs, 2),
        "latency_ms": round(event.latency_ms, 2),
        "women": event.women,
        "men": event.men,
        "voices": event.voices,
    }


def write_batch(
    db: Database, run_id: int, events: list[CountEvent], input_stats: dict[str, int], *, replace: bool = False
) -> Counter[int]:
    """Log a batch of events, refresh the hours they fall in and the run's totals: one transaction.
    Windows over time another run has logged are refused (two sources at once on one log, two replays
    of the same time): an hour of the log is an hour of one microphone. With `replace` (replay --replace)
    what other runs logged there is deleted instead, in the same transaction: only time this batch's
    decoded audio covers is ever replaced. Returns how many windows of which runs were deleted."""
    deleted: Counter[int] = Counter()
    with write_transaction(db):
        if replace:
            deleted = _delete_logged(db, _stretches(events), run_id)
        else:
            _refuse_logged(db, _stretches(events), run_id, "two runs cannot log the same time into one log")
        if events:
            db["events"].insert_all((event_row(e, run_id) for e in events), batch_size=500)
        _refresh_hours(db, {hour_start(e.start) for e in events})
        sets = ", ".join(f"{name} = ?" for name in input_stats)
        if sets:
            db.execute(f"UPDATE runs SET {sets} WHERE id = ?", [*input_stats.values(), run_id])
    return deleted


def _stretches(events: list[CountEvent]) -> list[Span]:
    """The time a batch covers (each window its `seconds` from its start), as stretches without a gap
    of a window or more."""
    spans: list[Span] = []
    for event in events:
        end = event.start + timedelta(seconds=event.seconds)
        if spans and event.start - spans[-1][1] < _LONGEST_EVENT:
            spans[-1] = (spans[-1][0], max(spans[-1][1], end))
        else:
            spans.append((event.start, end))
    return spans


def _logged_in(db: Database, start: datetime, end: datetime, besides: int | None) -> Iterator[dict]:
    """Events of runs other than `besides` whose time [start_utc, start_utc + seconds) meets [start, end),
    oldest first."""
    rows = db.query(
        "SELECT id, run_id, start_utc, seconds FROM events "
        "WHERE start_utc >= ? AND start_utc < ? AND run_id IS NOT ? ORDER BY start_utc",
        [iso(start - _LONGEST_EVENT), iso(end), besides],
    )
    return (row for row in rows if _logged_start(db, row) + timedelta(seconds=row["seconds"]) > start)


def _logged_start(db: Database, row: dict) -> datetime:
    """An event row's start_utc as a UTC time; a one-line StorageError for a hand-edited one that is not."""
    try:
        moment = datetime.fromisoformat(row["start_utc"])
        if moment.utcoffset() is not None and isinstance(row["seconds"], int | float):
            return moment
    except (TypeError, ValueError):
        pass
    raise StorageError(f"{_file_of(db)}: not a valid occupancy log (event {row['id']} has start_utc "
                       f"{row['start_utc']!r} and seconds {row['seconds']!r}: a UTC time and a number are expected)")


def _refuse_logged(db: Database, spans: Iterable[Span], besides: int | None, remedy: str) -> None:
    """A one-line StorageError naming the run and the time when another run logged any of `spans`."""
    for start, end in spans:
        found = next(_logged_in(db, start, end, besides), None)
        if found is not None:
            run = db["runs"].get(found["run_id"])
            first = found["start_utc"]
            (last,) = db.execute(
                "SELECT max(end_utc) FROM events WHERE run_id = ? AND start_utc >= ? AND start_utc < ?",
                [run["id"], first, iso(end)],
            ).fetchone()
            raise StorageError(
                f"{_file_of(db)}: run {run['id']} ({run['source']}, {run['device']}) has logged "
                f"{first[:19].replace('T', ' ')} to {last[:19].replace('T', ' ')} UTC already: {remedy}"
            )


def _delete_logged(db: Database, spans: Iterable[Span], besides: int) -> Counter[int]:
    """Delete what runs other than `besides` logged in `spans` (replay --replace), lower those runs' window
    counts so that each still says how many of the log's windows it logged, and rebuild those hours.
    Returns how many windows of which runs were deleted."""
    rows = [row for start, end in spans for row in _logged_in(db, start, end, besides)]
    deleted = Counter(row["run_id"] for row in rows)
    if rows:
        db.conn.executemany("DELETE FROM events WHERE id = ?", [(row["id"],) for row in rows])
        db.conn.executemany("UPDATE runs SET windows = windows - ? WHERE id = ?", [(n, run) for run, n in deleted.items()])
        _refresh_hours(db, {hour_start(_logged_start(db, row)) for row in rows})
    return deleted


def _refresh_hours(db: Database, hours: Iterable[datetime]) -> None:
    """Rebuild the rollup of `hours` from their events; refuse any that would hold more than an hour."""
    for hour in sorted(hours):
        db.execute("DELETE FROM hourly WHERE hour_utc = ?", [iso(hour)])
        db.execute(_ROLLUP, [iso(hour), iso(hour + _HOUR)])
        (seconds,) = db.execute("SELECT total(seconds) FROM hourly WHERE hour_utc = ?", [iso(hour)]).fetchone()
        if seconds > _HOUR_S + 0.001:
            raise StorageError(f"{_file_of(db)}: the hour from {iso(hour)[:16].replace('T', ' ')} UTC would hold "
                               f"{seconds / 60:.1f} minutes of windows: these windows overlap time already logged")


def _file_of(db: Database) -> str:
    """The database file a connection has open, for messages."""
    return db.execute("PRAGMA database_list").fetchone()[2]


def finish_run(db: Database, run_id: int) -> None:
    db.execute("UPDATE runs SET stopped_utc = ? WHERE id = ?", [iso(datetime.now(UTC)), run_id])


def recompute_hourly(db: Database) -> None:
    """Rebuild the hourly rollup from the events (hours with no events left are kept as they are)."""
    with write_transaction(db):
        db.execute(_ROLLUP, ["", "~"])  # every ISO time sorts between these


def apply_retention(db: Database, days: int, now: datetime | None = None) -> int:
    """Delete events older than `days` whole days (cut on an hour boundary, so no hour is half-kept)."""
    if days <= 0:
        return 0
    cutoff = hour_start((now or datetime.now(UTC)) - timedelta(days=days))
    with write_transaction(db):
        deleted = db.execute("DELETE FROM events WHERE start_utc < ?", [iso(cutoff)]).rowcount
    if deleted:
        log.info("retention: deleted %d events older than %s", deleted, iso(cutoff))
    return deleted


def hourly_rows(db: Database, since: datetime | None = None, until: datetime | None = None) -> list[dict]:
    """Hourly rollup rows with hour_utc in [since, until), oldest first (all columns, see above)."""
    low = iso(hour_start(since)) if since else ""
    high = iso(until) if until else "~"
    return list(db.query("SELECT * FROM hourly WHERE hour_utc >= ? AND hour_utc < ? ORDER BY hour_utc", [low, high]))


def recent_events(db: Database, n: int = 60) -> list[dict]:
    """The last `n` events, oldest first; `probabilities` decoded to a list."""
    return _decoded(db.query("SELECT * FROM events ORDER BY id DESC LIMIT ?", [n]))[::-1]


def events_between(db: Database, since: datetime, until: datetime) -> list[dict]:
    """Events whose window starts in [since, until), oldest first; `probabilities` decoded."""
    return _decoded(db.query(
        "SELECT * FROM events WHERE start_utc >= ? AND start_utc < ? ORDER BY start_utc, id",
        [iso(since), iso(until)],
    ))


def events_above(db: Database, since: datetime | None, until: datetime | None, smoothed: float) -> Iterable[dict]:
    """Events in [since, until) whose smoothed count is above `smoothed`, oldest first (capacity alerts)."""
    return db.query(
        "SELECT start_utc, end_utc, seconds, smoothed FROM events "
        "WHERE start_utc >= ? AND start_utc < ? AND smoothed > ? ORDER BY start_utc, id",
        [iso(since) if since else "", iso(until) if until else "~", smoothed],
    )


def _decoded(rows: Iterable[dict]) -> list[dict]:
    """Event rows with `probabilities` decoded from their JSON text to a list."""
    return [{**row, "probabilities": json.loads(row["probabilities"])} for row in rows]


def runs(db: Database) -> list[dict]:
    """Every run, newest first."""
    return list(db.query("SELECT * FROM runs ORDER BY id DESC"))


@dataclass(frozen=True)
class RunInfo:
    """What the runs row says about where the events come from."""

    source: str
    device: str
    model: str
    compute: str
    hop_s: float


class StoreWriter:
    """The single writer: a thread that commits events, batched at most once per flush interval.

    `input_stats()` (called from the writer thread) gives the run's current overflow/drop/restart
    counts, stored with each batch. A failure stops the writer and is kept in `error` as a
    StorageError; `put` after that is ignored, so the pipeline can notice and stop.
    """

    def __init__(
        self,
        path: str | Path,
        run: RunInfo,
        *,
        flush_interval_s: float = 1.0,
        retention_days: int = 0,
        input_stats: Callable[[], dict[str, int]] = dict,
        claim: Iterable[Span] = (),
        replace: bool = False,
    ):
        self.path = Path(os.path.expanduser(str(path)))
        self.run = run
        self.claim, self.replace = claim, replace  # see start_run()
        self.flush_interval_s = flush_interval_s
        self.retention_days = retention_days
        self.input_stats = input_stats
        self.run_id: int | None = None
        self._identity: dict[str, tuple[int, int] | None] = {}  # the open log's files: suffix -> (st_dev, st_ino)
        self.windows = 0
        self.replaced: Counter[int] = Counter()  # with `replace`: windows of other runs deleted, by run
        self.error: StorageError | None = None
        self.log_latencies_ms: deque[float] = deque(maxlen=100_000)  # window captured -> batch committed
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="occupancy-store", daemon=True)

    def start(self) -> None:
        """Open the database in the writer thread; raise its StorageError here if that fails."""
        self._thread.start()
        self._ready.wait()
        if self.error:
            raise self.error

    def put(self, event: CountEvent) -> None:
        if self.error is None and self._thread.is_alive():  # after a failure nothing drains the queue: do not let it grow
            self._queue.put(event)

    def stop(self) -> None:
        """Flush what is queued, close the run and the connection."""
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        db = None
        try:
            db = open_store(self.path)
            self.run_id = start_run(db, **vars(self.run), claim=self.claim, replace=self.replace)
            self._identity = {suffix: file_identity(Path(f"{self.path}{suffix}")) for suffix in _LOG_FILES}
            self._ready.set()
            self._loop(db)
            finish_run(db, self.run_id)
        except Exception as exc:  # noqa: BLE001 - any failure must stop the run loudly, never leave it logging nothing
            self.error = self._as_storage_error(exc)
            if not isinstance(self.error, LogGoneError):
                self._close_run(db)
        finally:
            self._ready.set()
            if db is not None:
                db.close()
            if isinstance(self.error, LogGoneError):
                self._remove_orphans()

    def _as_storage_error(self, exc: Exception) -> StorageError:
        """The one-line error a failure of the writer ends the run with."""
        if isinstance(exc, StorageError):
            return exc
        if isinstance(exc, sqlite3.Error | OSError):
            return storage_error(self.path, exc)
        return StorageError(f"{self.path}: the log writer failed ({type(exc).__name__}: {exc}); "
                            "everything committed before is intact")

    def _close_run(self, db: Database | None) -> None:
        """After a failure, still mark the run as stopped where the log takes it."""
        if db is not None and self.run_id is not None:
            try:
                finish_run(db, self.run_id)
            except sqlite3.Error:
                pass

    def _remove_orphans(self) -> None:
        """After the log was deleted or replaced: remove the write-ahead log and its index this run left at
        the path (the very files, by identity; SQLite keeps them when its file has moved), so that they are
        never read as part of whatever file is there now."""
        for suffix in _LOG_FILES[1:]:
            path = Path(f"{self.path}{suffix}")
            if file_identity(path) == self._identity[suffix]:
                path.unlink(missing_ok=True)

    def _loop(self, db: Database) -> None:
        """Commit an event as soon as it arrives, but at most once per flush interval: a live
        window reaches the log within milliseconds, while a fast replay is still written in batches.
        Between windows, changed input stats (drops, restarts) are committed too."""
        apply_retention(db, self.retention_days)
        next_retention = time.monotonic() + 3600
        pending: list[CountEvent] = []
        last_flush = time.monotonic() - self.flush_interval_s
        written_stats = self.input_stats()
        while True:
            due = last_flush + self.flush_interval_s
            wait = due - time.monotonic() if pending else self.flush_interval_s
            try:
                event = self._queue.get(timeout=max(0.0, wait))
            except queue.Empty:
                event = False
            if event is None:
                break
            if event:
                pending.append(event)
            now = time.monotonic()
            if now >= due and (pending or self.input_stats() != written_stats):
                self._flush(db, pending)
                pending = []
                last_flush = now
                written_stats = self.input_stats()
            if now >= next_retention:
                apply_retention(db, self.retention_days)
                next_retention += 3600
        self._flush(db, pending)

    def _flush(self, db: Database, events: list[CountEvent]) -> None:
        if file_identity(self.path) != self._identity[""]:  # one stat() per commit, not per window
            raise LogGoneError(f"{self.path}: the log file was deleted or replaced during the run; "
                               f"stopped without logging the last {len(events)} windows")
        windows = self.windows + len(events)
        self.replaced += write_batch(db, self.run_id, events, {"windows": windows, **self.input_stats()},
                                     replace=self.replace)
        self.windows = windows  # only once committed: a refused batch is not counted as logged
        committed = time.monotonic()
        self.log_latencies_ms.extend((committed - e.captured_at) * 1000 for e in events)


def file_identity(path: Path) -> tuple[int, int] | None:
    """(st_dev, st_ino) of the file at `path`, None when there is none: the writer compares it at each
    commit with the file it opened, so that a log deleted or replaced under it is noticed at once."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None
    return info.st_dev, info.st_ino


def summarize_latency(values_ms: Iterable[float]) -> str:
    """'median 12 ms, p95 30 ms, max 41 ms' for the logs and the README figures."""
    values = sorted(values_ms)
    if not values:
        return "no windows"

    def pick(q: float) -> float:
        return values[min(len(values) - 1, int(q * len(values)))]

    return f"median {pick(0.5):.0f} ms, p95 {pick(0.95):.0f} ms, max {values[-1]:.0f} ms"
