"""`occupancy export --voices`: build the shipped voices model, `occupancy/models/shipped/voices.onnx`.

It is one ONNX graph: Resemblyzer's GE2E speaker encoder (3-layer LSTM 40 -> 256, a linear layer on
the last hidden state, ReLU, unit length; Apache-2.0, weights from the Resemblyzer 0.1.4 wheel, read
with torch.load(weights_only=True)) followed by our projection (models/voices-projection.safetensors:
a mean and a 256 x D matrix fitted on training speakers by lab/voices/projection.py) and unit length
again. Input 'mels' [B, frames, 40] (models/voices.py computes them), output 'voiceprint' [B, D].

The LSTM's second and third layers and the output matrices are then quantised to int8 per channel
(ONNX Runtime's dynamic quantisation): half the cost. The first layer stays float: its input, power
mel bands without a log, spans too wide a range for per-tensor activation scales (quantised, its
1-s equal-error rate rose from 5 % to 16-34 %). The file is checked against the float network
before it is written; its metadata holds the settings models/voices.py reads and the sha256 of both
sources.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file
from safetensors import safe_open

from ...errors import ModelError
from ...models.voices import N_MELS, SETTINGS_KEY, VOICES_MODEL, VoiceEncoder, voice_features
from ...paths import MODELS_DIR, SHIPPED_DIR
from ...sample import sample_windows

PROJECTION = MODELS_DIR / "voices-projection.safetensors"
LICENSE = SHIPPED_DIR / "RESEMBLYZER_LICENSE"
RESEMBLYZER = "Resemblyzer 0.1.4"
RESEMBLYZER_PACKAGE = "resemblyzer"  # the import name its weights are found under
INSTALL_HINT = "pip install --no-deps resemblyzer==0.1.4 (only its weights file is read)"
MIN_COSINE = 0.99  # the quantised file's voiceprints against the float network's, on the bundled sample
# (measured 0.9947-0.998; two voices are told apart at a cosine of about 0.2)


class ExportError(ModelError):
    """The voices model cannot be built, or the built file does not embed like the float network."""


class GE2EWithProjection(torch.nn.Module):
    """Resemblyzer's encoder, then (x - mean) @ matrix, unit length: [B, frames, 40] -> [B, D]."""

    def __init__(self, mean: np.ndarray, matrix: np.ndarray):
        super().__init__()
        self.lstm = torch.nn.LSTM(N_MELS, 256, 3, batch_first=True)
        self.linear = torch.nn.Linear(256, 256)
        self.register_buffer("mean", torch.from_numpy(np.asarray(mean, np.float32)))
        self.register_buffer("matrix", torch.from_numpy(np.asarray(matrix, np.float32)))

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        _, (hidden, _) = self.lstm(mels)
        ge2e = torch.relu(self.linear(hidden[-1]))
        ge2e = ge2e / torch.linalg.vector_norm(ge2e, dim=1, keepdim=True).clamp_min(1e-12)
        projected = (ge2e - self.mean) @ self.matrix
        return projected / torch.linalg.vector_norm(projected, dim=1, keepdim=True).clamp_min(1e-12)


def resemblyzer_weights() -> Path:
    """The weights file inside the installed Resemblyzer package (found, not imported: its import
    needs librosa and webrtcvad, which nothing here uses)."""
    spec = importlib.util.find_spec(RESEMBLYZER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ExportError(f"the voices model is built from Resemblyzer's weights: {INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / "pretrained.pt"
    if not path.is_file():
        raise ExportError(f"{path}: Resemblyzer's weights file is missing; reinstall: {INSTALL_HINT}")
    return path


def read_projection(path: Path = PROJECTION) -> tuple[np.ndarray, np.ndarray, dict]:
    """The projection's mean [256], matrix [256, D] and metadata (how it was fitted, its threshold)."""
    if not path.is_file():
        raise ExportError(f"{path}: projection file not found (fit it with `occupancy export --voices --fit`)")
    tensors = load_file(str(path))
    with safe_open(str(path), framework="numpy") as fh:
        meta = fh.metadata() or {}
    return tensors["mean"], tensors["matrix"], json.loads(meta.get("fit", "{}"))


def ge2e_network(weights: Path, mean: np.ndarray | None = None, matrix: np.ndarray | None = None) -> GE2EWithProjection:
    """Resemblyzer's encoder followed by a projection; without one, the raw GE2E voiceprint (the
    projection's fit embeds with this)."""
    mean = np.zeros(256, np.float32) if mean is None else mean
    matrix = np.eye(256, dtype=np.float32) if matrix is None else matrix
    checkpoint = torch.load(weights, map_location="cpu", weights_only=True)
    state = {k: v for k, v in checkpoint["model_state"].items() if k.startswith(("lstm.", "linear."))}
    network = GE2EWithProjection(mean, matrix)
    missing, unexpected = network.load_state_dict(state, strict=False)
    if unexpected or set(missing) != {"mean", "matrix"}:
        raise ExportError(f"{weights}: not Resemblyzer's GE2E encoder (missing {missing}, unexpected {unexpected})")
    return network.eval()


def build_network(weights: Path, projection: Path = PROJECTION) -> tuple[GE2EWithProjection, dict]:
    mean, matrix, fit = read_projection(projection)
    return ge2e_network(weights, mean, matrix), fit


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def export_voices(out: Path = VOICES_MODEL, projection: Path = PROJECTION) -> Path:
    """Build, quantise, check and write the voices model; also copy Resemblyzer's licence beside it."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    weights = resemblyzer_weights()
    network, fit = build_network(weights, projection)
    windows = sample_windows()
    example = torch.from_numpy(voice_features(windows[:2]))
    with tempfile.TemporaryDirectory() as tmp:
        float_file, quantised = Path(tmp) / "float.onnx", Path(tmp) / "voices.onnx"
        with warnings.catch_warnings():  # the exporter's note on LSTM batch sizes: the check below covers it
            warnings.simplefilter("ignore")
            torch.onnx.export(network, (example,), str(float_file), input_names=["mels"], output_names=["voiceprint"],
                              dynamic_axes={"mels": {0: "batch", 1: "frames"}, "voiceprint": {0: "batch"}},
                              opset_version=17, dynamo=False)
        first_lstm = next(n.name for n in onnx.load(str(float_file)).graph.node if n.op_type == "LSTM")
        root, level = logging.getLogger(), logging.getLogger().level
        root.setLevel(logging.ERROR)  # its advice to pre-process the graph (root logger) is not the user's concern
        try:
            quantize_dynamic(str(float_file), str(quantised), per_channel=True, weight_type=QuantType.QInt8,
                             nodes_to_exclude=[first_lstm])
        finally:
            root.setLevel(level)
        model = onnx.load(str(quantised))
        settings = {
            "encoder": f"{RESEMBLYZER} GE2E (Apache-2.0), int8 except its first LSTM layer",
            "encoder_sha256": sha256(weights),
            "projection_sha256": sha256(projection),
            "dimensions": int(network.matrix.shape[1]),
            "threshold": float(fit["threshold"]),
            "interleave": float(fit["interleave"]),
            "sample_rate": 16000,
            "window_s": 1.0,
            "fit": fit,
        }
        onnx.helper.set_model_props(model, {SETTINGS_KEY: json.dumps(settings)})
        onnx.save(model, str(quantised))
        _check(network, quantised, windows)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(quantised, out)
    licence = weights.parent.parent / "Resemblyzer-0.1.4.dist-info" / "LICENSE"
    if licence.is_file():
        shutil.copyfile(licence, LICENSE)
    return out


def _check(network: GE2EWithProjection, file: Path, windows: np.ndarray) -> None:
    """The file's voiceprints must point where the float network's do (cosine >= MIN_COSINE)."""
    with torch.inference_mode():
        expected = network(torch.from_numpy(voice_features(windows))).numpy()
    got = VoiceEncoder(file).embed(windows)
    worst = float((expected * got).sum(axis=1).min())
    print(f"check, bundled sample: {len(windows)} windows, lowest cosine to the float network {worst:.4f}")
    if worst < MIN_COSINE:
        raise ExportError(f"the quantised voices model drifts from the float network (cosine {worst:.4f} < {MIN_COSINE})")
