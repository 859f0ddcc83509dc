"""The SQLite log on real files: schema and migrations, hourly rollup, writer thread, crash safety,
and the one-line errors for locked, read-only and full databases."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from occupancy.engine import store
from occupancy.errors import StorageError
from occupancy.engine.store import (
    RunInfo,
    StoreWriter,
    apply_retention,
    event_row,
    hour_start,
    hourly_rows,
    iso,
    open_store,
    recent_events,
    recompute_hourly,
    runs,
    start_run,
    storage_error,
    write_batch,
)
from occupancy.engine.events import CountEvent

REPO = Path(__file__).resolve().parents[2]
RUN = RunInfo(source="replay", device="test.wav", model="test", compute="cpu", hop_s=1.0)
T0 = datetime(2026, 11, 25, 13, 58, 0, tzinfo=UTC)


def make_events(counts: list[int], hop: float = 1.0, start: datetime = T0) -> list[CountEvent]:
    return [
        CountEvent(
            start=start + timedelta(seconds=i * hop),
            end=start + timedelta(seconds=i * hop + 1.0),
            seconds=hop,
            count=c,
            probabilities=tuple(1.0 if k == c else 0.0 for k in range(4)),
            smoothed=float(c),
            level_dbfs=-30.0,
            latency_ms=10.0,
            captured_at=time.monotonic(),
        )
        for i, c in enumerate(counts)
    ]


def expected_hourly(events: list[CountEvent]) -> dict[str, dict]:
    """The rollup computed in Python, independently of the SQL."""
    hours: dict[str, list[CountEvent]] = defaultdict(list)
    for e in events:
        hours[iso(hour_start(e.start))].append(e)
    out = {}
    for hour, group in hours.items():
        seconds = sum(e.seconds for e in group)
        out[hour] = {
            "windows": len(group),
            "seconds": seconds,
            "mean_count": sum(e.count for e in group) / len(group),
            "peak_count": max(e.count for e in group),
            "person_seconds": sum(e.count * e.seconds for e in group),
            "speech_seconds": sum(e.seconds for e in group if e.count >= 1),
            "seconds_2plus": sum(e.seconds for e in group if e.count >= 2),
            "seconds_3plus": sum(e.seconds for e in group if e.count >= 3),
            "busy_share": sum(e.seconds for e in group if e.count >= 1) / seconds,
            "minutes_covered": seconds / 60,
            "women_seconds": sum(e.women * e.seconds for e in group if e.women is not None),
            "men_seconds": sum(e.men * e.seconds for e in group if e.men is not None),
            "sex_estimated_seconds": sum(e.seconds for e in group if e.women is not None),
            **expected_voices(group),
        }
    return out


def expected_voices(group: list[CountEvent]) -> dict:
    """An hour's distinct-voices columns computed in Python: peak, time-weighted mean, seconds; None without figures."""
    heard = [e for e in group if e.voices is not None]
    seconds = sum(e.seconds for e in heard)
    return {
        "distinct_voices_peak": max((e.voices for e in heard), default=None),
        "distinct_voices_mean": sum(e.voices * e.seconds for e in heard) / seconds if heard else None,
        "distinct_voices_seconds": seconds if heard else None,
    }


def hourly_by_hour(db) -> dict[str, dict]:
    return {row["hour_utc"]: row for row in hourly_rows(db)}


def assert_log_consistent(path: Path) -> None:
    """integrity_check passes and the hourly table equals a rebuild from the events."""
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    db = open_store(path)
    before = hourly_by_hour(db)
    recompute_hourly(db)
    assert hourly_by_hour(db) == before
    assert sum(row["windows"] for row in before.values()) == db["events"].count
    db.close()


def test_schema_is_created_once_in_wal_mode(tmp_path):
    path = tmp_path / "log" / "occupancy.db"
    open_store(path).close()
    db = open_store(path)  # second open: nothing left to migrate
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert {"events", "hourly", "runs"} <= set(db.table_names())
    applied = list(db.query("SELECT name FROM _sqlite_migrations WHERE migration_set = 'occupancy'"))
    assert [r["name"] for r in applied] == ["m001_initial_schema", "m002_sex_composition", "m003_hourly_sex_composition",
                                             "m004_distinct_voices", "m005_sync_cursor"]


def test_a_log_from_before_the_sex_columns_keeps_its_rows_and_gains_them(tmp_path):
    path = tmp_path / "old.db"
    old = Migrations("occupancy")
    old()(store.m001_initial_schema)
    db = Database(path)
    old.apply(db)
    run_id = db["runs"].insert({"started_utc": "2026-11-25T10:00:00.000+00:00", "source": "replay", "device": "a",
                                "model": "counter", "compute": "cpu", "hop_s": 1.0}).last_pk
    row = {k: v for k, v in event_row(make_events([2])[0], run_id).items() if k not in ("women", "men", "voices")}
    db["events"].insert(row)
    db.close()
    migrated = open_store(path)
    assert [(r["count"], r["women"], r["men"]) for r in migrated["events"].rows] == [(2, None, None)]
    write_batch(migrated, run_id, [dataclasses.replace(make_events([1])[0], women=1, men=0)], {})
    assert [(r["count"], r["women"], r["men"]) for r in migrated["events"].rows] == [(2, None, None), (1, 1, 0)]


def test_a_log_from_before_distinct_voices_keeps_its_hours_and_gains_empty_columns(tmp_path):
    path = tmp_path / "old.db"
    old = Migrations("occupancy")
    for step in (store.m001_initial_schema, store.m002_sex_composition, store.m003_hourly_sex_composition):
        old()(step)
    db = Database(path)
    old.apply(db)
    run_id = db["runs"].insert({"started_utc": "2026-11-25T10:00:00.000+00:00", "source": "replay", "device": "a",
                                "model": "counter", "compute": "cpu", "hop_s": 1.0}).last_pk
    db["events"].insert_all({k: v for k, v in event_row(e, run_id).items() if k != "voices"} for e in make_events([2, 1]))
    db["hourly"].insert({"hour_utc": "2026-11-25T13:00:00.000+00:00", "windows": 2, "seconds": 2.0, "count_sum": 3,
                         "peak_count": 2, "person_seconds": 3.0, "seconds_1plus": 2.0, "seconds_2plus": 1.0,
                         "seconds_3plus": 0.0, "women_seconds": 0.0, "men_seconds": 0.0, "sex_estimated_seconds": 0.0})
    before = list(db.query("SELECT * FROM hourly"))
    db.close()
    migrated = open_store(path)
    (hour,) = migrated.query("SELECT * FROM hourly")
    assert {k: hour[k] for k in before[0]} == before[0]  # every earlier column as it was
    assert [hour[k] for k in ("distinct_voices_peak", "distinct_voices_mean", "distinct_voices_seconds")] == [None] * 3
    assert [r["voices"] for r in migrated["events"].rows] == [None, None]
    write_batch(migrated, run_id, [dataclasses.replace(e, voices=3) for e in make_events([1], start=T0 + timedelta(seconds=5))], {})
    assert [r["voices"] for r in migrated["events"].rows] == [None, None, 3]
    (hour,) = migrated.query("SELECT * FROM hourly")
    assert (hour["distinct_voices_peak"], hour["distinct_voices_mean"], hour["distinct_voices_seconds"]) == (3, 3.0, 1.0)
    assert hour["windows"] == 3


def test_hourly_rollup_follows_batches_across_hours_and_recomputes_identically(tmp_path):
    counts = [(i * 7) % 5 % 4 for i in range(600)]  # 0..3, over 13:58 -> 14:03 with a 0.5 s hop
    events = [  # two windows in three with a women/men estimate (model.sex), as after a restart with --sex;
        # the first 13:58-13:59 without distinct voices, the rest with them (a restart with --voices)
        dataclasses.replace(e, women=i % (e.count + 1), men=e.count - i % (e.count + 1)) if i % 3 else e
        for i, e in enumerate(make_events(counts, hop=0.5))
    ]
    events = [dataclasses.replace(e, voices=i // 50 % 6) if i >= 120 else e for i, e in enumerate(events)]
    db = open_store(tmp_path / "o.db")
    run_id = start_run(db, **vars(RUN))
    for i in range(0, len(events), 97):  # batches that split hours
        write_batch(db, run_id, events[i : i + 97], {"windows": i})
    want = expected_hourly(events)
    got = hourly_by_hour(db)
    assert set(got) == set(want) == {"2026-11-25T13:00:00.000+00:00", "2026-11-25T14:00:00.000+00:00"}
    for hour, row in want.items():
        for key, value in row.items():
            assert got[hour][key] == pytest.approx(value), (hour, key)
    recompute_hourly(db)
    assert hourly_by_hour(db) == got
    last = recent_events(db, 2)
    assert [e["count"] for e in last] == counts[-2:]
    assert last[-1]["probabilities"] == [1.0 if k == counts[-1] else 0.0 for k in range(4)]
    assert hourly_rows(db, since=T0 + timedelta(hours=1)) == [got["2026-11-25T14:00:00.000+00:00"]]


def test_writer_thread_logs_everything_and_closes_the_run(tmp_path):
    path = tmp_path / "o.db"
    events = make_events([1, 2, 3, 0, 1] * 10)
    writer = StoreWriter(path, RUN, flush_interval_s=0.05, input_stats=lambda: {"overflows": 2, "dropped": 5})
    writer.start()
    for event in events:
        writer.put(event)
    writer.stop()
    assert writer.error is None
    db = open_store(path, readonly=True)
    (run,) = runs(db)
    assert run["stopped_utc"] is not None
    assert (run["windows"], run["overflows"], run["dropped"]) == (50, 2, 5)
    assert db["events"].count == 50
    assert len(writer.log_latencies_ms) == 50


def test_restart_continues_the_same_hour(tmp_path):
    path = tmp_path / "o.db"
    first, second = make_events([1] * 30), make_events([3] * 30, start=T0 + timedelta(seconds=30))
    for batch in (first, second):
        writer = StoreWriter(path, RUN, flush_interval_s=0.05)
        writer.start()
        for event in batch:
            writer.put(event)
        writer.stop()
    db = open_store(path)
    (row,) = hourly_rows(db)
    assert (row["windows"], row["mean_count"], row["peak_count"]) == (60, 2.0, 3)
    assert [r["id"] for r in runs(db)] == [2, 1]


def test_retention_deletes_whole_old_hours_and_keeps_their_rollup(tmp_path):
    db = open_store(tmp_path / "o.db")
    run_id = start_run(db, **vars(RUN))
    old = make_events([2] * 10, start=T0 - timedelta(days=3))
    new = make_events([1] * 10)
    write_batch(db, run_id, old + new, {})
    deleted = apply_retention(db, days=2, now=T0)
    assert deleted == 10
    assert db["events"].count == 10
    assert len(hourly_rows(db)) == 2  # the old hour's traffic is still reported
    recompute_hourly(db)
    assert len(hourly_rows(db)) == 2


def test_locked_database_is_a_one_line_error(tmp_path):
    path = tmp_path / "o.db"
    open_store(path).close()
    other = sqlite3.connect(path)
    other.execute("BEGIN EXCLUSIVE")  # another program holds the write lock
    try:
        writer = StoreWriter(path, RUN)
        with pytest.raises(StorageError, match="locked by another program") as err:
            writer.start()  # gives up after the busy timeout
        assert "\n" not in str(err.value)
    finally:
        other.rollback()
        other.close()


@pytest.fixture
def open_folder():
    """A temporary folder every user can enter (pytest's own are private to their owner)."""
    with tempfile.TemporaryDirectory() as name:
        os.chmod(name, 0o755)
        yield Path(name)


def run_unprivileged(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    """Run a command as a user that file permissions apply to (root ignores them: 'nobody' instead)."""
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv: cannot make a file read-only to the test")
        argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *argv]
    return subprocess.run(argv, capture_output=True, text=True, cwd=REPO, timeout=300, **kwargs)


def make_read_only(path: Path) -> None:
    """A log file and folder nobody may write."""
    path.chmod(0o444)
    path.parent.chmod(0o555)


def test_read_only_database_is_a_one_line_error(open_folder):
    path = open_folder / "ro" / "o.db"
    open_store(path).close()
    make_read_only(path)
    try:
        code = f"from occupancy.engine.store import open_store\nopen_store({str(path)!r})"
        result = run_unprivileged([sys.executable, "-c", code])
        assert "StorageError" in result.stderr
        assert f"{path}: the database is read-only" in result.stderr
    finally:
        path.parent.chmod(0o755)


def test_disk_full_loses_only_the_batch_in_progress(tmp_path):
    path = tmp_path / "o.db"
    db = open_store(path)
    run_id = start_run(db, **vars(RUN))
    write_batch(db, run_id, make_events([1] * 20), {})
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count = {pages}")  # the file cannot grow: SQLite reports SQLITE_FULL
    with pytest.raises(sqlite3.OperationalError) as err:
        write_batch(db, run_id, make_events([2] * 5000, start=T0 + timedelta(seconds=20)), {})
    message = str(storage_error(path, err.value))
    assert "disk full" in message and "intact" in message
    db.close()
    assert open_store(path)["events"].count == 20
    assert_log_consistent(path)


KILL_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from datetime import UTC, datetime, timedelta
    from occupancy.engine.store import RunInfo, StoreWriter
    from occupancy.engine.events import CountEvent
    writer = StoreWriter(sys.argv[1], RunInfo("replay", "x", "m", "cpu", 1.0), flush_interval_s=0.02)
    writer.start()
    t0 = datetime(2026, 11, 25, 13, 59, 0, tzinfo=UTC)
    i = 0
    while True:
        start = t0 + timedelta(seconds=i)
        writer.put(CountEvent(start, start + timedelta(seconds=1), 1.0, i % 4, (0.25,) * 4, 1.0, -20.0, 1.0,
                              time.monotonic()))
        i += 1
        time.sleep(0.0005)
    """
)


def test_kill_9_while_writing_leaves_a_consistent_log(tmp_path):
    path = tmp_path / "o.db"
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(path)], cwd=REPO)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            time.sleep(0.1)
            if path.exists() and _count_events(path) > 300:  # past an hour boundary, many batches
                break
        else:
            pytest.fail("the writer did not log 300 events in 60 s")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert_log_consistent(path)
    (run,) = runs(open_store(path))
    assert run["stopped_utc"] is None  # killed: the run stays open, its input_stats as of the last batch
    assert run["windows"] == _count_events(path)


def _count_events(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT count(*) FROM events").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0
    finally:
        conn.close()


def test_first_opens_racing_each_other_migrate_once(tmp_path):
    path = tmp_path / "new.db"
    errors = []

    def open_once():
        try:
            open_store(path).close()
        except StorageError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_once) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert open_store(path).execute("SELECT count(*) FROM _sqlite_migrations").fetchone()[0] == 5
