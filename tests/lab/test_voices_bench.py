"""`occupancy bench` gains the distinct-voices stage's CPU time per one-voice second (bar: 5 ms)."""

from __future__ import annotations

import pytest

pytest.importorskip("torch", reason="the benchmark compares with PyTorch: it needs the train extra")

from occupancy.lab.bench import SIZES, TABLE, targets, voices_cost  # noqa: E402
from occupancy.models.voices import VOICES_MODEL  # noqa: E402


@pytest.mark.skipif(not VOICES_MODEL.is_file(), reason="needs the shipped voices model")
def test_the_quick_bench_measures_the_voices_stage_against_its_bar():
    figure = voices_cost(SIZES[True]["voice_seconds"])
    assert figure["cpu_ms_per_voice_s"] > 0 and figure["voiceprints_held"] == SIZES[True]["voice_seconds"]
    row = next(r for r in TABLE if r[0] == "program.voices.cpu_ms_per_voice_s")
    assert row[2:] == (5, False)
    verdict = targets({}, {"voices": figure})["program.voices.cpu_ms_per_voice_s"]
    assert verdict["target"] == "<= 5" and isinstance(verdict["met"], bool)
