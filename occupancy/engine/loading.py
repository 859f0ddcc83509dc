"""The one place a counter (`model.*` in config.yaml) and the distinct-voices stage (`monitor.voices`)
are built from the settings.

The engine reaches the models only through this module, so the monitor, replay, classify, evaluate,
export and bench all load the same counter the same way.
"""

from __future__ import annotations

import os

from ..config import ModelConfig, MonitorConfig
from ..errors import ModelError
from .voices import VoicesStage


def gate_rule(model: ModelConfig):
    """The speech gate's rule from `model.vad_threshold`, `vad_loud_threshold` and `vad_quiet_dbfs`."""
    from ..models import GateRule

    return GateRule(model.vad_threshold, model.vad_loud_threshold, model.vad_quiet_dbfs)


def load_counter_from_config(model: ModelConfig, *, live: bool = False, runtime: str | None = None):
    """The counter `model` describes (with `model.sex`, the shipped sex-composition model unless
    `model.path` names another). `live` (monitor, replay): unless `model.threads` says otherwise,
    inference gets all cores but one, left for capture and the log writer. `runtime` (see
    load_counter): by default ONNX Runtime on the CPU, PyTorch for CUDA; the lab asks for 'torch'."""
    from ..models import load_counter, sex_model_path  # the model runtime only when a counter is wanted

    threads = model.threads or (max(1, (os.cpu_count() or 2) - 1) if live else 0)
    counter = load_counter(
        path=model.path, device=model.device, vad=model.vad, gate_rule=gate_rule(model), threads=threads,
        sex=model.sex, runtime=runtime,
    )
    if model.sex and not counter.has_sex_head:
        raise ModelError(f"{counter.path}: this model has no sex-composition head, which --sex (model.sex) needs "
                         f"(such as {sex_model_path().name}, trained with --sex-head)")
    return counter


def load_voices_from_config(monitor: MonitorConfig) -> VoicesStage | None:
    """The distinct-voices stage over `monitor.voices_minutes`, or None when `monitor.voices` is off (the
    default: then the voices model is not even loaded)."""
    if not monitor.voices:
        return None
    from ..models.voices import DistinctVoices, VoiceEncoder  # its runtime only when the stage is wanted

    return VoicesStage(DistinctVoices(VoiceEncoder(), horizon_s=monitor.voices_minutes * 60.0))
