"""Reading a log that another process (the headless service) is writing, and leaving no trace of it.

`occupancy dashboard` reads the log every half second. A plain read-only SQLite connection to a WAL
log creates its `-wal` and `-shm` files when they are missing, and leaves them behind (only the last
writer removes them), so each read opens a short-lived connection of its own:
- while the writer runs (its `-wal` is there), read-only, sharing the writer's WAL index; SQLite
  readers never block the writer and take none of its locks;
- while nothing writes (no `-wal`), the database file alone (`immutable`), which creates nothing.
A read that meets the writer changing the file under it fails, and is simply tried again at the next.
One race remains: a writer closing during one of these reads (milliseconds, twice a second) leaves its
`-wal` and `-shm` beside the log, as any reader open at that moment would; SQLite folds them in and
removes them when the last connection to the log next closes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from sqlite_utils import Database

from ..engine.store import migrations, read_only_uri, refuse_foreign, storage_error
from ..errors import StorageError


@contextmanager
def watching(path: str | Path) -> Iterator[Database]:
    """A read-only connection to the log for one read, closed after it; StorageError when the file is
    missing, foreign, or not readable now."""
    path = Path(path)
    if not path.is_file():
        raise StorageError(f"{path}: no occupancy log yet (is the service running? it creates the log on start)")
    uri = read_only_uri(path) if Path(f"{path}-wal").exists() else path.resolve().as_uri() + "?mode=ro&immutable=1"
    try:
        with closing(sqlite3.connect(uri, uri=True, timeout=1.0)) as connection:
            db = Database(connection)
            refuse_foreign(path, db)
            if not migrations.applied(db):
                raise StorageError(f"{path}: the log is still being created")
            yield db
    except sqlite3.Error as exc:
        raise storage_error(path, exc) from None


def latest_run(db: Database) -> dict | None:
    """The newest run's row (the service's current or last run); None before any."""
    return next(iter(db.query("SELECT * FROM runs ORDER BY id DESC LIMIT 1")), None)


def run_events(db: Database, run_id: int, after_id: int, limit: int) -> list[dict]:
    """Up to `limit` events of the run with ids above `after_id`, the newest of them, oldest first."""
    rows = list(db.query(
        "SELECT * FROM events WHERE run_id = ? AND id > ? ORDER BY id DESC LIMIT ?", [run_id, after_id, limit]
    ))
    return rows[::-1]
