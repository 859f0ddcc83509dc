"""`occupancy export --onnx`: the count network as an ONNX file, checked against PyTorch.

What is exported is the count network alone (float32 windows [B, 16000] -> logits [B, classes]);
the shipped counter's VAD gate (silero-vad) stays outside it, as it is a model of its own. The
check runs the bundled sample through the network in PyTorch and in onnxruntime and requires the
same count for every window, so a runtime that only has ONNX counts exactly like the monitor's
network does.

The dynamo exporter (with onnxscript) is used because the log-mel front end computes an STFT with
complex values, which the older TorchScript exporter cannot translate.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from ..engine.loading import load_counter_from_config
from ..config import Config, override
from ..errors import ModelError
from ..paths import WINDOW
from ..sample import sample_windows

log = logging.getLogger(__name__)


class ExportError(ModelError):
    """The model cannot be exported, or the exported file does not count like the original."""


class _CountLogits(torch.nn.Module):
    """The network with only its count head's output (a sex-composition head is left out)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        out = self.model(windows)
        return out[0] if isinstance(out, tuple) else out


def export_onnx(model: torch.nn.Module, path: str | Path) -> Path:
    """Write `model` as ONNX with a variable batch size: input 'windows', output 'logits'."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The exporter's progress notes and its "torchvision is not installed" warnings are not the user's concern.
    for noisy, level in (("torch.onnx", logging.ERROR), ("onnxscript", logging.WARNING), ("onnx_ir", logging.WARNING)):
        logging.getLogger(noisy).setLevel(level)
    batch = torch.export.Dim("batch", max=4096)
    try:
        torch.onnx.export(
            _CountLogits(model.cpu()).eval(), (torch.zeros(2, WINDOW),), str(path),
            input_names=["windows"], output_names=["logits"], dynamic_shapes=({0: batch},),
            dynamo=True, verbose=False, optimize=True,
        )
    except ImportError as exc:
        raise ExportError(f"ONNX export needs the onnx and onnxscript packages ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - the exporter raises many kinds; the user gets one line
        raise ExportError(f"cannot export the network to ONNX: {str(exc).splitlines()[0]}") from None
    return path


class OnnxNetwork:
    """An exported network in onnxruntime, with the Counter's `count_probabilities` interface."""

    def __init__(self, path: str | Path, threads: int = 0):
        try:
            import onnxruntime as ort
        except ImportError:
            raise ExportError("onnxruntime is not installed (pip install onnxruntime)") from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime's own exception types
            raise ExportError(f"{path}: onnxruntime cannot load it ({str(exc).splitlines()[0]})") from None
        self.path = Path(path)

    def count_probabilities(self, windows: np.ndarray) -> np.ndarray:
        """Softmax of the logits, float32 [B, classes]."""
        logits = self.session.run(None, {"windows": np.ascontiguousarray(windows, dtype=np.float32)})[0]
        return torch.softmax(torch.from_numpy(logits), dim=1).numpy()


def compare_counts(counter, network: OnnxNetwork, windows: np.ndarray) -> dict:
    """How many windows get the same count from the PyTorch network and the ONNX one."""
    ours = counter.count_probabilities(windows)
    theirs = network.count_probabilities(windows)
    return {
        "windows": len(windows),
        "same_count": int((ours.argmax(1) == theirs.argmax(1)).sum()),
        "max_probability_difference": float(np.abs(ours - theirs).max()),
    }


def export_and_check(config: Config, out: str | Path | None = None) -> Path:
    """Export `model.path`'s network (default: beside it, .onnx) and check it counts the bundled sample
    exactly like PyTorch; ExportError otherwise."""
    config = override(config, "model", device="cpu", vad=False, sex=False)
    counter = load_counter_from_config(config.model)
    out = Path(out) if out else counter.path.with_suffix(".onnx")
    export_onnx(counter.model, out)
    check = compare_counts(counter, OnnxNetwork(out), sample_windows())
    print(f"written: {out} ({out.stat().st_size / 1e6:.1f} MB, input 'windows' [batch, {WINDOW}] float32, "
          f"output 'logits' [batch, {len(counter.classes)}], classes {counter.classes})")
    print(f"check on the bundled sample: {check['same_count']}/{check['windows']} windows give the same count "
          f"(largest probability difference {check['max_probability_difference']:.2e})")
    if check["same_count"] != check["windows"]:
        raise ExportError(f"{out}: onnxruntime counts {check['windows'] - check['same_count']} of "
                          f"{check['windows']} sample windows differently from PyTorch")
    return out
