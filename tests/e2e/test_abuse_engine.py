"""The engine, replay and classify under abuse (issue 26, part A): mutated audio, start times at the
calendar's ends, a failing log writer, odd file names, huge samples, full and closed outputs, signal
storms and file-descriptor limits. Each goes through the real `occupancy` command in a child process
and ends in correct behaviour, or in one line and a non-zero exit with nothing already logged lost.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import signal
import sqlite3
import struct
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from occupancy.engine.audio import read_audio
from occupancy.models import default_model_path
from occupancy.sample import SAMPLE_AUDIO
from tests.e2e.test_abuse import logged_events, wait_for
from tests.e2e.test_engine import CLI, REPO, occupancy, start_occupancy
from tests.e2e.test_faults import run_rows
from tests.engine.test_store import _count_events, assert_log_consistent

pytestmark = pytest.mark.skipif(not default_model_path().is_file(), reason="needs the shipped model")

RUN_1 = "2026-11-25T08:00:00+00:00"  # the sample, 90 s, logged by run 1 in the --replace tests


def one_error(result: subprocess.CompletedProcess) -> str:
    """The single error line a child printed, without its prefix; no traceback."""
    assert "Traceback" not in result.stderr, result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("occupancy: error: ")]
    return line.removeprefix("occupancy: error: ")


def replay(db: Path, *files, start: str, folder: Path, extra=(), **kwargs) -> subprocess.CompletedProcess:
    return occupancy("replay", *files, "--speed", "max", "--start", start, "--db", db, *extra, folder=folder, **kwargs)


def covered_seconds(db: Path) -> list[tuple[str, int]]:
    """(start_utc, run_id) of every logged window, in time order."""
    return [(e["start_utc"], e["run_id"]) for e in logged_events(db)]


@pytest.fixture
def run_1_log(tmp_path) -> Path:
    db = tmp_path / "log.db"
    result = replay(db, SAMPLE_AUDIO, start=RUN_1, folder=tmp_path)
    assert result.returncode == 0, result.stderr
    return db


def cut_to_a_third(path: Path) -> Path:
    """The sample as FLAC with only its first third of bytes: the header still says 90 s."""
    whole = path.with_name("whole.flac")
    sf.write(whole, read_audio(SAMPLE_AUDIO), 16000)
    data = whole.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    return path


def claiming_2_36_samples(path: Path) -> Path:
    """3 s of the sample as FLAC whose STREAMINFO claims 2^36-1 samples (49 days at 16 kHz)."""
    sf.write(path, read_audio(SAMPLE_AUDIO)[: 3 * 16000], 16000)
    data = bytearray(path.read_bytes())
    assert data[:4] == b"fLaC"
    fields = int.from_bytes(data[18:26], "big")  # rate (20 bits), channels, bits, total samples (36 bits)
    data[18:26] = (fields | (1 << 36) - 1).to_bytes(8, "big")
    path.write_bytes(bytes(data))
    assert sf.info(path).frames == (1 << 36) - 1
    return path


@pytest.mark.parametrize("make, start", [(cut_to_a_third, "2026-11-25T08:00:00+00:00"),
                                         (claiming_2_36_samples, "2026-11-25T07:59:59+00:00")])
def test_replace_deletes_only_the_time_the_decoded_audio_covers(tmp_path, run_1_log, make, start):
    """The header claims far more time than the file holds: run 1's windows past what was decoded stay."""
    broken = make(tmp_path / "broken.flac")
    result = replay(run_1_log, broken, start=start, folder=tmp_path, extra=["--replace"])
    assert result.returncode == 2
    assert one_error(result).startswith(f"{broken}: truncated or corrupt audio")
    windows = covered_seconds(run_1_log)
    replaced = [when for when, run in windows if run == 2]
    assert replaced, "the decoded part is logged"
    last_of_run_2 = datetime.fromisoformat(replaced[-1]) + timedelta(seconds=1)
    kept = [when for when, run in windows if run == 1]
    want = [f"2026-11-25T08:{s // 60:02d}:{s % 60:02d}.000+00:00" for s in range(90)]
    assert kept == [when for when in want if datetime.fromisoformat(when) >= last_of_run_2]
    assert len(kept) >= 55  # the two-thirds of the sample the broken file never reaches
    assert [run["windows"] for run in run_rows(run_1_log)] == [len(replaced), len(kept)]
    assert_log_consistent(run_1_log)


WRITER_FAILS_AFTER_20 = """\
import occupancy.engine.store as store
calls, real = [0], store.event_row
def failing(event, run_id):
    calls[0] += 1
    if calls[0] > 20:
        raise OverflowError("date value out of range")
    return real(event, run_id)
store.event_row = failing
"""


def test_a_crash_in_the_log_writer_stops_the_run_in_one_line(tmp_path):
    """Any failure of the writer thread (here an OverflowError it has no rule for) ends the run: exit 2,
    one line, the run closed, and what was committed before still there."""
    config = tmp_path / "config.yaml"
    config.write_text("storage:\n  flush_interval_s: 0.05\n")
    db = tmp_path / "log.db"
    result = occupancy("--config", config, "replay", SAMPLE_AUDIO, "--speed", "realtime", "--start", RUN_1,
                       "--db", db, folder=tmp_path, preamble=WRITER_FAILS_AFTER_20)
    assert result.returncode == 2
    assert one_error(result) == (f"{db}: the log writer failed (OverflowError: date value out of range); "
                                 "everything committed before is intact")
    (run,) = run_rows(db)
    assert run["stopped_utc"] is not None
    assert 1 <= run["windows"] == len(logged_events(db)) <= 20
    assert len(result.stdout.splitlines()) < 60  # stopped, not counted to the end for nobody
    assert_log_consistent(db)


@pytest.mark.parametrize("replace", [False, True])
def test_a_hand_edited_event_time_is_one_line(tmp_path, run_1_log, replace):
    """An event whose start_utc lacks its offset (edited by hand) was a TypeError in the writer thread."""
    conn = sqlite3.connect(run_1_log)
    with conn:
        conn.execute("UPDATE events SET start_utc = substr(start_utc, 1, 23)")  # '2026-11-25T08:00:00.000'...
    conn.close()
    result = replay(run_1_log, SAMPLE_AUDIO, start="2026-11-25T07:59:30+00:00", folder=tmp_path,
                    extra=["--replace"] if replace else [])
    assert result.returncode == 2
    assert one_error(result).startswith(f"{run_1_log}: not a valid occupancy log (event ")
    assert "has start_utc '2026-11-25T08:00:00.000' and seconds 1.0: a UTC time and a number are expected)" in result.stderr
    assert [run for _, run in covered_seconds(run_1_log)].count(1) == 90  # nothing of run 1 replaced or lost


@pytest.mark.parametrize("start", ["9999-12-31T23:58:00+00:00", "9999-12-31T23:59:00", "0001-01-01T00:00:00",
                                   "0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59.999999-05:00"])
def test_a_replay_past_the_calendars_ends_is_one_line(tmp_path, start):
    db = tmp_path / "log.db"
    result = replay(db, SAMPLE_AUDIO, start=start, folder=tmp_path)
    assert result.returncode == 2
    line = one_error(result)
    assert line.startswith("--start: ") or line.endswith(
        "lie outside the times the log can hold (0001-01-02 to 9999-12-30 UTC): give another --start")
    assert not db.exists()


def test_the_first_and_last_days_the_log_holds_are_logged(tmp_path):
    db = tmp_path / "log.db"
    for start in ("0001-01-02T00:00:00+00:00", "9999-12-29T23:58:30+00:00"):
        result = replay(db, SAMPLE_AUDIO, start=start, folder=tmp_path)
        assert result.returncode == 0, result.stderr
    assert [run["windows"] for run in run_rows(db)] == [90, 90]
    assert_log_consistent(db)


def test_classify_and_replay_take_file_names_that_are_not_utf8(tmp_path):
    """A name with a byte that is not UTF-8 crashed classify (and skipped the files after it)."""
    odd = Path(os.fsdecode(bytes(tmp_path) + b"/caf\xe9.flac"))
    odd.write_bytes(SAMPLE_AUDIO.read_bytes())
    after = tmp_path / "after.flac"
    after.write_bytes(SAMPLE_AUDIO.read_bytes())
    result = occupancy("classify", "--json", odd, after, folder=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["path"] for row in rows] == [f"{tmp_path}/caf\\xe9.flac"] * 90 + [str(after)] * 90
    text = occupancy("classify", odd, folder=tmp_path)
    assert text.returncode == 0 and text.stdout.startswith(f"{tmp_path}/caf\\xe9.flac ")
    db = tmp_path / "log.db"
    assert replay(db, odd, start=RUN_1, folder=tmp_path).returncode == 0
    assert [(run["device"], run["windows"]) for run in run_rows(db)] == [("caf\\xe9.flac", 90)]


PEAK_MEMORY = ("import atexit, resource, sys\n"
               "atexit.register(lambda: print('peak', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr))\n")


def peak_kib(result: subprocess.CompletedProcess) -> int:
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("peak ")]
    return int(line.split()[1])


def test_classify_reads_a_many_channel_file_in_bounded_blocks(tmp_path):
    """31 s of 8-channel 384-kHz audio took 30 s x rate x channels (368 MB) at once; now a few MB."""
    wide = tmp_path / "wide.flac"
    second = np.repeat(np.sin(np.arange(384_000) / 40.0)[:, None] * 0.1, 8, axis=1)
    with sf.SoundFile(wide, "w", samplerate=384_000, channels=8, subtype="PCM_16") as out:
        for _ in range(31):
            out.write(second)
    narrow = tmp_path / "narrow.flac"
    sf.write(narrow, read_audio(SAMPLE_AUDIO)[: 31 * 16000], 16000)
    results = [occupancy("classify", path, folder=tmp_path, preamble=PEAK_MEMORY) for path in (narrow, wide)]
    for result in results:
        assert result.returncode == 0, result.stderr
    assert len(results[1].stdout.splitlines()) == 31
    assert peak_kib(results[1]) - peak_kib(results[0]) < 100_000  # KiB: was 700 MB more


def test_huge_float_samples_are_clipped_never_nan(tmp_path):
    """Finite float samples of 1e18 and up overflowed the front end into NaN probabilities: invalid JSON
    from classify, [NaN, ...] and 599.9 dBFS in the log."""
    audio = read_audio(SAMPLE_AUDIO).astype(np.float32)
    audio[16000:48000] *= 1e18
    audio[60000:61000] = 3e38
    loud = tmp_path / "loud.wav"
    sf.write(loud, audio, 16000, subtype="FLOAT")

    def no_nan(text):
        raise AssertionError(f"{text} in the output")

    result = occupancy("classify", "--json", loud, folder=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line, parse_constant=no_nan) for line in result.stdout.splitlines()]
    assert len(rows) == 90
    assert f"{loud}: samples beyond full scale (up to 3e+38) clipped to it" in result.stderr
    db = tmp_path / "log.db"
    assert replay(db, loud, start=RUN_1, folder=tmp_path).returncode == 0
    events = logged_events(db)
    assert len(events) == 90
    for event in events:
        assert all(0.0 <= p <= 1.0 for p in json.loads(event["probabilities"], parse_constant=no_nan))
        assert -120.0 <= event["level_dbfs"] <= 0.0


def classify_into(stdout, folder: Path, **kwargs) -> subprocess.CompletedProcess:
    """`occupancy classify` of the sample with its stdout given (a file, or None with a preexec_fn)."""
    return subprocess.run([sys.executable, "-c", CLI, "classify", str(SAMPLE_AUDIO)], cwd=folder, stdout=stdout,
                          stderr=subprocess.PIPE, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)},
                          **kwargs)


def test_classify_to_a_full_disk_or_a_closed_stdout_is_one_line(tmp_path):
    with open("/dev/full", "w") as full:
        result = classify_into(full, tmp_path)
    assert result.returncode == 2
    assert one_error(result) == "standard output: cannot write the counts (No space left on device)"
    closed = classify_into(None, tmp_path, preexec_fn=lambda: os.close(1))
    assert closed.returncode == 2
    assert one_error(closed) == "standard output is closed: nowhere to print the counts (redirect it to a file)"


@pytest.mark.parametrize("container", ["RF64", "W64", "WAV"])
def test_truncated_rf64_and_wave64_files_are_refused(tmp_path, container):
    whole = tmp_path / "whole.wav"
    sf.write(whole, read_audio(SAMPLE_AUDIO), 16000, format=container, subtype="PCM_16")
    assert occupancy("classify", whole, folder=tmp_path).returncode == 0  # complete: counted
    cut = tmp_path / "cut.wav"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 3])
    missing = whole.stat().st_size - cut.stat().st_size
    for command in (["classify", cut], ["replay", cut, "--speed", "max", "--start", RUN_1, "--db", tmp_path / "log.db"]):
        result = occupancy(*command, folder=tmp_path)
        assert result.returncode == 2
        assert one_error(result) == f"{cut}: truncated WAV file ({missing} bytes of audio missing)"
    assert not (tmp_path / "log.db").exists()


def test_a_wave64_chunk_longer_than_any_disk_is_one_line(tmp_path):
    """A Wave64 chunk size of 2^52 bytes (a flipped header byte) made the completeness check seek past
    what the file system allows: OSError, traceback."""
    broken = tmp_path / "broken.wav"
    sf.write(broken, read_audio(SAMPLE_AUDIO)[:16000], 16000, format="W64", subtype="PCM_16")
    data = bytearray(broken.read_bytes())
    assert data[40:44] == b"fmt "
    data[56:64] = struct.pack("<Q", 1 << 52)  # the fmt chunk's size
    broken.write_bytes(bytes(data))
    result = occupancy("classify", broken, folder=tmp_path)
    assert result.returncode == 2
    assert one_error(result).startswith(f"{broken}: not a readable audio file (")


def raw_rows(db: Path) -> list[tuple]:
    """Every event and run, read with sqlite3 alone (open_store refuses such a log)."""
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT * FROM events").fetchall() + conn.execute("SELECT * FROM runs").fetchall()
    finally:
        conn.close()


def test_a_log_of_a_newer_schema_is_refused_by_every_command(tmp_path, run_1_log):
    conn = sqlite3.connect(run_1_log)
    with conn:
        conn.execute("INSERT INTO _sqlite_migrations (migration_set, name, applied_at) "
                     "VALUES ('occupancy', 'm099_from_the_future', '2027-01-01 00:00:00+00:00')")
    conn.close()
    before = raw_rows(run_1_log)
    commands = [["replay", SAMPLE_AUDIO, "--speed", "max", "--start", "2026-11-25T09:00:00"], ["report"],
                ["monitor", "--duration", "2", "--headless"]]
    for command in commands:
        result = occupancy(*command, "--db", run_1_log, folder=tmp_path)
        assert result.returncode == 2, command
        assert one_error(result) == (f"{run_1_log}: written by a newer version of occupancy (schema steps "
                                     "m099_from_the_future are unknown to occupancy 0.1.0): upgrade occupancy to use this log")
    assert raw_rows(run_1_log) == before


@pytest.mark.parametrize("storm", [(signal.SIGTERM,), (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)])
def test_a_storm_of_stop_signals_still_ends_in_a_clean_exit(tmp_path, storm):
    """A stop signal sent every few milliseconds until the replay has gone: the first stops it, the rest
    must not kill it after its handler is gone (exit 143, or -2 for a late Ctrl-C)."""
    db = tmp_path / "log.db"
    proc = start_occupancy("replay", SAMPLE_AUDIO, "--speed", "realtime", "--start", RUN_1, "--db", db, "--headless",
                           folder=tmp_path)
    try:
        wait_for(lambda: db.exists() and _count_events(db) >= 3, seconds=120)
        sent, deadline = 0, time.monotonic() + 60
        while proc.poll() is None:  # one signal interrupting the handler of another deadlocked it
            assert time.monotonic() < deadline, "the replay hangs in the storm"
            proc.send_signal(storm[sent % len(storm)])
            sent += 1
            time.sleep(0.0005)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    (run,) = run_rows(db)
    assert run["stopped_utc"] is not None and 3 <= run["windows"] == len(logged_events(db)) < 90
    assert_log_consistent(db)


def limited_files(n: int):
    return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))


@pytest.mark.parametrize("command, limits", [
    (["replay", SAMPLE_AUDIO, "--speed", "max", "--start", RUN_1, "--headless"], range(5, 10)),
    (["monitor", "--duration", "2", "--headless", "--metrics-port", "0"], range(6, 11)),
])
def test_too_few_file_descriptors_is_one_line(tmp_path, command, limits):
    for n in limits:
        db = tmp_path / f"log-{n}.db"
        result = occupancy(*command, "--db", db, folder=tmp_path, preexec_fn=limited_files(n))
        assert "Traceback" not in result.stderr, (n, result.stderr)
        if result.returncode != 0:
            assert result.returncode == 2
            assert one_error(result)
        if db.exists() and result.returncode == 0:
            assert_log_consistent(db)


def test_the_dashboard_never_draws_into_a_redirected_stderr(tmp_path):
    """`occupancy monitor 2>monitor.log` on a terminal: Textual draws on stderr, so the dashboard would
    go into the file; the run is headless instead (lines on the terminal, the notice in the file)."""
    import fcntl
    import termios

    terminal, child_side = os.openpty()
    fcntl.ioctl(child_side, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    errors = tmp_path / "monitor.log"
    db = tmp_path / "log.db"
    with open(errors, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", CLI, "monitor", "--duration", "3", "--db", str(db)],
            stdin=child_side, stdout=child_side, stderr=err, cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(REPO), "TERM": "xterm-256color"},
        )
    os.close(child_side)
    screen = []
    reader = threading.Thread(target=lambda: screen.append(read_all(terminal)), daemon=True)
    reader.start()
    try:
        assert proc.wait(timeout=120) == 0, errors.read_text()
    finally:
        proc.kill()
        reader.join(timeout=10)
        os.close(terminal)
    text = errors.read_text()
    assert "\x1b[" not in text
    assert "output is not a terminal: printing one line per window instead of the dashboard" in text
    assert screen[0].count(b" count ") >= 2  # the headless lines, on the terminal
    assert run_rows(db)[0]["windows"] >= 2


def read_all(fd: int) -> bytes:
    chunks = []
    try:
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    except OSError as exc:  # EIO: the other side is closed
        assert exc.errno == errno.EIO
    return b"".join(chunks)


def test_a_storm_of_stop_signals_on_the_dashboard_still_closes_the_run(tmp_path):
    """The dashboard's event loop resets SIGTERM/SIGHUP to the default as it closes: a storm then killed
    the process before the log was flushed and the run closed (exit -1, stopped_utc NULL)."""
    import fcntl
    import termios

    db = tmp_path / "log.db"
    terminal, child_side = os.openpty()
    fcntl.ioctl(child_side, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-c", CLI, "replay", str(SAMPLE_AUDIO), "--speed", "realtime", "--start", RUN_1,
         "--db", str(db), "--dashboard"],
        stdin=child_side, stdout=child_side, stderr=child_side, cwd=tmp_path, start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(REPO), "TERM": "xterm-256color"},
    )
    os.close(child_side)
    screen = threading.Thread(target=read_all, args=(terminal,), daemon=True)
    screen.start()
    try:
        wait_for(lambda: db.exists() and _count_events(db) >= 3, seconds=120)
        sent, deadline = 0, time.monotonic() + 60
        while proc.poll() is None:
            assert time.monotonic() < deadline, "the dashboard hangs in the storm"
            proc.send_signal((signal.SIGTERM, signal.SIGHUP)[sent % 2])
            sent += 1
            time.sleep(0.0005)
    finally:
        proc.kill()
        screen.join(timeout=10)
        os.close(terminal)
    assert proc.returncode == 0
    (run,) = run_rows(db)
    assert run["stopped_utc"] is not None and 3 <= run["windows"] == len(logged_events(db)) < 90
    assert_log_consistent(db)
