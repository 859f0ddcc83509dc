"""Model files, read without a model runtime: what a model's JSON says, whether its weights are
readable, and where its ONNX companion is.

A model is `<name>.safetensors` (the weights PyTorch trains and loads) beside `<name>.json` (what
it is and how good) and `<name>.onnx` (the same network for ONNX Runtime, written by
`occupancy export --onnx`, which records the sha256 of the weights it was made from, so a companion
left behind by retraining is refused instead of counting with old weights). The shipped models and
the speech gate's ONNX model are package data (occupancy/models/shipped), so any install counts.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ..errors import ModelError
from ..paths import DEFAULT_MODEL, SEX_MODEL

# Every architecture a model file may name (models/architectures.py builds them; this list needs no torch).
ARCHITECTURES = ("M3", "M5", "M11", "M18", "M34-res", "arch1", "arch2", "arch3", "melconv")
DEFAULT_ARCHITECTURE = "melconv"
FORMAT_VERSION = 1
REQUIRED_KEYS = ("architecture", "arch_kwargs", "classes", "sample_rate", "window_s")


def default_model_path() -> Path:
    """The shipped counter (package data): what monitor, replay and classify use."""
    return DEFAULT_MODEL


def sex_model_path() -> Path:
    """The shipped model with the sex-composition head (package data)."""
    return SEX_MODEL


def metadata_path(weights: str | Path) -> Path:
    return Path(weights).with_suffix(".json")


def onnx_path(weights: str | Path) -> Path:
    return Path(weights).with_suffix(".onnx")


def export_command(weights: str | Path) -> str:
    """The command that (re)writes the ONNX companion of `weights`."""
    return f"occupancy export --onnx --model {weights}"


def read_metadata(weights: str | Path) -> dict[str, Any]:
    """The JSON beside `weights`, checked for the keys needed to rebuild the network."""
    file = metadata_path(weights)
    if not file.is_file():
        raise ModelError(f"{file}: model metadata file not found (it must sit beside the weights)")
    try:
        meta = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{file}: unreadable model metadata ({exc})") from None
    if not isinstance(meta, dict):
        raise ModelError(f"{file}: model metadata must be a JSON object")
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        raise ModelError(f"{file}: model metadata lacks {', '.join(missing)}")
    if meta["architecture"] not in ARCHITECTURES:
        raise ModelError(f"{file}: unknown architecture '{meta['architecture']}' (known: {', '.join(ARCHITECTURES)})")
    if not isinstance(meta["classes"], list) or len(meta["classes"]) < 2:
        raise ModelError(f"{file}: 'classes' must be a list of at least two counts")
    return meta


def check_weights(weights: str | Path) -> None:
    """Refuse a missing weights file, or one safetensors cannot read (truncated, another format such
    as a pickle); only its header is read, so nothing in it is ever executed."""
    from safetensors import SafetensorError, safe_open

    weights = Path(weights)
    if not weights.is_file():
        raise ModelError(f"{weights}: model file not found")
    try:
        with safe_open(str(weights), framework="numpy"):
            pass
    except (SafetensorError, OSError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelError(f"{weights}: not a readable safetensors file ({reason})") from None


def weights_sha256(weights: str | Path) -> str:
    """The sha256 of a weights file, which its ONNX companion records."""
    digest = hashlib.sha256()
    with open(weights, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
