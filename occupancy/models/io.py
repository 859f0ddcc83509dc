"""Model files in PyTorch: `<name>.safetensors` (weights) beside `<name>.json` (files.py reads that).

Weights are read with safetensors only, so loading never unpickles code. The JSON says which
architecture to build; every tensor must then be present with the exact shape that architecture
expects. Any mismatch, a truncated file or a file in another format is a ModelError naming it.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ..errors import ModelError
from .architectures import CountNet, build_model
from .files import FORMAT_VERSION, REQUIRED_KEYS, check_weights, metadata_path, read_metadata

log = logging.getLogger(__name__)


def model_kwargs(metadata: dict[str, Any]) -> dict[str, Any]:
    """Arguments of build_model() recorded in a model's metadata."""
    return {
        "arch": metadata["architecture"],
        "n_classes": len(metadata["classes"]),
        "sex_head": bool(metadata.get("sex_head", False)),
        "max_speakers": int(metadata.get("max_speakers", len(metadata["classes"]) - 1)),
        **metadata["arch_kwargs"],
    }


def save_model(model: torch.nn.Module, weights: str | Path, metadata: dict[str, Any]) -> Path:
    """Write the weights and the JSON beside them; `metadata` must hold REQUIRED_KEYS."""
    weights = Path(weights)
    missing = [k for k in REQUIRED_KEYS if k not in metadata]
    if missing:
        raise ValueError(f"model metadata lacks {', '.join(missing)}")
    weights.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in _unwrap(model).state_dict().items()}
    save_file(state, str(weights))
    meta = {"format_version": FORMAT_VERSION, "name": weights.stem,
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), **metadata}
    metadata_path(weights).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return weights


def load_model(weights: str | Path) -> tuple[CountNet, dict[str, Any]]:
    """Rebuild the network its metadata names and fill it from the safetensors file (eval mode)."""
    weights = Path(weights)
    check_weights(weights)
    meta = read_metadata(weights)
    try:
        model = build_model(**model_kwargs(meta))
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{metadata_path(weights)}: arch_kwargs do not fit '{meta['architecture']}' ({exc})") from None
    state = load_file(str(weights))
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        detail = f"missing {', '.join(missing[:3])}" if missing else f"unexpected {', '.join(extra[:3])}"
        raise ModelError(f"{weights}: weights do not match architecture '{meta['architecture']}' ({detail})")
    for key, tensor in expected.items():
        if state[key].shape != tensor.shape:
            raise ModelError(
                f"{weights}: tensor '{key}' has shape {tuple(state[key].shape)}, "
                f"architecture '{meta['architecture']}' needs {tuple(tensor.shape)}"
            )
    model.load_state_dict(state)
    model.eval()
    log.debug("loaded %s (%s)", weights, meta["architecture"])
    return model, meta


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module inside a DistributedDataParallel wrapper."""
    return getattr(model, "module", model)
