"""The test suite itself writes only into its own temporary folders (issue 26): a representative run of it,
as a child pytest with a HOME and a TMPDIR of its own, leaves both as empty as it found them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Tests that write where programs write by default: matplotlib's cache (a plot), the simulated rooms'
# cache (a mixer with reverberation; skipped without the train extra), a replay into a log and its audio.
REPRESENTATIVE = [
    "tests/reporting/test_report.py::test_plot_writes_one_png_of_the_documented_size",
    "tests/lab/test_scenes.py::test_a_scene_is_fixed_by_its_seed_and_labels_each_of_its_seconds",
    "tests/e2e/test_report_replay.py::test_every_replayed_second_is_covered",
]


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if not p.is_dir())


def test_a_test_run_leaves_home_and_the_temporary_folder_as_it_found_them(tmp_path):
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    tmp.mkdir()
    env = {name: value for name, value in os.environ.items() if not name.startswith(("XDG_", "MPL"))}
    env.update(HOME=str(home), TMPDIR=str(tmp), PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", *REPRESENTATIVE],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout
    assert files_under(home) == []
    assert files_under(tmp) == []
