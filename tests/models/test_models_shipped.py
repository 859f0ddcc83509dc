"""The shipped default counter against the issue's bars on the speaker-disjoint test split (slow)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch", reason="needs PyTorch: the train extra (pip install .[train])")

from occupancy.config import load_config  # noqa: E402
from occupancy.engine.loading import gate_rule  # noqa: E402
from occupancy.lab.evaluate import BARS, TEST_SETS, evaluate_windows, mixture_windows  # noqa: E402
from occupancy.models import default_model_path, load_counter  # noqa: E402

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def config():
    return load_config(REPO / "config.yaml")  # its data paths point at ../shared/data


@pytest.fixture(scope="module")
def counter(config):
    if not default_model_path().is_file():
        pytest.skip("no model installed in models/")
    return load_counter(device="cpu", vad=config.model.vad, gate_rule=gate_rule(config.model), threads=1)


# The bars are not met yet (models/RESULTS.md: 89.0 / 77.5 / 88.9 %). strict: the day a model meets
# them this test reports XPASS as a failure, so the marker is removed and the bar then guards it.
@pytest.mark.xfail(strict=True, reason="the shipped counter is below the issue's bars (models/RESULTS.md)")
@pytest.mark.parametrize("set_name", list(TEST_SETS))
def test_shipped_counter_meets_the_bar(counter, config, shared_data, set_name):
    windows, counts = mixture_windows(config, length=1000, seed=1234, max_speakers=3, **TEST_SETS[set_name])
    result = evaluate_windows(counter, windows, counts)
    assert result["counter"]["accuracy"] >= BARS[set_name], result["counter"]
