"""Which runtime counts: ONNX Runtime or PyTorch, picked and loaded here, apart from what the two share
(counter.py), so that neither runtime imports the module that imports it."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from ..errors import ModelError
from .counter import Counter, GateRule
from .files import default_model_path, sex_model_path

log = logging.getLogger(__name__)

RUNTIMES = ("onnx", "torch")


def cuda_available() -> bool:
    """Whether PyTorch is installed and sees a CUDA GPU. torch is imported only where the NVIDIA
    driver is loaded, so a CPU box (or an install without torch) decides without it."""
    if importlib.util.find_spec("torch") is None or not Path("/proc/driver/nvidia").exists():
        return False
    import torch

    return torch.cuda.is_available()


def load_counter(path: str | Path | None = None, device: str = "auto", vad: bool = True,
                 gate_rule: GateRule = GateRule(), threads: int = 0, sex: bool = False,
                 runtime: str | None = None) -> Counter:
    """Load a model file as a Counter; `threads` 0: all cores (ONNX Runtime) or torch's default.

    Without a path: the shipped counter, or with `sex` the shipped sex-composition model.
    `runtime` 'onnx' or 'torch'; by default PyTorch for CUDA (`device` 'cuda', or 'auto' with a CUDA
    GPU present) and ONNX Runtime on the CPU, which never imports torch.
    """
    weights = Path(path) if path is not None else sex_model_path() if sex else default_model_path()
    if path is None and not weights.is_file():
        raise ModelError(f"no trained model is installed (expected {weights}); train one with `occupancy train`")
    if runtime is None:
        runtime = "torch" if device == "cuda" or (device == "auto" and cuda_available()) else "onnx"
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    if runtime == "torch":
        from .torch_runtime import load_torch_counter

        counter = load_torch_counter(weights, device, vad, gate_rule, threads)
    else:
        from .onnx_runtime import load_onnx_counter

        counter = load_onnx_counter(weights, vad, gate_rule, threads)
    log.debug("counter %s on %s (%s), vad=%s", weights.stem, counter.device, runtime, vad)
    return counter
