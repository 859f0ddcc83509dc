"""End to end through the `occupancy` command with the shipped model: the bundled sample replayed
from its file and captured live through PortAudio (ALSA file-plugin device) into a real SQLite log.

Tolerance against the sample's per-second truth (90 s, 0-3 real voices): at least 70 % of seconds
counted exactly, the mean count within 0.3, the seconds with speech within 5 s, the peak exactly 3.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from occupancy.engine.audio import read_audio
from occupancy.models import default_model_path, sex_model_path
from occupancy.sample import SAMPLE_AUDIO, load_truth
from occupancy.engine.store import open_store, runs
from tests.alsa_device import DEVICE, alsa_file_device, alsa_paced_device
from tests.engine.test_store import assert_log_consistent, make_read_only, open_folder, run_unprivileged  # noqa: F401

REPO = Path(__file__).resolve().parents[2]
START = "2026-11-25T10:00:00+00:00"
HIDE_PORTAUDIO = "import ctypes.util; ctypes.util.find_library = lambda name: None\n"
CLI = "import sys; from occupancy.cli import main; sys.exit(main(sys.argv[1:]))"


@pytest.fixture(autouse=True)
def shipped_model():
    if not default_model_path().is_file():
        pytest.skip("needs the shipped model models/counter.safetensors (not trained yet in this checkout)")


def occupancy(*args, folder: Path, env=None, preamble: str = "", **kwargs) -> subprocess.CompletedProcess:
    """Run the command in `folder` (so no ./config.yaml applies) and return its result."""
    env = {**(env or os.environ), "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-c", preamble + CLI, *map(str, args)], cwd=folder, env=env,
        capture_output=True, text=True, timeout=300, **kwargs,
    )


def start_occupancy(*args, folder: Path, env=None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", CLI, *map(str, args)], cwd=folder, env={**(env or os.environ), "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def write_config(folder: Path, text: str) -> Path:
    path = folder / "test-config.yaml"
    path.write_text(text)
    return path


def logged_counts(db: Path) -> list[int]:
    conn = sqlite3.connect(db)
    try:
        return [row[0] for row in conn.execute("SELECT count FROM events ORDER BY start_utc, id")]
    finally:
        conn.close()


def assert_matches_truth(db: Path, seconds: int = 90) -> None:
    """Events and the hourly table agree with the sample's truth (its first `seconds`) within the stated tolerance."""
    truth, counts = load_truth()[:seconds], logged_counts(db)
    assert len(counts) == len(truth)
    exact = np.mean([c == t for c, t in zip(counts, truth)])
    assert exact >= 0.70, f"only {exact:.0%} of seconds counted exactly"
    hours = list(open_store(db, readonly=True).query("SELECT * FROM hourly"))
    windows = sum(h["windows"] for h in hours)
    assert windows == len(truth)
    assert sum(h["minutes_covered"] for h in hours) == pytest.approx(len(truth) / 60)
    assert sum(h["count_sum"] for h in hours) / windows == pytest.approx(np.mean(truth), abs=0.3)
    assert sum(h["speech_seconds"] for h in hours) == pytest.approx(sum(t >= 1 for t in truth), abs=5)
    assert max(h["peak_count"] for h in hours) >= max(truth)  # the busiest moment is not missed (3 is the top class)
    assert_log_consistent(db)


def test_replay_at_max_speed_logs_the_samples_truth(tmp_path):
    db = tmp_path / "log.db"
    result = occupancy(
        "replay", SAMPLE_AUDIO, "--speed", "max", "--db", db, "--start", START, "--headless", folder=tmp_path
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len([line for line in lines if " count " in line]) == 90
    assert [line[:30] for line in lines if line.startswith("-- minute")] == [
        "-- minute 2026-11-25 10:00Z: 6", "-- minute 2026-11-25 10:01Z: 3",
    ]
    assert_matches_truth(db)
    (hour,) = open_store(db, readonly=True)["hourly"].rows
    assert hour["hour_utc"] == START.replace(":00+00:00", ":00.000+00:00")
    (run,) = runs(open_store(db, readonly=True))
    assert (run["source"], run["device"], run["windows"]) == ("replay", "sample.flac", 90)
    assert run["stopped_utc"] is not None
    assert not [p for p in tmp_path.rglob("*") if p.suffix in (".wav", ".flac", ".raw")]  # no audio written


def test_monitor_captures_through_portaudio_and_records_only_when_asked(tmp_path):
    seconds = 30  # of the sample, in real time (0-2 voices; replays check all 90 s)
    audio = read_audio(SAMPLE_AUDIO)[: seconds * 16000]
    db, rec = tmp_path / "log.db", tmp_path / "rec"
    with alsa_paced_device(tmp_path, audio) as env:
        result = occupancy(
            "monitor", "--headless", "--device", DEVICE, "--duration", seconds, "--db", db, "--record", rec,
            folder=tmp_path, env=env,
        )
    assert result.returncode == 0, result.stderr
    assert f"capturing from {DEVICE} at 16000 Hz" in result.stderr
    assert_matches_truth(db, seconds)
    (run,) = runs(open_store(db, readonly=True))
    assert (run["source"], run["device"], run["overflows"], run["dropped"]) == ("microphone", DEVICE, 0, 0)
    (recording,) = rec.iterdir()
    recorded, rate = sf.read(recording, dtype="int16")
    assert rate == 16000 and np.array_equal(recorded, np.round(audio * 32768).astype(np.int16))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, pytest.param(signal.SIGINT, marks=pytest.mark.slow)])
def test_signals_stop_cleanly_with_everything_logged(tmp_path, sig):
    db = tmp_path / "log.db"
    proc = start_occupancy("replay", SAMPLE_AUDIO, "--speed", "realtime", "--db", db, "--headless", folder=tmp_path)
    printed = []  # until three windows are counted: it is running (a minute's summary may come between)
    while sum(" count " in line for line in printed) < 3:
        printed.append(proc.stdout.readline())
    proc.send_signal(sig)
    rest, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    windows = [line for line in printed + rest.splitlines() if " count " in line]
    assert 3 <= len(windows) < 90
    (run,) = runs(open_store(db, readonly=True))
    assert run["stopped_utc"] is not None
    assert run["windows"] == len(windows) == len(logged_counts(db))
    assert_log_consistent(db)


@pytest.mark.slow  # the default suite kills the writer itself: tests/test_store.py
def test_kill_9_mid_run_leaves_a_consistent_log(tmp_path):
    db = tmp_path / "log.db"
    proc = start_occupancy("replay", SAMPLE_AUDIO, "--speed", "realtime", "--db", db, folder=tmp_path)
    try:
        for _ in range(3):
            proc.stdout.readline()
        time.sleep(1.5)  # at least one batch committed after those windows
    finally:
        proc.kill()
        proc.communicate()
    assert logged_counts(db)
    assert_log_consistent(db)
    (run,) = runs(open_store(db, readonly=True))
    assert run["stopped_utc"] is None


@pytest.mark.slow  # the default suite checks the store's own error: tests/test_store.py
def test_read_only_log_is_a_one_line_error(open_folder):
    db = open_folder / "ro" / "log.db"
    open_store(db).close()
    make_read_only(db)
    try:
        result = run_unprivileged(
            [sys.executable, "-m", "occupancy.cli", "replay", SAMPLE_AUDIO, "--speed", "max", "--db", db]
        )
    finally:
        db.parent.chmod(0o755)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line == f"occupancy: error: {db}: the database is read-only (check the file's and folder's permissions)"


def test_monitor_without_input_device_replays_the_sample(tmp_path):
    db = tmp_path / "log.db"
    result = occupancy("monitor", "--headless", "--duration", 3, "--db", db, folder=tmp_path, preamble=HIDE_PORTAUDIO)
    assert result.returncode == 0, result.stderr
    assert "PortAudio is not installed" in result.stderr
    assert "replaying the bundled sample in real time instead (demo)" in result.stderr
    (run,) = runs(open_store(db, readonly=True))
    assert (run["source"], run["device"], run["windows"]) == ("demo", "sample.flac", 3)


def test_devices_lists_the_input_and_a_wrong_name_is_one_line(tmp_path):
    env = alsa_file_device(tmp_path, np.zeros(16000, np.float32))
    listed = occupancy("devices", folder=tmp_path, env=env)
    assert listed.returncode == 0 and DEVICE in listed.stdout
    wrong = occupancy("monitor", "--device", "no-such-mic", "--db", tmp_path / "log.db", folder=tmp_path, env=env)
    assert wrong.returncode == 2
    (line,) = wrong.stderr.strip().splitlines()
    assert line.startswith("occupancy: error: 'no-such-mic' is not an input device (available: ")


@pytest.mark.skipif(not sex_model_path().exists(), reason="no sex-composition model shipped in models/")
def test_replay_with_sex_logs_and_prints_women_and_men(tmp_path):
    db = tmp_path / "log.db"
    result = occupancy("replay", SAMPLE_AUDIO, "--speed", "max", "--db", db, "--headless", "--sex", folder=tmp_path)
    assert result.returncode == 0, result.stderr
    assert len([line for line in result.stdout.splitlines() if " women " in line]) == 90
    rows = list(open_store(db, readonly=True).query("SELECT count, women, men FROM events"))
    assert len(rows) == 90 and all(r["women"] + r["men"] == r["count"] for r in rows)
    assert any(r["women"] for r in rows) and any(r["men"] for r in rows)
    (run,) = runs(open_store(db, readonly=True))
    assert run["model"] == "counter-sex"
    plain = tmp_path / "plain.db"  # without --sex nothing about sex is estimated or stored
    assert occupancy("replay", SAMPLE_AUDIO, "--speed", "max", "--db", plain, folder=tmp_path).returncode == 0
    assert {(r["women"], r["men"]) for r in open_store(plain, readonly=True)["events"].rows} == {(None, None)}


def test_sex_with_a_model_without_that_head_is_one_line(tmp_path):
    config = write_config(tmp_path, f"model:\n  path: {default_model_path()}\n  sex: true\n")
    result = occupancy("--config", config, "replay", SAMPLE_AUDIO, "--speed", "max", "--db", tmp_path / "l.db",
                       folder=tmp_path)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "no sex-composition head, which --sex (model.sex) needs" in line and "counter.safetensors" in line
