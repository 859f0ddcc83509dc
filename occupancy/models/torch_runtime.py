"""The counter on PyTorch: what training, evaluation, export, bench and the CUDA path run.

The same two stages as the ONNX runtime (counter.py says how they combine), from the same model
file: the network rebuilt from its safetensors weights, silero-vad's TorchScript build as the gate.
"""

from __future__ import annotations

import threading
import warnings
from pathlib import Path

import numpy as np
import torch

from ..paths import SAMPLE_RATE
from .counter import VAD_FRAME, Counter, GateRule, level_for_gate
from .device import keep_freed_memory, pick_device
from .io import load_model


class SpeechGate:
    """silero-vad over batches of 1-s windows: one speech probability per window (max over frames).

    It takes windows `BATCH` at a time: its 31 frames are 31 sequential steps, each cheaper per
    window in a bigger batch (measured on 2 CPU cores: 3,300 windows/s in batches of 256, 2,400/s in
    batches of 64).
    """

    BATCH = 256

    def __init__(self):
        threads = torch.get_num_threads()
        from silero_vad import load_silero_vad  # its import sets torch to 1 thread: undo that

        torch.set_num_threads(threads)
        with warnings.catch_warnings():  # silero-vad's deprecation notices are not the user's concern
            warnings.simplefilter("ignore")
            self.model = load_silero_vad()
        self._lock = threading.Lock()  # silero-vad keeps state between calls: one batch at a time

    def speech_probability(self, windows: np.ndarray, enough: float | None = None) -> np.ndarray:
        """Each window's highest frame score [B].

        With `enough`, scoring a batch stops as soon as every window has a frame scoring at least that
        (each window's figure is then its highest so far): whether a window reaches `enough` is
        unchanged, and speech usually does within its first frames, so the gate rarely needs all 31.
        """
        x = torch.from_numpy(level_for_gate(windows))
        with torch.inference_mode(), self._lock:
            out = [self._batch(b, enough) for b in torch.split(x, self.BATCH)]
        return torch.cat(out).numpy() if out else np.zeros(0, np.float32)

    def _batch(self, windows: torch.Tensor, enough: float | None) -> torch.Tensor:
        self.model.reset_states()
        best = torch.zeros(len(windows))
        for i in range(windows.shape[1] // VAD_FRAME):
            best = torch.maximum(best, self.model(windows[:, i * VAD_FRAME:(i + 1) * VAD_FRAME], SAMPLE_RATE)[:, 0])
            if enough is not None and bool((best >= enough).all()):
                break
        return best


class TorchCounter(Counter):
    """The network in PyTorch, `batch_size` windows at a time. 64 is among the fastest on CPU
    (measured on 2 cores: 2,950 windows/s, against 2,200/s in batches of 256, whose
    spectrogram-sized intermediates no longer fit the caches)."""

    def __init__(self, model: torch.nn.Module, metadata: dict, path: Path, device: torch.device,
                 gate: SpeechGate | None, gate_rule: GateRule, batch_size: int = 64):
        super().__init__(metadata, path, device, gate, gate_rule)
        self.model = model.to(device).eval()
        self.batch_size = batch_size

    def _network(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        counts, sexes = [], []
        with torch.inference_mode():
            for batch in torch.split(torch.from_numpy(windows), self.batch_size):
                out = self.model(batch.to(self.device))
                logits, sex = out if isinstance(out, tuple) else (out, None)
                counts.append(torch.softmax(logits.float(), dim=1).cpu())
                if sex is not None:
                    sexes.append(torch.softmax(sex.float(), dim=2).cpu())
        if not counts:
            return np.zeros((0, len(self.classes)), np.float32), None
        return torch.cat(counts).numpy(), (torch.cat(sexes).numpy() if sexes else None)


def load_torch_counter(weights: Path, device: str, vad: bool, gate_rule: GateRule, threads: int) -> TorchCounter:
    """The model file in PyTorch on `device`; `threads` 0 keeps torch's."""
    if threads > 0:
        torch.set_num_threads(threads)
    keep_freed_memory()
    model, metadata = load_model(weights)
    chosen = pick_device(device)
    return TorchCounter(model, metadata, weights, chosen, SpeechGate() if vad else None, gate_rule)
