"""`occupancy export --onnx`: a single-file ONNX companion beside the weights, checked against PyTorch,
that the CPU runtime then counts with; and the speech gate's ONNX model built from silero-vad's."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="exporting needs the train extra (pip install .[train])")

from occupancy.cli import main  # noqa: E402
from occupancy.lab.onnx import build_gate_model, install_model  # noqa: E402
from occupancy.models import default_model_path, load_counter  # noqa: E402
from occupancy.models.architectures import build_model  # noqa: E402
from occupancy.models.io import save_model  # noqa: E402
from occupancy.models.onnx_runtime import OnnxSpeechGate, import_onnxruntime  # noqa: E402
from occupancy.sample import sample_windows  # noqa: E402


@pytest.fixture
def no_corpus(tmp_path):
    """A config without the speech corpus: the check runs on the bundled sample only (the shipped
    counter's export was checked on 3,000 test mixtures too; tests/models/test_onnx_runtime.py keeps
    an eye on them)."""
    config = tmp_path / "config.yaml"
    config.write_text(f"data:\n  corpora: [{tmp_path / 'none'}]\n")
    return ["--config", str(config)]


def test_export_writes_one_checked_file_that_the_cpu_runtime_counts_with(tmp_path, no_corpus, capsys):
    weights = tmp_path / "mine.safetensors"
    for suffix in (".safetensors", ".json"):
        shutil.copyfile(default_model_path().with_suffix(suffix), weights.with_suffix(suffix))
    assert main([*no_corpus, "export", "--onnx", "--model", str(weights)]) == 0
    assert "check, bundled sample: 90/90 windows give the same count" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.glob("mine.*")) == ["mine.json", "mine.onnx", "mine.safetensors"]
    session = import_onnxruntime().InferenceSession(str(tmp_path / "mine.onnx"))
    assert [i.name for i in session.get_inputs()] == ["features"]  # the log-mel front end is numpy's
    windows = sample_windows()[:5]  # another batch size than the export's example
    ours = load_counter(weights, runtime="onnx").predict(windows)
    theirs = load_counter(weights, device="cpu", runtime="torch").predict(windows)
    assert np.array_equal(ours.argmax(1), theirs.argmax(1))
    np.testing.assert_allclose(ours, theirs, atol=1e-4)
    assert [p.name for p in install_model(weights, tmp_path / "shipped")] == ["mine.safetensors", "mine.json",
                                                                              "mine.onnx"]


def test_a_raw_waveform_network_is_exported_whole(tmp_path, no_corpus, capsys):
    torch.manual_seed(0)
    meta = {"architecture": "M3", "arch_kwargs": {}, "classes": [0, 1, 2, 3], "sample_rate": 16000, "window_s": 1.0}
    weights = save_model(build_model("M3").eval(), tmp_path / "m3.safetensors", meta)
    assert main([*no_corpus, "export", "--onnx", "--model", str(weights)]) == 0
    session = import_onnxruntime().InferenceSession(str(tmp_path / "m3.onnx"))
    assert [i.name for i in session.get_inputs()] == ["windows"]
    windows = sample_windows()
    np.testing.assert_allclose(load_counter(weights, vad=False).count_probabilities(windows),
                               load_counter(weights, vad=False, runtime="torch").count_probabilities(windows), atol=1e-4)


def test_an_export_that_does_not_count_like_pytorch_is_refused_and_removed(tmp_path, no_corpus, capsys, monkeypatch):
    monkeypatch.setattr("occupancy.lab.onnx.PROBABILITY_TOLERANCE", 0.0)
    weights = tmp_path / "mine.safetensors"
    for suffix in (".safetensors", ".json"):
        shutil.copyfile(default_model_path().with_suffix(suffix), weights.with_suffix(suffix))
    assert main([*no_corpus, "export", "--onnx", "--model", str(weights)]) == 2
    (error,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("occupancy: error:")]
    assert "mine.onnx: ONNX Runtime does not count like PyTorch on the bundled sample" in error
    assert not (tmp_path / "mine.onnx").exists()


def test_the_gate_model_is_rebuilt_from_silero_vads_and_scores_like_its_torchscript(tmp_path):
    from occupancy.models.torch_runtime import SpeechGate

    gate = build_gate_model(tmp_path / "gate.onnx")
    assert "MIT License" in (tmp_path / "SILERO_VAD_LICENSE").read_text()
    windows = sample_windows()
    ours = OnnxSpeechGate(gate).speech_probability(windows)
    theirs = SpeechGate().speech_probability(windows)
    np.testing.assert_allclose(ours, theirs, atol=1e-4)
    assert 0 < (ours >= 0.5).sum() < len(windows)


def test_export_needs_a_format(capsys):
    assert main(["export"]) == 2
    err = capsys.readouterr().err
    assert "--onnx" in err and "--voices" in err
