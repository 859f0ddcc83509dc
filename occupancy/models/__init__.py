"""Counting networks for inference: the architecture registry, model files, and the loaded counter.

    from occupancy.models import load_counter
    counter = load_counter()              # models/counter.safetensors, with the VAD gate
    probs = counter.predict(windows)      # float32 [B, 16000] -> [B, len(counter.classes)]
"""

from .architectures import ARCHITECTURES, DEFAULT_ARCHITECTURE, build_model, count_parameters
from .counter import Counter, default_model_path, load_counter, sex_model_path
from .io import load_model, read_metadata, save_model

__all__ = [
    "ARCHITECTURES",
    "DEFAULT_ARCHITECTURE",
    "Counter",
    "build_model",
    "count_parameters",
    "default_model_path",
    "load_counter",
    "load_model",
    "read_metadata",
    "save_model",
    "sex_model_path",
]
