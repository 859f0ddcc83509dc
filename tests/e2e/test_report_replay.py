"""`occupancy report` on a log filled by the real engine: the bundled sample replayed at several times.

The replays run the installed console script (capture -> worker -> store, the monitor's own path);
the report's numbers are checked against the raw events it wrote.
"""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.conftest import local_timezone
from occupancy.cli import COMMAND_MODULES, main
from occupancy.models import default_model_path
from occupancy.sample import SAMPLE_AUDIO, load_truth

from tests.reporting.test_report import assert_periods_match, expected_periods

ZONE = "America/New_York"  # UTC-5 in November
# Monday across an hour boundary, Tuesday evening (the sample twice in a row), Saturday morning.
REPLAYS = [("2026-11-23T09:59:30+00:00", 1), ("2026-11-24T18:20:00+00:00", 2), ("2026-11-28T11:00:00+00:00", 1)]

pytestmark = pytest.mark.skipif(
    not default_model_path().exists() or "occupancy.cli.engine" not in COMMAND_MODULES,
    reason="needs the engine's replay command and the shipped model models/counter.safetensors",
)


def occupancy_exe() -> str:
    return shutil.which("occupancy", path=str(Path(sys.executable).parent)) or "occupancy"


@pytest.fixture(autouse=True)
def new_york(monkeypatch):
    yield from local_timezone(monkeypatch, ZONE)


@pytest.fixture(scope="module")
def replayed_db(tmp_path_factory):
    path = tmp_path_factory.mktemp("replay") / "log.db"
    for start, copies in REPLAYS:
        proc = subprocess.run(
            [occupancy_exe(), "replay", *[str(SAMPLE_AUDIO)] * copies, "--speed", "max", "--start", start, "--db", str(path)],
            capture_output=True, text=True, timeout=300,
        )
        assert proc.returncode == 0, proc.stderr
    return path


def report_json(capsys, db, *args: str) -> dict:
    code = main(["report", "--db", str(db), "--format", "json", *args])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


@pytest.mark.parametrize("by", ["hour", "day", "weekday-hour"])
def test_report_matches_the_replayed_events(capsys, replayed_db, by):
    data = report_json(capsys, replayed_db, "--by", by, "--min-coverage", "1")
    assert_periods_match(data["periods"], expected_periods(replayed_db, by, ZoneInfo(ZONE), min_coverage=1))


def test_every_replayed_second_is_covered(capsys, replayed_db):
    data = report_json(capsys, replayed_db, "--by", "day")
    seconds = len(load_truth()) * sum(copies for _, copies in REPLAYS)
    assert sum(p["minutes_covered"] for p in data["periods"]) == pytest.approx(seconds / 60)
    assert [p["period"] for p in data["periods"]] == ["2026-11-23", "2026-11-24", "2026-11-28"]
    assert all(p["low_coverage"] for p in data["periods"])  # minutes of audio per day: flagged, not "quiet"
    assert data["busiest"] == [] and data["quietest"] == []


def test_alerts_follow_the_smoothed_count(capsys, replayed_db):
    alerts = report_json(capsys, replayed_db, "--capacity-limit", "2", "--alert-seconds", "0", "--utc")["alerts"]
    with sqlite3.connect(replayed_db) as conn:
        above = conn.execute("SELECT count(*), max(smoothed) FROM events WHERE smoothed > 2").fetchone()
    assert above[0] > 0, "the sample has stretches of 3 voices"
    assert max(a["peak_smoothed"] for a in alerts) == above[1]
    assert sum(a["duration_s"] for a in alerts) >= above[0]  # windows are 1 s long, hop 1 s


def test_plot_of_the_replays(capsys, replayed_db, tmp_path):
    import matplotlib.image

    png = tmp_path / "replays.png"
    assert main(["report", "--db", str(replayed_db), "--plot", str(png)]) == 0
    assert matplotlib.image.imread(png).shape[:2] == (900, 1200)


def test_report_while_a_replay_is_writing(tmp_path):
    """The monitor's writer holds the log open and commits every second; a report reads it meanwhile."""
    path = tmp_path / "live.db"
    live = subprocess.Popen(
        [occupancy_exe(), "replay", str(SAMPLE_AUDIO), "--speed", "realtime", "--start", "2026-11-25T12:00:00+00:00",
         "--db", str(path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        for _ in range(600):  # the first batch, once the model is loaded
            if live.poll() is not None or _windows(path) >= 3:
                break
            time.sleep(0.1)
        assert live.poll() is None, "the replay ended before the report could run"
        report = subprocess.run(
            [occupancy_exe(), "report", "--db", str(path), "--format", "json", "--utc"],
            capture_output=True, text=True, timeout=120,
        )
        assert report.returncode == 0, report.stderr
        assert json.loads(report.stdout)["periods"][0]["period"] == "2026-11-25 12:00"
        assert live.poll() is None, "the replay was still writing while the report read"
    finally:
        live.send_signal(signal.SIGTERM)
        _, err = live.communicate(timeout=60)
    assert live.returncode == 0, err


def _windows(path: Path) -> int:
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            return conn.execute("SELECT count(*) FROM events").fetchone()[0]
    except sqlite3.Error:
        return 0  # not created or not migrated yet
