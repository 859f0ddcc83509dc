"""Real local logs for the fleet tests, written through the store's own writer functions, and the two sides
(local log, central store) read back for comparison."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from occupancy.engine.events import CountEvent
from occupancy.engine.store import finish_run, open_store, start_run, write_batch

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)  # a Monday morning
NUMBERS = ("windows", "seconds", "count_sum", "peak_count", "person_seconds", "seconds_1plus", "seconds_2plus",
           "seconds_3plus", "women_seconds", "men_seconds", "sex_estimated_seconds")


def events_at(start: datetime, counts: list[int], hop: float = 1.0) -> list[CountEvent]:
    """Windows `hop` apart from `start` with these counts (smoothed = count)."""
    return [
        CountEvent(start=start + timedelta(seconds=i * hop), end=start + timedelta(seconds=i * hop + 1.0), seconds=hop,
                   count=c, probabilities=tuple(1.0 if k == c else 0.0 for k in range(4)), smoothed=float(c),
                   level_dbfs=-30.0, latency_ms=5.0, captured_at=time.monotonic())
        for i, c in enumerate(counts)
    ]


def log_run(path: Path, events: list[CountEvent], *, replace: bool = False) -> int:
    """One finished run holding `events` (claiming their time first when `replace`, as `replay --replace` does)."""
    db = open_store(path)
    claim = [(events[0].start, events[-1].end)] if replace else ()
    run = start_run(db, source="replay", device="test.wav", model="test", compute="cpu", hop_s=1.0,
                    claim=claim, replace=replace)
    for start in range(0, len(events), 5000):
        write_batch(db, run, events[start:start + 5000], {"windows": min(len(events), start + 5000)}, replace=replace)
    finish_run(db, run)
    db.close()
    return run


def spread_hours(hours: int, per_hour: int = 3, start: datetime = T0) -> list[CountEvent]:
    """`per_hour` windows at the start of each of `hours` consecutive hours, counts cycling 0-3."""
    events = []
    for h in range(hours):
        events += events_at(start + timedelta(hours=h), [(h + i) % 4 for i in range(per_hour)])
    return events


def local_hours(path: Path) -> dict[str, tuple]:
    db = open_store(path)
    rows = {r["hour_utc"]: tuple(r[c] for c in NUMBERS) for r in db.query("SELECT * FROM hourly")}
    db.close()
    return rows


def central_hours(url: str, venue: str, room: str = "") -> dict[str, tuple]:
    import psycopg

    from occupancy.engine.store import iso

    with psycopg.connect(url) as conn:
        rows = conn.execute(
            f"SELECT h.hour_utc, {', '.join('h.' + c for c in NUMBERS)} FROM occupancy.hourly h "
            "JOIN occupancy.boxes b ON b.id = h.box_id WHERE b.venue = %s AND b.room = %s", [venue, room]
        ).fetchall()
    return {iso(r[0]): tuple(r[1:]) for r in rows}


def central_count(url: str, table: str) -> int:
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            return conn.execute(f"SELECT count(*) FROM occupancy.{table}").fetchone()[0]
    except psycopg.errors.UndefinedTable:
        return 0


def box_config(folder: Path, venue: str, room: str = "", **storage: str) -> Path:
    """A box's config.yaml: its venue and room, its log in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["monitor:", f"  venue: {venue!r}", f"  room: {room!r}", "storage:", f"  database: {folder / 'occupancy.db'}"]
    lines += [f"  {key}: {value!r}" for key, value in storage.items()]
    path = folder / "config.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a child `occupancy`: this checkout first on its path."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]), **extra}


def occupancy(*argv: str, timeout: float = 300, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    """The real command in a child process."""
    return subprocess.run([sys.executable, "-m", "occupancy.cli", *argv], capture_output=True, text=True,
                          timeout=timeout, env=child_env(**(env_extra or {})))


def spawn(*argv: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "occupancy.cli", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=child_env())
