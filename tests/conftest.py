"""Shared fixtures: real data from ../shared when present, the bundled sample, temp configs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


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
