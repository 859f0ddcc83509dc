"""The log tells the truth under abuse (issue 20): each way a venue could mislead the log or be misled
by it, through the real `occupancy` command, real SQLite files and real audio. Each ends in correct
behaviour, or in one line and a non-zero exit with nothing already committed lost and no figure
invented.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import signal
import sqlite3
import struct
import subprocess
import sys
import termios
import threading
import time
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pytest
import soundfile as sf

from occupancy.cli import main
from occupancy.config import load_config
from occupancy.engine.audio import read_audio
from occupancy.engine.store import open_store, start_run, write_batch
from occupancy.models import default_model_path
from occupancy.sample import SAMPLE_AUDIO
from tests.alsa_device import DEVICE, alsa_file_device, alsa_paced_device
from tests.e2e.test_engine import CLI, REPO, logged_counts, occupancy, start_occupancy
from tests.e2e.test_faults import moved_off_the_full_disk, run_rows
from tests.engine.test_store import (
    RUN,
    T0,
    _count_events,
    assert_log_consistent,
    make_events,
)
from tests.filesystems import ext4_disk, read_only_view

pytestmark = pytest.mark.skipif(not default_model_path().is_file(), reason="needs the shipped model")


def one_error(capsys) -> str:
    """The single error line the command printed on stderr, without its 'occupancy: error: ' prefix."""
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if line.startswith("occupancy: error: ")]
    assert "Traceback" not in err
    return line.removeprefix("occupancy: error: ")


@pytest.mark.parametrize("key", ["storage.flush_interval_s", "audio.hop_s", "monitor.queue_seconds"])
@pytest.mark.parametrize("number", [".nan", ".inf", "-.inf"])
def test_nan_and_infinity_in_the_config_are_refused(tmp_path, capsys, key, number):
    section, name = key.split(".")
    config = tmp_path / "config.yaml"
    config.write_text(f"{section}:\n  {name}: {number}\n")
    assert main(["--config", str(config), "replay", str(SAMPLE_AUDIO), "--db", str(tmp_path / "log.db")]) == 2
    assert one_error(capsys).startswith(f"{config}: {key}: must be a finite number, got ")
    assert not (tmp_path / "log.db").exists()


def test_a_number_yaml_reads_as_text_is_the_number_it_spells(tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text("storage:\n  flush_interval_s: 5e-1\n  retention_days: 3e1\n")  # YAML 1.1: both are strings
    settings = load_config(config).storage
    assert (settings.flush_interval_s, settings.retention_days) == (0.5, 30)
    config.write_text("storage:\n  flush_interval_s: 1e9\n")
    assert main(["--config", str(config), "replay", str(SAMPLE_AUDIO)]) == 2
    assert one_error(capsys) == f"{config}: storage.flush_interval_s: must be between 0.05 and 60.0, got 1000000000.0"


@pytest.mark.parametrize("command, flag", [("replay", "--hop"), ("monitor", "--hop"), ("monitor", "--duration")])
def test_nan_and_infinity_on_the_command_line_are_refused(tmp_path, capsys, command, flag):
    files = [str(SAMPLE_AUDIO)] if command == "replay" else []
    for number in ("nan", "inf"):
        assert main([command, *files, flag, number, "--headless", "--db", str(tmp_path / "log.db")]) == 2
        assert f"{flag}: must be a " in one_error(capsys)
    assert not (tmp_path / "log.db").exists()


def test_an_impossible_sample_rate_is_refused_not_stretched_into_hours(tmp_path, capsys):
    wav = tmp_path / "one-hertz.wav"
    sf.write(wav, read_audio(SAMPLE_AUDIO)[: 5 * 16000], 16000)
    header = bytearray(wav.read_bytes())
    header[24:32] = struct.pack("<II", 1, 2)  # the fmt chunk's sample rate and byte rate: 1 Hz, 16-bit mono
    wav.write_bytes(bytes(header))
    db = tmp_path / "log.db"
    for command in (["replay", str(wav), "--speed", "max", "--db", str(db)], ["classify", str(wav)]):
        assert main(command) == 2
        assert one_error(capsys) == f"{wav}: impossible sample rate 1 Hz in its header (recordings are 4,000 to 384,000 Hz)"
    assert not db.exists()


def test_a_fifo_is_named_as_such(tmp_path, capsys):
    fifo = tmp_path / "stream.wav"
    os.mkfifo(fifo)
    assert main(["replay", str(fifo), "--speed", "max", "--db", str(tmp_path / "log.db")]) == 2
    assert one_error(capsys) == f"{fifo}: not a regular file (a FIFO)"


def test_a_foreign_database_is_refused_by_every_command_that_writes(tmp_path, capsys):
    db = tmp_path / "crm.db"
    other = sqlite3.connect(db)
    other.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    other.execute("INSERT INTO users (name) VALUES ('ada')")
    other.commit()
    other.close()
    before = db.read_bytes()
    for command in (["replay", str(SAMPLE_AUDIO), "--speed", "max"], ["monitor", "--duration", "2"], ["report"]):
        assert main([*command, "--db", str(db)] + (["--headless"] if command[0] != "report" else [])) == 2
        assert one_error(capsys) == f"{db}: not an occupancy log (its tables users were not written by occupancy)"
    assert db.read_bytes() == before  # not even switched to WAL mode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["crm.db"]


def test_sighup_stops_the_dashboard_cleanly(tmp_path):
    """A closed terminal (SIGHUP) under the dashboard: the run is closed and every counted window logged."""
    db = tmp_path / "log.db"
    terminal, child_side = os.openpty()
    fcntl.ioctl(child_side, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-c", CLI, "replay", str(SAMPLE_AUDIO), "--speed", "realtime", "--db", str(db), "--dashboard"],
        stdin=child_side, stdout=child_side, stderr=child_side, cwd=tmp_path, start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(REPO), "TERM": "xterm-256color"},
    )
    os.close(child_side)
    screen = threading.Thread(target=drain, args=(terminal,), daemon=True)  # the app waits on a full terminal
    screen.start()
    try:
        wait_for(lambda: db.exists() and _count_events(db) >= 3, seconds=120)
        proc.send_signal(signal.SIGHUP)
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
        screen.join(timeout=10)
        os.close(terminal)
    (run,) = run_rows(db)
    assert run["stopped_utc"] is not None
    assert 3 <= run["windows"] == len(logged_counts(db)) < 90
    assert_log_consistent(db)


def drain(fd: int) -> None:
    """Read a terminal until the program on it has gone."""
    try:
        while os.read(fd, 65536):
            pass
    except OSError:  # EIO: the other side is closed
        pass


def wait_for(condition, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not reached within {seconds} s")
        time.sleep(0.1)


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_log_deleted_or_replaced_during_the_run_is_said_loudly(tmp_path, how):
    db = tmp_path / "venue.db"
    proc = start_occupancy("replay", SAMPLE_AUDIO, "--speed", "realtime", "--db", db, "--headless", folder=tmp_path)
    try:
        wait_for(lambda: db.exists() and _count_events(db) >= 3, seconds=120)
        if how == "deleted":
            for path in tmp_path.glob("venue.db*"):
                path.unlink()
        else:
            (tmp_path / "notes.txt").write_text("not a log\n")
            (tmp_path / "notes.txt").rename(db)
        _, err = proc.communicate(timeout=60)  # a window is committed every second, the file checked before each
    finally:
        proc.kill()
    assert proc.returncode == 2
    (line,) = [line for line in err.splitlines() if line.startswith("occupancy: error: ")]
    assert line.startswith(f"occupancy: error: {db}: the log file was deleted or replaced during the run; "
                           "stopped without logging the last ")
    assert "windows logged to" not in err and "Traceback" not in err
    if how == "deleted":
        assert not list(tmp_path.glob("venue.db*"))  # not quietly made anew
    else:
        assert db.read_text() == "not a log\n"
        assert sorted(p.name for p in tmp_path.glob("venue.db*")) == ["venue.db"]  # no write-ahead log left beside it


def report_json(db: Path, folder: Path) -> tuple[int, dict | str]:
    """`occupancy report --format json` in a child process (a crash must not take the tests with it):
    the exit code and the report without its database path, or stderr when it failed."""
    result = occupancy("report", "--db", db, "--utc", "--format", "json", folder=folder)
    if result.returncode != 0:
        return result.returncode, result.stderr.strip()
    return 0, {k: v for k, v in json.loads(result.stdout).items() if k != "database"}


@pytest.fixture(scope="module")
def live_log(tmp_path_factory) -> Path:
    """Folder with a log as an archive would copy it while a monitor had it open: log.db, its -wal
    holding the latest windows, and its -shm; `reference` is the report of the log closed cleanly."""
    folder = tmp_path_factory.mktemp("live")
    writer = open_store(folder / "log.db")
    run = start_run(writer, **vars(RUN))
    write_batch(writer, run, make_events([1, 2, 3, 0] * 30), {})
    writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    write_batch(writer, run, make_events([2] * 60, start=T0 + timedelta(minutes=3)), {})  # only in the -wal
    copies = folder / "copies"
    copies.mkdir()
    for suffix in ("", "-wal", "-shm"):
        shutil.copyfile(folder / f"log.db{suffix}", copies / f"log.db{suffix}")
    writer.close()
    return copies


@pytest.mark.parametrize("files", [("",), ("", "-shm", "-wal")])
def test_report_reads_a_log_on_read_only_media(tmp_path, live_log, files):
    archive = tmp_path / "archive"
    archive.mkdir()
    for suffix in ("", "-shm", "-wal"):
        shutil.copyfile(live_log / f"log.db{suffix}", archive / f"log.db{suffix}")
    if files == ("",):
        open_store(archive / "log.db").close()  # closed cleanly: everything is in log.db
    assert sorted(p.name for p in archive.iterdir()) == [f"log.db{suffix}" for suffix in files]
    want = report_json(live_log / "log.db", tmp_path)
    with read_only_view(archive) as media:
        assert not os.access(media, os.W_OK)
        assert report_json(media / "log.db", tmp_path) == want
    assert sum(p["minutes_covered"] for p in want[1]["periods"]) == pytest.approx(3.0)  # with the -wal's minute
    assert sorted(p.name for p in archive.iterdir()) == [f"log.db{suffix}" for suffix in files]  # nothing written


def test_report_on_read_only_media_without_the_wal_index_says_why_not(tmp_path, live_log):
    archive = tmp_path / "archive"
    archive.mkdir()
    for suffix in ("", "-wal"):
        shutil.copyfile(live_log / f"log.db{suffix}", archive / f"log.db{suffix}")
    with read_only_view(archive) as media:
        assert report_json(media / "log.db", tmp_path) == (2, (
            f"occupancy: error: {media / 'log.db'}: cannot be read here: its log.db-wal holds entries that need a "
            "log.db-shm beside it, which cannot be made on this read-only or full disk (copy the log's files to "
            "another disk)"))


def test_report_reads_a_log_on_a_disk_that_filled_up(tmp_path, capsys):
    """The log's last batches still sit in its -wal on a full disk: the reader must not grow the
    memory-mapped WAL index there (that was a SIGBUS, exit 135)."""
    with ext4_disk(tmp_path, size_mb=4) as disk:
        # Leave less room than the log needs (about 0.5 MB of rows, and its -wal beside them): whether the
        # -wal alone outgrew a bare 4-MB disk depended on when SQLite checkpointed (a fresh clone's CI
        # once logged all 2,700 windows).
        fs = os.statvfs(disk)
        (disk / "filler").write_bytes(bytes(fs.f_bavail * fs.f_frsize - 384 * 1024))
        db = disk / "log.db"
        config = tmp_path / "config.yaml"
        config.write_text("storage:\n  flush_interval_s: 0.1\n")
        code = main(["--config", str(config), "replay", *[str(SAMPLE_AUDIO)] * 30, "--speed", "max",
                     "--start", "2026-11-26T10:00:00+00:00", "--db", str(db)])
        assert code == 2 and "disk full" in one_error(capsys)
        assert Path(f"{db}-wal").stat().st_size > 0
        code, report = report_json(db, tmp_path)
        assert code == 0, report
        assert report == report_json(moved_off_the_full_disk(db, tmp_path), tmp_path)[1]


def hours_of(db: Path) -> list[tuple[str, int, float]]:
    store = open_store(db, readonly=True)
    try:
        return [(h["hour_utc"], h["windows"], h["seconds"]) for h in store.query("SELECT * FROM hourly ORDER BY hour_utc")]
    finally:
        store.close()


def test_replaying_logged_time_again_is_refused_or_replaced_never_counted_twice(tmp_path, capsys):
    db = tmp_path / "log.db"
    replay_at = ["replay", str(SAMPLE_AUDIO), "--speed", "max", "--db", str(db), "--start"]
    assert main([*replay_at, "2026-11-23T18:00:00"]) == 0
    once = hours_of(db)
    capsys.readouterr()
    assert main([*replay_at, "2026-11-23T18:00:30"]) == 2  # half of it over the first
    assert one_error(capsys) == (f"{db}: run 1 (replay, sample.flac) has logged 2026-11-23 18:00:30 to "
                                 "2026-11-23 18:01:30 UTC already: `replay --replace` deletes it first")
    assert hours_of(db) == once and len(run_rows(db)) == 1  # refused before a run began
    assert main([*replay_at, "2026-11-23T18:00:30", "--replace"]) == 0
    assert "replaced 60 windows logged by run 1" in capsys.readouterr().err
    assert hours_of(db) == [("2026-11-23T18:00:00.000+00:00", 120, 120.0)]  # 30 s of run 1, then 90 s of run 2
    assert [run["windows"] for run in run_rows(db)] == [90, 30]  # each run counts what it still holds
    assert_log_consistent(db)


def test_one_replay_of_two_recordings_of_the_same_time_is_refused(tmp_path, capsys):
    copy = tmp_path / "copy.flac"
    shutil.copy2(SAMPLE_AUDIO, copy)  # same length, same modification time
    assert main(["replay", str(SAMPLE_AUDIO), str(copy), "--speed", "max", "--db", str(tmp_path / "log.db")]) == 2
    assert one_error(capsys) == (f"{copy}: covers the same time as {SAMPLE_AUDIO} (by their modification times): "
                                 "give --start to replay them one after the other")
    assert not (tmp_path / "log.db").exists()


def logged_events(db: Path) -> list[dict]:
    store = open_store(db, readonly=True)
    try:
        return list(store.query("SELECT * FROM events ORDER BY start_utc"))
    finally:
        store.close()


def test_a_microphone_faster_than_real_time_is_held_to_the_wall_clock(tmp_path):
    """The ALSA file device delivers audio thousands of times faster than real time: its windows are
    stamped within a window of when they were heard, never past the run's end, and the extra audio
    is dropped and counted, not stamped into the future."""
    env = alsa_file_device(tmp_path, read_audio(SAMPLE_AUDIO))
    db = tmp_path / "log.db"
    result = occupancy("monitor", "--headless", "--device", DEVICE, "--duration", 4, "--db", db, folder=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    (run,) = run_rows(db)
    started, stopped = (datetime.fromisoformat(run[key]) for key in ("started_utc", "stopped_utc"))
    events = logged_events(db)
    assert 2 <= len(events) == run["windows"] <= 4
    window = timedelta(seconds=1)
    for event in events:
        assert started - window <= datetime.fromisoformat(event["start_utc"])
        assert datetime.fromisoformat(event["end_utc"]) <= stopped + window
    for earlier, later in pairwise(events):  # no second counted twice
        assert datetime.fromisoformat(earlier["start_utc"]) + timedelta(seconds=earlier["seconds"]) <= \
            datetime.fromisoformat(later["start_utc"])
    assert run["dropped"] > 0 and f"dropped {run['dropped']}," in result.stderr
    assert_log_consistent(db)


def test_two_microphones_on_one_log_at_once_are_not_summed(tmp_path):
    """A second monitor started on a log a first one is writing: whichever commits a window over the
    other's time first wins, the other stops with one line; no second is covered twice."""
    audio = read_audio(SAMPLE_AUDIO)
    db = tmp_path / "log.db"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with alsa_paced_device(tmp_path / "a", audio) as env_a, alsa_paced_device(tmp_path / "b", audio) as env_b:
        first = start_occupancy("monitor", "--headless", "--device", DEVICE, "--duration", 60, "--db", db,
                                folder=tmp_path / "a", env=env_a)
        try:
            wait_for(lambda: db.exists() and _count_events(db) >= 2, seconds=120)
            second = occupancy("monitor", "--headless", "--device", DEVICE, "--duration", 8, "--db", db,
                               folder=tmp_path / "b", env=env_b)
            first.send_signal(signal.SIGTERM)
            _, first_err = first.communicate(timeout=60)
        finally:
            first.kill()
    codes = sorted([first.returncode, second.returncode])
    assert codes == [0, 2], (first_err, second.stderr)
    (line,) = [line for line in first_err.splitlines() + second.stderr.splitlines() if "error:" in line]
    assert re.fullmatch(rf"occupancy: error: {db}: run [12] \(microphone, {DEVICE}\) has logged .* UTC already: "
                        "two runs cannot log the same time into one log", line)
    events = logged_events(db)
    for earlier, later in pairwise(events):
        assert datetime.fromisoformat(earlier["start_utc"]) + timedelta(seconds=earlier["seconds"]) <= \
            datetime.fromisoformat(later["start_utc"])
    assert_log_consistent(db)
