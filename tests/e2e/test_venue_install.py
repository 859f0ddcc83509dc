"""A venue's install, as the README shows it: the wheel of this checkout `pip install`ed into a fresh
virtual environment, without extras. It counts the bundled sample with `classify` and `replay` out of
the box (the models are package data), never imports torch (which it does not have), and fits on disk.
pip downloads the dependencies from the package index the first time, then takes them from its cache.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from occupancy.models import load_counter
from occupancy.sample import sample_windows

REPO = Path(__file__).resolve().parents[2]
INSTALL_MB = 400  # the bar for the venue install on disk

# Runs a command of the installed package, then fails if torch was imported on the way.
RUN_WITHOUT_TORCH = """
import sys
from occupancy.cli import main
code = main(sys.argv[1:])
assert "torch" not in sys.modules, "torch was imported"
sys.exit(code)
"""


def _run(command: list, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=900, **kwargs)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def venue(tmp_path_factory) -> dict:
    """A fresh venv with the wheel installed: its python, its folder, the environment to run it in."""
    work = tmp_path_factory.mktemp("venue")
    source = work / "source"  # a copy, so building leaves no build/ or egg-info in the checkout
    shutil.copytree(REPO / "occupancy", source / "occupancy", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copyfile(REPO / name, source / name)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "-q", "-w",
          work / "wheels", source])
    (wheel,) = (work / "wheels").glob("occupancy-*.whl")
    venv = work / "venv"
    _run([sys.executable, "-m", "venv", venv])
    python = venv / "bin" / "python"
    _run([python, "-m", "pip", "install", "--disable-pip-version-check", "-q", wheel])
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "OCCUPANCY_CONFIG", "VIRTUAL_ENV")}
    sample = _run([python, "-c", "from occupancy.sample import SAMPLE_AUDIO; print(SAMPLE_AUDIO)"],
                  env=env, cwd=work).stdout.strip()
    assert sample.startswith(str(venv))  # the installed package's data, not this checkout's
    return {"python": python, "venv": venv, "env": env, "sample": sample}


def venue_run(venue: dict, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return _run([venue["python"], "-c", RUN_WITHOUT_TORCH, *args], env=venue["env"], cwd=cwd)


def test_the_venue_install_has_no_torch_and_fits_on_disk(venue):
    _run([venue["python"], "-c", "import importlib.util as u; assert u.find_spec('torch') is None"], env=venue["env"])
    size_mb = int(_run(["du", "-sm", venue["venv"]]).stdout.split()[0])
    assert size_mb <= INSTALL_MB, f"the venue install takes {size_mb} MB"


def test_the_venue_install_classifies_the_sample_as_this_checkout_does(venue, tmp_path):
    proc = venue_run(venue, "classify", "--json", venue["sample"], cwd=tmp_path)
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    theirs = np.array([row["probabilities"] for row in rows])
    ours = load_counter(runtime="onnx").predict(sample_windows())
    assert [row["count"] for row in rows] == ours.argmax(1).tolist()
    np.testing.assert_allclose(theirs, ours, atol=2e-3)  # JSON rounds to 4 decimals


def test_the_venue_install_replays_the_sample_into_its_log_and_reports_it(venue, tmp_path):
    db = tmp_path / "venue.db"
    venue_run(venue, "replay", "--speed", "max", "--start", "2026-11-25T18:00:00", "--db", str(db), venue["sample"],
              cwd=tmp_path)
    with sqlite3.connect(db) as conn:
        counts = [row[0] for row in conn.execute("SELECT count FROM events ORDER BY start_utc")]
    assert counts == load_counter(runtime="onnx").predict(sample_windows()).argmax(1).tolist()
    report = venue_run(venue, "report", "--db", str(db), "--utc", cwd=tmp_path)
    assert "2026-11-25 18:00" in report.stdout
    help_text = _run([venue["venv"] / "bin" / "occupancy", "--help"], env=venue["env"], cwd=tmp_path).stdout
    assert "monitor" in help_text and "classify" in help_text


def test_the_venue_install_has_no_psycopg_and_sync_says_what_to_install(venue, tmp_path):
    _run([venue["python"], "-c", "import importlib.util as u; assert u.find_spec('psycopg') is None"], env=venue["env"])
    (tmp_path / "config.yaml").write_text("monitor:\n  venue: Library\n")
    (tmp_path / "o.db").touch()
    proc = subprocess.run([venue["venv"] / "bin" / "occupancy", "sync", "--db", "o.db", "--to", "postgresql://fleet@db/fleet"],
                          capture_output=True, text=True, env=venue["env"], cwd=tmp_path, timeout=300)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "pip install 'occupancy[fleet]'" in proc.stderr
