"""Counting networks for inference: model files, the counter and its speech gate, in two runtimes.

    from occupancy.models import load_counter
    counter = load_counter()              # the shipped counter, with the VAD gate
    probs = counter.predict(windows)      # float32 [B, 16000] -> [B, len(counter.classes)]

Importing this package loads no model runtime: ONNX Runtime (onnx_runtime.py) or PyTorch
(torch_runtime.py, architectures.py, io.py) is imported when a counter or a network is built.
"""

from .counter import Counter, GateRule
from .runtimes import load_counter
from .files import ARCHITECTURES, DEFAULT_ARCHITECTURE, default_model_path, read_metadata, sex_model_path

__all__ = [
    "ARCHITECTURES",
    "DEFAULT_ARCHITECTURE",
    "Counter",
    "GateRule",
    "default_model_path",
    "load_counter",
    "read_metadata",
    "sex_model_path",
]
