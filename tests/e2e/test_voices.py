"""Distinct voices (opt-in) through the real commands: `replay` and `classify` on the bundled sample (0-3
LibriSpeech voices in turn), checked for what the stage adds, for what it must never leave behind (a
voiceprint in the log, on stdout/stderr or in any file), and for changing nothing when it is off."""

from __future__ import annotations

import json
import os
import re
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from occupancy.engine.audio import file_windows
from occupancy.engine.store import open_store
from occupancy.models.voices import VoiceEncoder
from occupancy.sample import SAMPLE_AUDIO
from tests.e2e.test_engine import START, occupancy, write_config

# Columns the log had before the stage (schema m001-m003): with it off, nothing else may differ.
NEW_COLUMNS = {"events": {"voices"}, "hourly": {"distinct_voices_peak", "distinct_voices_mean", "distinct_voices_seconds"}}


def replay(folder: Path, *flags) -> tuple[Path, object]:
    """`occupancy replay` of the sample at max speed into folder/log.db, with HOME in the folder too."""
    folder.mkdir()
    (folder / "home").mkdir()
    db = folder / "log.db"
    result = occupancy("replay", SAMPLE_AUDIO, "--speed", "max", "--start", START, "--db", db, "--headless", *flags,
                       folder=folder, env={**os.environ, "HOME": str(folder / "home")})
    assert result.returncode == 0, result.stderr
    return db, result


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same replay with the stage off and on, and classify with it on."""
    root = tmp_path_factory.mktemp("voices")
    off, on = replay(root / "off"), replay(root / "on", "--voices", "--voices-minutes", "2")
    classified = occupancy("classify", SAMPLE_AUDIO, "--voices", "--json", folder=root)
    assert classified.returncode == 0, classified.stderr
    return root, off, on, classified


def rows(db: Path, table: str) -> list[dict]:
    return list(open_store(db, readonly=True).query(f"SELECT * FROM {table} ORDER BY 1"))


def voiceprints(db: Path) -> np.ndarray:
    """The voiceprints of the windows the replay counted as one voice, computed here one by one."""
    counts = [row["count"] for row in rows(db, "events")]
    windows = [w.samples for w, count in zip(file_windows(SAMPLE_AUDIO), counts) if count == 1]
    assert len(windows) >= 20
    encoder = VoiceEncoder()
    return np.concatenate([encoder.embed(w[None]) for w in windows])


def runs_of(values: np.ndarray, prints: np.ndarray, width: int = 8, atol: float = 1e-4) -> bool:
    """Whether `values` hold `width` consecutive components of any voiceprint (within `atol`: a voiceprint
    embedded in another batch may differ in its last bits)."""
    for start in range(0, prints.shape[1] - width + 1, width):
        probe = prints[:, start:start + width]
        first = np.isclose(values[: len(values) - width + 1, None], probe[None, :, 0], atol=atol).any(axis=1)
        if any(np.isclose(values[i:i + width][None], probe, atol=atol).all(axis=1).any() for i in np.flatnonzero(first)):
            return True
    return False


def holds_voiceprint(data: bytes, prints: np.ndarray) -> bool:
    """Whether `data` holds part of a voiceprint as float32 or float64 at any byte alignment."""
    for dtype in (np.float32, np.float64):
        size = np.dtype(dtype).itemsize
        for offset in range(size):
            usable = (len(data) - offset) // size * size
            values = np.frombuffer(data[offset:offset + usable], dtype=dtype).astype(np.float64)
            if runs_of(np.nan_to_num(values), prints):
                return True
    return False


def prints_voiceprint(text: str, prints: np.ndarray) -> bool:
    """Whether `text` spells part of a voiceprint as decimal numbers."""
    numbers = np.array([float(x) for x in re.findall(r"-?\d*\.\d+(?:e-?\d+)?", text)])
    return len(numbers) > 0 and runs_of(numbers, prints, atol=1e-3)


def test_replay_logs_shows_and_rolls_up_the_figure(runs):
    _, _, (db, result), _ = runs
    events = rows(db, "events")
    assert len(events) == 90 and all(isinstance(e["voices"], int) for e in events)
    assert 1 <= max(e["voices"] for e in events) <= 3  # the sample has three talkers at most
    figures = [int(line.rsplit("voices ", 1)[1]) for line in result.stdout.splitlines() if " count " in line]
    assert figures == [e["voices"] for e in events]  # the headless line carries it
    (hour,) = rows(db, "hourly")
    assert hour["distinct_voices_peak"] == max(e["voices"] for e in events)
    assert hour["distinct_voices_mean"] == pytest.approx(np.mean([e["voices"] for e in events]))
    assert hour["distinct_voices_seconds"] == 90


def test_no_voiceprint_reaches_the_log_the_output_or_any_file(runs):
    root, _, (db, result), classified = runs
    prints = voiceprints(db)
    assert holds_voiceprint(b"junk" + prints[3, 40:60].tobytes() + b"x", prints)  # the search finds one ...
    assert holds_voiceprint(prints[5].astype(np.float64).tobytes()[3:], prints)  # ... in either width
    written = [p for p in root.rglob("*") if p.is_file()]
    assert {p.name for p in written} >= {"log.db"}
    for path in written:
        assert not holds_voiceprint(path.read_bytes(), prints), path
    assert not list((root / "on" / "home").rglob("*"))  # nothing cached or kept in the home folder
    assert prints_voiceprint(" ".join(f"{x:.4f}" for x in prints[7]), prints)
    for text in (result.stdout, result.stderr, classified.stdout, classified.stderr):
        assert not holds_voiceprint(text.encode(), prints) and not prints_voiceprint(text, prints)
    conn = sqlite3.connect(db)  # the log holds numbers and text only: the figure is an integer
    for table in ("events", "hourly", "runs"):
        for column in [c[1] for c in conn.execute(f"PRAGMA table_info({table})")]:
            kinds = {k for (k,) in conn.execute(f"SELECT DISTINCT typeof({column}) FROM {table}")}
            assert "blob" not in kinds, (table, column)
    assert {k for (k,) in conn.execute("SELECT DISTINCT typeof(voices) FROM events")} == {"integer"}
    conn.close()


def test_with_the_stage_off_nothing_changes(runs):
    _, (off, result), (on, _), _ = runs
    assert " voices " not in result.stdout
    before, after = rows(off, "events"), rows(on, "events")
    assert [e["count"] for e in before] == [e["count"] for e in after]
    assert [e["smoothed"] for e in before] == [e["smoothed"] for e in after]
    for a, b in zip(before, after):
        assert json.loads(a["probabilities"]) == pytest.approx(json.loads(b["probabilities"]), abs=2e-4)
    assert {e["voices"] for e in before} == {None}
    (hour,) = rows(off, "hourly")
    assert [hour[c] for c in sorted(NEW_COLUMNS["hourly"])] == [None] * 3
    conn = sqlite3.connect(off)
    for table, added in NEW_COLUMNS.items():
        columns = {c[1]: c for c in conn.execute(f"PRAGMA table_xinfo({table})")}
        assert all(columns[name][3] == 0 for name in added)  # nullable
    conn.close()


def test_classify_gives_each_file_its_own_figure(runs, tmp_path):
    _, _, (db, _), classified = runs
    lines = [json.loads(line) for line in classified.stdout.splitlines()]
    assert len(lines) == 90 and all(set(line) == {"path", "start_s", "end_s", "count", "probabilities", "voices"}
                                    for line in lines)
    assert 1 <= lines[-1]["voices"] <= 3
    twice = occupancy("classify", SAMPLE_AUDIO, SAMPLE_AUDIO, "--voices", "--json", folder=tmp_path)
    figures = [json.loads(line)["voices"] for line in twice.stdout.splitlines()]
    assert figures[:90] == figures[90:] == [line["voices"] for line in lines]  # the second file starts afresh


@pytest.mark.parametrize("args, message", [
    (["--voices-minutes", "0"], "occupancy: error: command line: --voices-minutes: must be between 1 and 60, got 0"),
    (["--voices-minutes", "ten"], "occupancy: error: command line: --voices-minutes: must be an integer, got 'ten'"),
])
def test_a_bad_horizon_is_one_line(tmp_path, args, message):
    result = occupancy("classify", SAMPLE_AUDIO, "--voices", *args, folder=tmp_path)
    assert result.returncode == 2 and result.stderr.strip() == message


def test_a_bad_setting_in_the_file_is_one_line(tmp_path):
    config = write_config(tmp_path, "monitor:\n  voices: yes please\n")
    result = occupancy("--config", config, "replay", SAMPLE_AUDIO, "--db", tmp_path / "l.db", folder=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == f"occupancy: error: {config}: monitor.voices: must be true or false, got 'yes please'"
