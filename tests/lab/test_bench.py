"""The benchmark runs end to end in quick mode and writes well-formed JSON (timings never asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="the benchmark compares with PyTorch: it needs the train extra")

from occupancy.lab.bench import TABLE  # noqa: E402
from occupancy.models import default_model_path  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(not default_model_path().is_file(), reason="needs the shipped model")
def test_quick_benchmark_script_measures_both_models(tmp_path):
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "benchmark.py"), "--quick", "--output", str(out)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "M5/def" in result.stdout and f"written: {out}" in result.stdout
    bench = json.loads(out.read_text())
    assert bench["quick"] is True
    for name in ("default", "M5"):
        figures = bench["models"][name]
        for part in ("counter", "network", "pytorch"):
            assert figures[part]["batched_windows_per_s"] > 0
            assert 0 < figures[part]["latency_p50_ms"] <= figures[part]["latency_p99_ms"]
        assert figures["replay"]["windows_logged"] == 90  # the whole sample, through the SQLite log
        assert figures["replay_voices"]["windows_logged"] == 90  # the same, as `replay --voices`
        # --duration 3 of the quick mode from the ALSA file device, which runs faster than real time: the
        # monitor keeps what the wall clock allows (1.1 s a second), so 2 whole windows
        assert 2 <= figures["monitor"]["windows_logged"] <= 3
        assert figures["monitor"]["peak_rss_mb"] > 50
        assert 0 < figures["monitor"]["start_s"] <= figures["monitor"]["first_window_s"]
        assert figures["same_as_pytorch"]["bundled sample"] == 1.0
        assert figures["latency"]["windows"] >= 1 and figures["latency"]["log_p99_ms"] > 0
        assert 0 <= figures["accuracy"]["bundled sample"] <= 1
        assert figures["load_s"] > 0
    assert bench["models"]["M5"]["model"].startswith("M5")
    assert bench["ratios_m5_over_default"]["replay.x_realtime"] > 0
    assert 0 < bench["program"]["help_s"] < 5 and 50 < bench["program"]["venue_install_mb"] < 1000
    targets = {key for key, _, target, _ in TABLE if target is not None}
    if not (REPO.parent / "shared" / "data").is_dir():  # a user's clone: no test mixtures to compare on
        targets.discard("same_as_pytorch.test mixtures")
    assert set(bench["targets"]) == targets
    assert all(isinstance(t["met"], bool) for t in bench["targets"].values())
