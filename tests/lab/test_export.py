"""`occupancy export --onnx`: a real ONNX file that onnxruntime runs with the same counts as PyTorch."""

from __future__ import annotations

import numpy as np
import pytest

from occupancy.cli import main
from occupancy.lab.onnx import OnnxNetwork, sample_windows
from occupancy.models import default_model_path, load_counter

pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.skipif(not default_model_path().is_file(), reason="needs the shipped model")


def test_export_counts_the_sample_like_pytorch(tmp_path, capsys):
    out = tmp_path / "counter.onnx"
    assert main(["export", "--onnx", "--out", str(out)]) == 0
    assert "check on the bundled sample: 90/90 windows give the same count" in capsys.readouterr().out
    network = OnnxNetwork(out)
    windows = sample_windows()[:5]  # another batch size than the export's example
    ours = load_counter(vad=False).count_probabilities(windows)
    theirs = network.count_probabilities(windows)
    assert theirs.shape == (5, 4)
    assert np.array_equal(ours.argmax(1), theirs.argmax(1))
    np.testing.assert_allclose(theirs, ours, atol=1e-4)


def test_export_needs_a_format(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["export"])
    assert exit_.value.code == 2 and "--onnx" in capsys.readouterr().err
