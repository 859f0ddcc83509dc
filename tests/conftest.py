"""Shared fixtures: real data from ../shared when present, the bundled sample, temp configs; and a HOME of
the session's own, so that no test writes into the user's."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
# Where programs write into HOME when asked nothing else: the simulated rooms' cache (XDG_CACHE_HOME),
# matplotlib's font cache (MPLCONFIGDIR), the default log (~/.local/share); child processes inherit them.
HOME_VARIABLES = {"HOME": "", "XDG_CACHE_HOME": ".cache", "XDG_CONFIG_HOME": ".config", "XDG_DATA_HOME": ".local/share",
                  "MPLCONFIGDIR": ".config/matplotlib"}
_HOME = pytest.StashKey[tuple[Path, dict]]()


def pytest_configure(config: pytest.Config) -> None:
    """Before any test module is imported: HOME and the caches below it in a folder of this session's. pip
    keeps the user's download cache (the venue-install test would otherwise fetch every package each run)."""
    home = Path(tempfile.mkdtemp(prefix="occupancy-tests-home-"))
    config.stash[_HOME] = home, {name: os.environ.get(name) for name in [*HOME_VARIABLES, "PIP_CACHE_DIR"]}
    os.environ.setdefault("PIP_CACHE_DIR", str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pip"))
    for name, below in HOME_VARIABLES.items():
        os.environ[name] = str(home / below)


def pytest_unconfigure(config: pytest.Config) -> None:
    """The session's HOME removed and the user's variables as they were."""
    home, saved = config.stash[_HOME]
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (LibriSpeech subset, speechocean762, noise); skipped in a user's clone."""
    if not (SHARED_DATA / "librispeech-mini" / "LibriSpeech").is_dir():
        pytest.skip("needs ../shared/data (the project's speech corpus), absent in this clone")
    return SHARED_DATA


def local_timezone(monkeypatch: pytest.MonkeyPatch, zone: str) -> Iterator[None]:
    """Run a test in a fixed local time zone, whatever the machine's (for an autouse fixture)."""
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()
