"""`occupancy report` under the inputs issue 26 found mishandled, through the real command in a child
process: dates at the calendar's ends, out-of-range flags, output to a full disk, hand-altered logs,
empty paths, the autumn DST change, and the files a reader leaves beside the log."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from occupancy.engine.store import open_store
from tests.e2e.test_engine import CLI, REPO, occupancy
from tests.reporting.test_report import log_counts

DAY = datetime(2026, 11, 23, 8, tzinfo=UTC)


def report(db: Path, *args: str, zone: str = "Europe/Paris", folder: Path) -> subprocess.CompletedProcess:
    """`occupancy report --db DB ARGS` with TZ=`zone` and HOME in `folder`."""
    env = {**os.environ, "TZ": zone, "HOME": str(folder / "home")}
    return occupancy("report", "--db", db, *args, folder=folder, env=env)


def one_line(proc: subprocess.CompletedProcess) -> str:
    """The command's only stderr line, without 'occupancy: error: ', after exit 2 with nothing on stdout."""
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stdout == "" and "Traceback" not in proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith("occupancy: error: ")
    return line.removeprefix("occupancy: error: ")


def write_gappy_log(path: Path) -> Path:
    """20 min at 08:00 UTC, 20 min at 12:30, 10 min at 09:00 the next day: gaps of 3 and 20 hours."""
    db = open_store(path)
    log_counts(db, DAY, [1] * 1200)
    log_counts(db, DAY.replace(hour=12, minute=30), [2] * 1200)
    log_counts(db, DAY.replace(day=24, hour=9), [0] * 600)
    db.close()
    return path


@pytest.fixture
def gappy_log(tmp_path) -> Path:
    """A log of this test's own, to alter or to watch the files beside it."""
    return write_gappy_log(tmp_path / "log.db")


@pytest.fixture(scope="module")
def shared_log(tmp_path_factory) -> Path:
    """The same log, only read, shared by the tests of this module."""
    return write_gappy_log(tmp_path_factory.mktemp("shared") / "log.db")


@pytest.fixture(scope="module")
def whole_report(shared_log, tmp_path_factory):
    """The JSON report of all of shared_log in a zone, with or without --utc; each made once."""
    made: dict[tuple[str, bool], dict] = {}
    folder = tmp_path_factory.mktemp("whole")

    def whole(zone: str, utc: bool) -> dict:
        if (zone, utc) not in made:
            made[zone, utc] = as_json(report(shared_log, "--format", "json", *(["--utc"] if utc else []), zone=zone,
                                             folder=folder))
        return made[zone, utc]
    return whole


def as_json(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


@pytest.mark.parametrize("zone", ["Europe/Paris", "America/New_York"])
@pytest.mark.parametrize("args", [
    ["--since", "0001-01-01"], ["--until", "9999-12-31T23:59"], ["--until", "9999-12-31"],
    ["--since", "0001-01-01", "--until", "9999-12-31"], ["--since", "0001-01-01T00:00+14:00"],
    ["--until", "9999-12-31T23:59-12:00"], ["--since", "0001-01-01", "--utc"], ["--until", "9999-12-31T23:59", "--utc"],
], ids=" ".join)
def test_dates_at_the_calendars_ends_report_what_is_logged_and_no_gap_outside_the_log(
        shared_log, whole_report, tmp_path, zone, args):
    """A range reaching year 1 or 9999 is the whole log: the same periods and gaps as no range at all, and
    no hour before the log's first or after its last (the future) listed as a gap."""
    whole = whole_report(zone, "--utc" in args)
    wide = as_json(report(shared_log, "--format", "json", *args, zone=zone, folder=tmp_path))
    assert wide["periods"] == whole["periods"] and len(whole["periods"]) == 3
    assert wide["gaps"] == whole["gaps"]
    assert [g["hours"] for g in whole["gaps"]] == [3, 20]


def test_gaps_stop_at_the_logs_first_and_last_hour(shared_log, tmp_path):
    """--since before the log began and --until after its last hour: the hours outside were never monitored
    by this log (or have not come yet), so they are no gap; a gap --until cuts is counted up to it."""
    data = as_json(report(shared_log, "--format", "json", "--utc", "--since", "2026-11-01", "--until", "2027-01-01",
                          folder=tmp_path))
    assert [(g["start"], g["hours"]) for g in data["gaps"]] == [
        ("2026-11-23T09:00:00+00:00", 3), ("2026-11-23T13:00:00+00:00", 20)]
    data = as_json(report(shared_log, "--format", "json", "--utc", "--until", "2026-11-23T10:30", folder=tmp_path))
    assert [(g["start"], g["end"], g["hours"]) for g in data["gaps"]] == [
        ("2026-11-23T09:00:00+00:00", "2026-11-23T11:00:00+00:00", 2)]


@pytest.mark.parametrize("value", ["100000000000000000000", "1001", "-1"])
def test_capacity_limit_flag_is_range_checked_like_the_config_key(shared_log, tmp_path, value):
    assert one_line(report(shared_log, "--capacity-limit", value, folder=tmp_path)) == (
        f"command line: --capacity-limit: must be between 0 and 1000, got {value}")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
@pytest.mark.parametrize("form", ["table", "csv", "json"])
def test_a_full_disk_on_standard_output_is_one_line(shared_log, tmp_path, form):
    """A report bigger or smaller than Python's output buffer: either way one line and exit 2."""
    with open("/dev/full", "w") as full:
        proc = subprocess.run(
            [sys.executable, "-c", CLI, "report", "--db", str(shared_log), "--format", form], cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(REPO), "HOME": str(tmp_path)}, stdout=full, stderr=subprocess.PIPE,
            text=True, timeout=300,
        )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr == "occupancy: error: cannot write to standard output (No space left on device)\n"


def alter(db: Path, sql: str) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute(sql)
    conn.close()


@pytest.mark.parametrize("sql, expected", [
    ("UPDATE hourly SET seconds = 'lots' WHERE hour_utc LIKE '%T12:%'",
     "table hourly, row '2026-11-23T12:00:00.000+00:00', column seconds: must be a number, 0 or more, got 'lots'"),
    ("UPDATE hourly SET seconds = 0 WHERE hour_utc LIKE '%T12:%'", "column seconds: must be more than 0 and at most 3600, got 0"),
    ("UPDATE hourly SET seconds = 9000 WHERE hour_utc LIKE '%T12:%'", "column seconds: must be more than 0 and at most 3600"),
    ("UPDATE hourly SET person_seconds = -5 WHERE hour_utc LIKE '%T12:%'", "column person_seconds: must be a number, 0 or more"),
    ("UPDATE hourly SET seconds_2plus = 4000 WHERE hour_utc LIKE '%T12:%'", "column seconds_2plus: must be at most the hour's seconds (1200)"),
    ("UPDATE hourly SET person_seconds = 1e6 WHERE hour_utc LIKE '%T12:%'", "column person_seconds: must be at most peak_count x seconds (2400)"),
    ("UPDATE hourly SET peak_count = x'00ff' WHERE hour_utc LIKE '%T12:%'", "column peak_count: must be a number, 0 or more, got b'\\x00\\xff'"),
    ("UPDATE hourly SET distinct_voices_mean = 'two' WHERE hour_utc LIKE '%T12:%'", "column distinct_voices_mean: must be a number"),
    ("UPDATE hourly SET hour_utc = '2026-11-23 12:30' WHERE hour_utc LIKE '%T12:%'", "column hour_utc: must be the start of a UTC hour"),
    ("UPDATE hourly SET hour_utc = '2026-11-23T12:00:00.000' WHERE hour_utc LIKE '%T12:%'", "column hour_utc: must be the start of a UTC hour"),
    ("UPDATE hourly SET hour_utc = 'yesterday' WHERE hour_utc LIKE '%T12:%'", "row 'yesterday', column hour_utc: must be the start"),
], ids=["text", "zero", "over-an-hour", "negative", "share-over-1", "mean-over-peak", "blob", "voices-text", "half-hour", "naive", "not-a-time"])
def test_a_hand_altered_hourly_table_is_one_line_naming_the_row_and_column(gappy_log, tmp_path, sql, expected):
    alter(gappy_log, sql)
    line = one_line(report(gappy_log, folder=tmp_path))
    assert line.startswith(f"{gappy_log}: table hourly, row ") and expected in line
    assert line.endswith("(was the log altered by hand?)")


def test_a_column_dropped_from_hourly_is_one_line(gappy_log, tmp_path):
    alter(gappy_log, "ALTER TABLE hourly DROP COLUMN women_seconds")
    assert one_line(report(gappy_log, folder=tmp_path)) == (
        f"{gappy_log}: table hourly has no column women_seconds (was the log altered by hand?)")


@pytest.mark.parametrize("sql, column", [
    ("UPDATE events SET smoothed = 'high' WHERE id = 5", "smoothed"),
    ("UPDATE events SET start_utc = '2026-11-23T12:30:04' WHERE id = 1300", "start_utc"),
])
def test_a_hand_altered_event_is_one_line_when_alerts_read_it(gappy_log, tmp_path, sql, column):
    alter(gappy_log, sql)
    line = one_line(report(gappy_log, "--capacity-limit", "1", folder=tmp_path))
    assert line.startswith(f"{gappy_log}: table events, row starting ") and f"column {column}: must be" in line


def test_since_and_until_one_with_an_offset_one_without_are_compared_in_the_reports_zone(shared_log, tmp_path):
    assert one_line(report(shared_log, "--since", "2026-11-24", "--until", "2026-11-23T12:00+01:00", folder=tmp_path)) == (
        "--since 2026-11-24 00:00 must be before --until 2026-11-23 12:00")
    data = as_json(report(shared_log, "--format", "json", "--since", "2026-11-23T13:00", "--until", "2026-11-24T11:00+01:00",
                          folder=tmp_path))  # Paris: 12:00 to 10:00 UTC
    assert [p["period"] for p in data["periods"]] == ["2026-11-23 13:00", "2026-11-24 10:00"]


@pytest.mark.parametrize("command", [["report"], ["replay", "--speed", "max", "--headless"], ["--config", "", "report"]])
def test_an_empty_path_is_refused_not_read_as_the_default_log(tmp_path, command):
    """`--db ""` named no file, yet replay wrote (and report read) the default log in HOME."""
    from occupancy.sample import SAMPLE_AUDIO

    flag = "config" if "--config" in command else "db"
    args = command + ([] if flag == "config" else ["--db", ""]) + ([str(SAMPLE_AUDIO)] if "replay" in command else [])
    env = {**os.environ, "HOME": str(tmp_path / "home")}
    assert one_line(occupancy(*args, folder=tmp_path, env=env)) == (
        f"--{flag}: an empty path names no file (leave --{flag} out for the default)")
    assert not (tmp_path / "home").exists()


@pytest.mark.parametrize("plot, expected", [
    ("", "--plot: an empty path names no file (leave --plot out for the default)"),
    ("chart.txt", "--plot chart.txt: the picture is a PNG: name a file ending in .png"),
])
def test_a_plot_that_cannot_be_a_png_is_refused_before_the_report(shared_log, tmp_path, plot, expected):
    assert one_line(report(shared_log, "--plot", plot, folder=tmp_path)) == expected


def test_the_autumn_change_labels_the_repeated_hour_with_its_offset(tmp_path):
    """Europe/Paris, 25 Oct 2026: 02:00-03:00 is lived twice (CEST, then CET). Each hour has a label of its
    own in the table, CSV and JSON, and the heading names both zones."""
    path = tmp_path / "log.db"
    db = open_store(path)
    log_counts(db, datetime(2026, 10, 25, 0, tzinfo=UTC), [1, 2, 0] * 3600)  # 00:00-03:00 UTC
    db.close()
    table = report(path, folder=tmp_path)
    assert table.returncode == 0, table.stderr
    assert "Sun 2026-10-25 02:00+02:00 to Sun 2026-10-25 04:00, local time CEST (UTC+02:00) and CET (UTC+01:00)" in table.stdout
    labels = ["2026-10-25 02:00+02:00", "2026-10-25 02:00+01:00", "2026-10-25 03:00"]
    rows = table.stdout.split("\n\n")[1].splitlines()[2:]  # the period table, below its title and header
    assert [" ".join(row.split()[:2]) for row in rows] == labels
    csv = report(path, "--format", "csv", folder=tmp_path).stdout.splitlines()
    assert [row.split(",")[0] for row in csv[1:]] == labels
    data = as_json(report(path, "--format", "json", folder=tmp_path))
    assert [p["period"] for p in data["periods"]] == labels
    assert data["timezone"] == "local time CEST (UTC+02:00) and CET (UTC+01:00)" and data["gaps"] == []
    day = as_json(report(path, "--format", "json", "--by", "day", folder=tmp_path))["periods"]
    assert [(p["period"], p["hours"]) for p in day] == [("2026-10-25", 3)]
    utc = as_json(report(path, "--format", "json", "--utc", folder=tmp_path))
    assert [p["period"] for p in utc["periods"]] == ["2026-10-25 00:00", "2026-10-25 01:00", "2026-10-25 02:00"]


def test_the_spring_change_skips_the_missing_hour_without_a_gap(tmp_path):
    """Europe/Paris, 29 Mar 2026: 02:00-03:00 never happens; 00:00-02:00 UTC is 01:00 CET then 03:00 CEST."""
    path = tmp_path / "log.db"
    db = open_store(path)
    log_counts(db, datetime(2026, 3, 29, 0, tzinfo=UTC), [1] * 7200)
    db.close()
    data = as_json(report(path, "--format", "json", folder=tmp_path))
    assert [p["period"] for p in data["periods"]] == ["2026-03-29 01:00", "2026-03-29 03:00"] and data["gaps"] == []
    assert data["timezone"] == "local time CET (UTC+01:00) and CEST (UTC+02:00)"


def files_beside(db: Path) -> list[str]:
    return sorted(p.name for p in db.parent.iterdir() if p.name.startswith(db.name))


def test_a_report_leaves_no_wal_or_shm_beside_a_log_that_had_none(gappy_log, tmp_path):
    assert files_beside(gappy_log) == ["log.db"]  # the writer's last close removed them
    before = gappy_log.read_bytes()
    for args in ([], ["--capacity-limit", "1", "--plot", str(tmp_path / "chart.png")], ["--since", "2026-11-24"]):
        assert report(gappy_log, *args, folder=tmp_path).returncode == 0
        assert files_beside(gappy_log) == ["log.db"]
    assert gappy_log.read_bytes() == before  # and the log itself is untouched


def test_a_report_beside_a_running_writer_leaves_the_writers_files_and_data(gappy_log, tmp_path):
    """The -wal and -shm of a writer that is running are its own: the report reads its latest batch and
    leaves them, and the writer goes on logging."""
    writer = open_store(gappy_log)
    log_counts(writer, DAY.replace(day=25), [3] * 600)
    assert files_beside(gappy_log) == ["log.db", "log.db-shm", "log.db-wal"]
    data = as_json(report(gappy_log, "--format", "json", "--utc", folder=tmp_path))
    assert data["periods"][-1]["period"] == "2026-11-25 08:00"
    assert files_beside(gappy_log) == ["log.db", "log.db-shm", "log.db-wal"]
    log_counts(writer, DAY.replace(day=26), [3] * 600)
    writer.close()
    assert as_json(report(gappy_log, "--format", "json", "--utc", folder=tmp_path))["periods"][-1]["period"] == "2026-11-26 08:00"
    assert files_beside(gappy_log) == ["log.db"]
