"""Faults and bad input, end to end through `occupancy replay` into a real SQLite log: each gives a
one-line error and exit 2, or a graceful recovery, and nothing already logged is lost.

Faults whose tests live elsewhere (not repeated here):
  corrupt, truncated, zero-length files (reader) tests/test_audio.py::test_bad_files_give_one_line_errors,
                                          ::test_truncated_flac_is_reported;
                            (classify CLI)  tests/test_cli.py::test_classify_bad_input_exits_2_with_one_line
  8-bit, 24-bit, float, stereo, 8/44.1/48 kHz (reader) tests/test_audio.py::test_any_common_format_becomes_16k_mono
  NaN / inf samples (reader)               tests/test_audio.py::test_nan_and_infinite_samples_become_silence
  database locked (writer's error)         tests/test_store.py::test_locked_database_is_a_one_line_error
  disk full (SQLITE_FULL in a batch)       tests/test_store.py::test_disk_full_loses_only_the_batch_in_progress
  SIGTERM, SIGINT during replay --speed realtime
                                           tests/test_engine.py::test_signals_stop_cleanly_with_everything_logged
  kill -9                                  tests/test_engine.py::test_kill_9_mid_run_leaves_a_consistent_log,
                                           tests/test_store.py::test_kill_9_while_writing_leaves_a_consistent_log
  capture device vanishing mid-stream      tests/test_capture.py::test_a_lost_stream_is_reported_and_reopened
  bad config                               tests/test_config.py::test_bad_config_gives_one_line_and_exit_2,
                                           ::test_console_script_bad_config_has_no_traceback
  model truncated / wrong shapes / pickle (PyTorch loader) tests/test_models.py::test_truncated_weights_are_refused,
                                           ::test_wrong_shapes_are_refused,
                                           ::test_pickle_renamed_safetensors_is_refused_without_unpickling
  NaN/inf/1e9 settings, impossible sample rates, FIFOs, foreign databases, a log deleted or replaced
  mid-run, runs over time already logged, reports on read-only and full disks, SIGHUP, a microphone
  faster than real time                    tests/e2e/test_abuse.py (issue 20)
  power cut                                tests/e2e/test_power_cut.py
Here: the same faults through the replay command and the log (bad files before and during a replay,
every input format and broken samples counted and logged, clipping, a writer that holds the lock
for a while, a really full file system, a device gone for a while under a running pipeline, bad
model files given to the monitor's loader) and, for months unattended, retention keeping the log
bounded (the store's own rule: tests/test_store.py::test_retention_deletes_whole_old_hours_and_keeps_their_rollup).
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from occupancy.engine.audio import read_audio
from occupancy.cli import main
from occupancy.models import default_model_path, sex_model_path
from occupancy.sample import SAMPLE_AUDIO, load_truth
from occupancy.engine.store import open_store, runs
from tests.alsa_device import alsa_file_device
from tests.e2e.test_engine import CLI, logged_counts
from tests.engine.test_store import assert_log_consistent

REPO = Path(__file__).resolve().parents[2]
START = "2026-11-25T10:00:00+00:00"
LATER = "2026-11-25T11:00:00+00:00"  # a replay into a copy of `logged`: time it does not hold yet
SECONDS = len(load_truth())  # 90 windows in the sample

pytestmark = pytest.mark.skipif(not default_model_path().is_file(), reason="needs the shipped model")


def replay(db: Path, *files, capsys, extra=(), start=START) -> tuple[int, list[str]]:
    """`occupancy replay --speed max` in this process; returns the exit code and the stderr lines."""
    code = main([*extra, "replay", *map(str, files), "--speed", "max", "--start", start, "--db", str(db)])
    return code, capsys.readouterr().err.strip().splitlines()


def run_rows(db: Path) -> list[dict]:
    """The log's runs, newest first, through a connection closed at once (the log may sit on a tmpfs
    that is unmounted next)."""
    store = open_store(db, readonly=True)
    try:
        return runs(store)
    finally:
        store.close()


def errors(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("occupancy: error:")]


@pytest.fixture(scope="module")
def logged(tmp_path_factory) -> Path:
    """A log holding one clean replay of the sample (copied by tests that must not lose it)."""
    db = tmp_path_factory.mktemp("logged") / "log.db"
    code = main(["replay", str(SAMPLE_AUDIO), "--speed", "max", "--start", START, "--db", str(db)])
    assert code == 0
    return db


def copy_of(logged: Path, folder: Path) -> Path:
    db = folder / "log.db"
    shutil.copyfile(logged, db)
    return db


def sample_file(path: Path, rate: int = 16000, subtype: str = "PCM_16", channels: int = 1, change=None) -> Path:
    """The sample at another rate / sample format / channel count, optionally altered first."""
    audio = read_audio(SAMPLE_AUDIO).astype(np.float64)
    if change is not None:
        audio = change(audio)
    if rate != 16000:
        audio = soxr.resample(audio, 16000, rate)
    sf.write(path, np.stack([audio] * channels, axis=1) if channels > 1 else audio, rate, subtype=subtype)
    return path


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("empty.wav", lambda ok: b"", "empty file (0 bytes)"),
        ("truncated.wav", lambda ok: ok[: len(ok) // 3], "truncated WAV file"),
        ("corrupt.flac", lambda ok: b"fLaC" + bytes(range(256)) * 8, "not a readable audio file"),
    ],
)
def test_a_bad_file_stops_the_replay_before_it_logs_anything(tmp_path, logged, capsys, name, content, message):
    db = copy_of(logged, tmp_path)
    good = sample_file(tmp_path / "ok.wav")
    bad = tmp_path / name
    bad.write_bytes(content(good.read_bytes()))
    code, err = replay(db, good, bad, capsys=capsys)
    assert code == 2
    (line,) = errors(err)
    assert line.startswith(f"occupancy: error: {bad}: {message}")
    assert len(run_rows(db)) == 1  # no run started: every file is checked first
    assert logged_counts(db) == logged_counts(logged)


def test_a_file_corrupt_past_its_header_keeps_what_was_counted(tmp_path, logged, capsys):
    db = copy_of(logged, tmp_path)
    whole = sample_file(tmp_path / "whole.flac")
    cut = tmp_path / "cut.flac"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 2 // 3])  # header says 90 s, data stops early
    code, err = replay(db, cut, capsys=capsys, start=LATER)
    assert code == 2
    (line,) = errors(err)  # reported once, by the command
    assert line.startswith(f"occupancy: error: {cut}: truncated or corrupt audio")
    before = len(logged_counts(logged))
    (new_run, _) = run_rows(db)
    assert new_run["stopped_utc"] is not None  # the run was closed, its windows flushed
    assert 0 < new_run["windows"] < SECONDS
    assert len(logged_counts(db)) == before + new_run["windows"]
    assert_log_consistent(db)


@pytest.fixture(scope="module")
def reference_counts(logged) -> list[int]:
    return logged_counts(logged)


@pytest.mark.parametrize(
    "rate, subtype, channels, same_counts",
    [
        (8000, "PCM_U8", 1, None),  # telephone band and 8-bit noise: fewer cues to count by (61 % the same)
        (44100, "PCM_24", 2, 0.95),  # measured: 100 % the same counts as the 16 kHz original
        (48000, "FLOAT", 2, 0.95),
    ],
)
def test_every_input_format_is_counted(tmp_path, capsys, reference_counts, rate, subtype, channels, same_counts):
    path = sample_file(tmp_path / f"sample_{rate}_{subtype}.wav", rate, subtype, channels)
    db = tmp_path / "log.db"
    code, err = replay(db, path, capsys=capsys)
    assert code == 0, err
    counts, truth = np.array(logged_counts(db)), np.array(load_truth())
    assert len(counts) == SECONDS
    assert np.mean((counts > 0) == (truth > 0)) >= 0.85  # speech and silence told apart (8 kHz: 96 %)
    if same_counts is not None:
        assert np.mean(counts == reference_counts) >= same_counts
    assert_log_consistent(db)


def test_nan_and_infinite_samples_are_counted_as_silence(tmp_path, capsys):
    def spoil(audio):
        audio = audio.copy()
        audio[10 * 16000 : 12 * 16000] = np.nan  # two whole seconds of NaN
        audio[20 * 16000 + 100] = np.inf
        audio[30 * 16000 + 100] = -np.inf
        return audio

    path = sample_file(tmp_path / "nan.wav", subtype="FLOAT", change=spoil)
    db = tmp_path / "log.db"
    code, err = replay(db, path, capsys=capsys)
    assert code == 0
    assert any("NaN or infinite samples replaced by silence" in line for line in err)
    rows = list(open_store(db, readonly=True).query("SELECT * FROM events ORDER BY start_utc"))
    assert len(rows) == SECONDS
    assert [rows[10]["count"], rows[11]["count"]] == [0, 0]
    for row in rows:
        assert np.isfinite(row["level_dbfs"]) and np.isfinite(row["smoothed"])
        probs = json.loads(row["probabilities"])
        assert all(np.isfinite(probs)) and sum(probs) == pytest.approx(1, abs=1e-3)
    assert_log_consistent(db)


def test_clipped_audio_is_still_counted(tmp_path, capsys):
    path = sample_file(tmp_path / "clipped.wav", change=lambda a: np.clip(a * 30, -1, 1))  # +30 dB into the rails
    db = tmp_path / "log.db"
    code, err = replay(db, path, capsys=capsys)
    assert code == 0, err
    counts, truth = np.array(logged_counts(db)), np.array(load_truth())
    assert len(counts) == SECONDS
    assert np.mean((counts > 0) == (truth > 0)) >= 0.85  # speech and silence still told apart (measured: 99 %)
    assert_log_consistent(db)


def test_a_writer_holding_the_lock_briefly_is_waited_for(tmp_path, logged, capsys):
    db = copy_of(logged, tmp_path)
    other = sqlite3.connect(db, check_same_thread=False)
    other.execute("BEGIN EXCLUSIVE")  # another program writes for 2 s, less than the busy timeout
    release = threading.Timer(2.0, other.rollback)
    release.start()
    try:
        code, err = replay(db, SAMPLE_AUDIO, capsys=capsys, start=LATER)
    finally:
        release.join()
        other.close()
    assert code == 0 and not errors(err)
    assert len(logged_counts(db)) == 2 * SECONDS
    assert_log_consistent(db)


def test_a_writer_holding_the_lock_too_long_is_a_one_line_error(tmp_path, logged, capsys):
    db = copy_of(logged, tmp_path)
    other = sqlite3.connect(db)
    other.execute("BEGIN EXCLUSIVE")
    try:
        code, err = replay(db, SAMPLE_AUDIO, capsys=capsys)
    finally:
        other.rollback()
        other.close()
    assert code == 2
    assert errors(err)[-1] == (f"occupancy: error: {db}: the database is locked by another program "
                               "(is another monitor or replay writing it?)")
    assert logged_counts(db) == logged_counts(logged)
    assert_log_consistent(db)


@pytest.fixture(scope="module")
def full_disk_run(tmp_path_factory, logged):
    """A replay of 12 x the sample into a log on a 256 kB file system, in a child process.

    A real tmpfs when this process may mount one (root in a container usually may), else a file-size
    limit (ulimit -f) on the child with SIGXFSZ ignored, so its writes fail with EFBIG.
    """
    folder = tmp_path_factory.mktemp("disk")
    disk = folder / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)],
                             capture_output=True).returncode == 0
    db = copy_of(logged, disk)
    config = folder / "config.yaml"
    config.write_text("storage:\n  flush_interval_s: 0.1\n")  # small batches: several fit before the disk is full
    command = [sys.executable, "-c", CLI, "--config", str(config), "replay", *[str(SAMPLE_AUDIO)] * 12, "--speed", "max",
               "--start", "2026-11-26T10:00:00+00:00", "--db", str(db)]
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=300, cwd=folder,
            env={**os.environ, "PYTHONPATH": str(REPO)}, preexec_fn=None if mounted else _limit_file_size,
        )
        yield mounted, db, result, logged_counts(db)
    finally:
        if mounted:
            subprocess.run(["umount", "--lazy", str(disk)], check=True)


def _limit_file_size():
    import resource
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, 256 * 1024))


def test_a_full_disk_is_one_line_and_keeps_the_log(full_disk_run, logged, tmp_path):
    mounted, db, result, counts = full_disk_run
    assert result.returncode == 2
    (last,) = errors(result.stderr.strip().splitlines())
    assert last.startswith(f"occupancy: error: {db}: ")
    if mounted:
        assert "disk full: the batch in progress was not written, everything logged before is intact" in last
    assert "Traceback" not in result.stderr
    before = len(logged_counts(logged))
    assert before < len(counts) < before + 12 * SECONDS  # earlier batches of this run are kept
    (new_run, _) = run_rows(db)
    assert new_run["windows"] == len(counts) - before
    assert_log_consistent(moved_off_the_full_disk(db, tmp_path))  # the check itself writes (hourly rebuild)


def moved_off_the_full_disk(db: Path, folder: Path) -> Path:
    """A copy of the log (with its write-ahead log, which holds the latest batches) somewhere with room."""
    for suffix in ("", "-wal"):
        if Path(f"{db}{suffix}").exists():
            shutil.copyfile(f"{db}{suffix}", folder / f"{db.name}{suffix}")
    return folder / db.name


def test_the_closing_summary_counts_only_committed_windows(full_disk_run):
    _, db, result, _ = full_disk_run
    (new_run, _) = run_rows(db)
    assert f"{new_run['windows']} windows logged" in result.stderr


def _bad_model(folder: Path, kind: str) -> Path:
    """The shipped counter's files under another name, with one fault."""
    path = folder / "model.safetensors"
    shipped = default_model_path()
    for suffix in (".json", ".onnx"):
        shutil.copyfile(shipped.with_suffix(suffix), path.with_suffix(suffix))
    shutil.copyfile(shipped, path)
    if kind == "truncated":
        path.write_bytes(path.read_bytes()[:1000])
    elif kind == "no ONNX companion":
        path.with_suffix(".onnx").unlink()
    elif kind == "stale ONNX companion":
        shutil.copyfile(sex_model_path(), path)  # retrained weights, their ONNX companion not rebuilt
    else:  # a pickle that runs code when unpickled, under the model's name
        marker = folder / "pickle-ran"

        class Payload:
            def __reduce__(self):
                return (Path.touch, (marker,))

        path.write_bytes(pickle.dumps({"weights": Payload()}))
    return path


@pytest.mark.parametrize(
    "kind, suffix, message",
    [
        ("truncated", ".safetensors", "not a readable safetensors file"),
        ("pickle payload", ".safetensors", "not a readable safetensors file"),
        ("no ONNX companion", ".safetensors", "no ONNX companion (model.onnx)"),
        ("stale ONNX companion", ".onnx", "out of date"),
    ],
)
def test_a_bad_model_file_is_refused_before_the_log_is_touched(tmp_path, logged, capsys, kind, suffix, message):
    """The monitor's loader on a CPU (ONNX Runtime); the PyTorch loader's own refusals (wrong shapes
    among them) are tested in tests/models/test_models.py."""
    db = copy_of(logged, tmp_path)
    model = _bad_model(tmp_path, kind)
    config = tmp_path / "config.yaml"
    config.write_text(f"model:\n  path: {model}\n")
    code, err = replay(db, SAMPLE_AUDIO, capsys=capsys, extra=["--config", str(config)])
    assert code == 2
    (line,) = errors(err)
    assert line.startswith(f"occupancy: error: {model.with_suffix(suffix)}: ") and message in line
    if "ONNX" in kind:
        assert f"occupancy export --onnx --model {model}" in line  # the command that rebuilds it
    assert not (tmp_path / "pickle-ran").exists()
    assert len(run_rows(db)) == 1
    assert logged_counts(db) == logged_counts(logged)


VANISH_SCRIPT = textwrap.dedent(
    """
    import json, pathlib, sys, time
    import sounddevice as sd
    from occupancy.engine.capture import MicSource
    from occupancy.config import Config
    from occupancy.models import load_counter
    from occupancy.engine.pipeline import Pipeline

    conf = pathlib.Path(sys.argv[2])
    device_conf = conf.read_text()

    class VanishingMic(MicSource):
        vanish_at = None  # monotonic time the device disappears (as when it is unplugged)

        def _callback(self, indata, frames, time_info, status):
            if self.vanish_at and time.monotonic() >= self.vanish_at:
                self.vanish_at = None
                conf.write_text("")  # the device is gone from ALSA's configuration too
                raise sd.CallbackAbort
            super()._callback(indata, frames, time_info, status)

    mic = VanishingMic("occfile")
    pipeline = Pipeline(Config(), mic, load_counter(), db_path=sys.argv[1])
    events = []
    pipeline.subscribe(events.append)
    pipeline.start()
    while len(events) < 3:
        time.sleep(0.05)
    mic.vanish_at = time.monotonic()
    statuses = []
    deadline = time.monotonic() + 30
    while not any("no audio input device found" in s for s in statuses) and time.monotonic() < deadline:
        statuses.append(mic.status)
        time.sleep(0.05)
    before = len(events)
    conf.write_text(device_conf)  # plugged in again
    while mic.restarts == 0 and time.monotonic() < deadline:
        statuses.append(mic.status)
        time.sleep(0.05)
    while len(events) < before + 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    pipeline.stop()
    pipeline.close()
    print(json.dumps({"statuses": sorted(set(statuses)), "restarts": mic.restarts, "events": len(events),
                      "logged": pipeline.writer.windows}))
    """
)


def test_a_device_gone_for_a_while_is_retried_and_the_log_goes_on(tmp_path):
    env = alsa_file_device(tmp_path, read_audio(SAMPLE_AUDIO)[: 5 * 16000])
    db = tmp_path / "log.db"
    conf = tmp_path / "asound.conf"
    result = subprocess.run([sys.executable, "-c", VANISH_SCRIPT, str(db), str(conf)], env=env, cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["restarts"] == 1
    assert any(s.startswith("input error: no audio input device found; retrying in") for s in report["statuses"])
    assert "retrying in" in result.stderr
    (run,) = run_rows(db)
    assert run["restarts"] == 1 and run["stopped_utc"] is not None
    assert run["windows"] == report["events"] == len(logged_counts(db))
    assert_log_consistent(db)


def test_retention_keeps_a_months_long_log_bounded(tmp_path, capsys):
    """Unattended for months, the disk must not fill slowly: old events go, their hourly rollup stays."""
    db = tmp_path / "log.db"
    long_ago = (datetime.now(UTC) - timedelta(days=60)).replace(minute=0, second=0, microsecond=0)
    assert main(["replay", str(SAMPLE_AUDIO), "--speed", "max", "--start", long_ago.isoformat(), "--db", str(db)]) == 0
    config = tmp_path / "config.yaml"
    config.write_text("storage:\n  retention_days: 30\n")
    code, err = replay(db, SAMPLE_AUDIO, capsys=capsys, extra=["--config", str(config)])  # the next run starts
    assert code == 0
    assert any(f"retention: deleted {SECONDS} events older than" in line for line in err)
    store = open_store(db, readonly=True)
    assert [row["start_utc"][:10] for row in store.query("SELECT DISTINCT substr(start_utc, 1, 10) AS start_utc "
                                                            "FROM events")] == [START[:10]]
    hours = {row["hour_utc"][:13]: row["windows"] for row in store.query("SELECT * FROM hourly")}
    assert hours[long_ago.isoformat()[:13]] == SECONDS  # the old traffic is still reported
