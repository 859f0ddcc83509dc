"""The shipped counter: a voice-activity gate (silero-vad) in front of the count network.

How the two stages combine, for each 1-s window:
1. The window is brought towards -20 dBFS RMS, with at most +10 dB of gain: silero-vad misses quiet
   speech heard as recorded, but levelling a quiet room by up to +50 dB (the earlier choice, tuned on
   simulated rooms) made it hear speech in 27 of 146 silent seconds of real far-field meetings
   (82.1 % of their seconds right, against 88.9 % with +10 dB, the same network). On our own
   simulated rooms the cap costs 4.5 points of reverberant speech found; real rooms are the judge
   (models/RESULTS.md, "The gate's gain").
2. silero-vad scores each of the window's 31 frames of 512 samples (its state reset at the window's
   start); the window's speech probability is the highest frame score.
3. If that is below `vad_threshold`, nobody is speaking: the window's probabilities are exactly
   one-hot on count 0. (Windows the network already counts as 0 keep the network's probabilities:
   the gate could not change their count, so it is not run on them.)
4. Otherwise the count network's softmax is returned unchanged (it may still say 0).
Why: count networks trained on synthetic zeros call most real silent seconds "someone speaks";
a VAD gate fixes that (see the issue's figures) while letting the network decide 1, 2 or 3+.
"""

from __future__ import annotations

import logging
import threading
import warnings
from pathlib import Path

import numpy as np
import torch

from ..errors import ModelError
from ..paths import DEFAULT_MODEL, SAMPLE_RATE, SEX_MODEL, WINDOW
from .device import keep_freed_memory, pick_device
from .io import load_model

log = logging.getLogger(__name__)

VAD_FRAME = 512
VAD_LEVEL = 10 ** (-20 / 20)  # RMS the VAD hears a window at, where VAD_MAX_GAIN is enough to get it there
VAD_MAX_GAIN = 10 ** (10 / 20)


def default_model_path() -> Path:
    """models/counter.safetensors: the default model the monitor and classify use."""
    return DEFAULT_MODEL


def sex_model_path() -> Path:
    """models/counter-sex.safetensors: the shipped model with the sex-composition head."""
    return SEX_MODEL


class SpeechGate:
    """silero-vad over batches of 1-s windows: one speech probability per window (max over frames).

    It takes windows `BATCH` at a time: its 31 frames are 31 sequential steps, each cheaper per
    window in a bigger batch (measured on 2 CPU cores: 3,300 windows/s in batches of 256, 2,400/s in
    batches of 64).

    Its TorchScript build, not its ONNX one: the ONNX build scores a single window 2.6x faster, but
    onnxruntime stores a telemetry device id in the user's home at import (and warns on stderr when
    it cannot), which a monitor that is quiet about its venue should not do.
    """

    BATCH = 256

    def __init__(self):
        threads = torch.get_num_threads()
        from silero_vad import load_silero_vad  # its import sets torch to 1 thread: undo that

        torch.set_num_threads(threads)
        with warnings.catch_warnings():  # silero-vad's deprecation notices are not the user's concern
            warnings.simplefilter("ignore")
            self.model = load_silero_vad()

    def speech_probability(self, windows: torch.Tensor, enough: float | None = None) -> torch.Tensor:
        """Each window's highest frame score [B].

        With `enough`, scoring stops as soon as every window has a frame scoring at least that (each
        window's figure is then its highest so far): whether a window reaches `enough` is unchanged,
        and speech usually does within its first frames, so the gate rarely needs all 31.
        """
        rms = windows.pow(2).mean(dim=1, keepdim=True).sqrt()
        gain = (VAD_LEVEL / rms.clamp_min(1e-12)).clamp_max(VAD_MAX_GAIN)
        windows = (windows * gain).clamp(-1.0, 1.0)
        self.model.reset_states()
        best = torch.zeros(len(windows))
        for i in range(windows.shape[1] // VAD_FRAME):
            best = torch.maximum(best, self.model(windows[:, i * VAD_FRAME:(i + 1) * VAD_FRAME], SAMPLE_RATE)[:, 0])
            if enough is not None and bool((best >= enough).all()):
                break
        return best


class Counter:
    """A loaded model ready to count: `predict(windows [B, 16000]) -> probabilities [B, classes]`.

    Any number of windows per call; the network takes them `batch_size` at a time. 64 is among the
    fastest on CPU (measured on 2 cores: 2,950 windows/s, against 2,200/s in batches of 256, whose
    spectrogram-sized intermediates no longer fit the caches).
    """

    def __init__(self, model, metadata: dict, path: Path, device: torch.device,
                 gate: SpeechGate | None, vad_threshold: float, batch_size: int = 64):
        self.model = model.to(device).eval()
        self.metadata = metadata
        self.path = Path(path)
        self.name = self.path.stem
        self.classes = [int(c) for c in metadata["classes"]]
        self.device = device
        self.gate = gate
        self.vad_threshold = vad_threshold
        self.batch_size = batch_size
        self._lock = threading.Lock()  # silero-vad keeps state between calls: one batch at a time

    @property
    def vad(self) -> bool:
        return self.gate is not None

    def _check(self, windows: np.ndarray) -> torch.Tensor:
        windows = np.asarray(windows, dtype=np.float32)
        if windows.ndim != 2 or windows.shape[1] != WINDOW:
            raise ValueError(f"expected windows of shape [B, {WINDOW}], got {list(windows.shape)}")
        return torch.from_numpy(np.ascontiguousarray(windows))

    def _network(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """One forward pass: count softmax [B, classes] and, for a sex-head model, the women/men
        softmax [B, 2, max_speakers + 1] (else None)."""
        x = self._check(windows)
        counts, sexes = [], []
        with torch.inference_mode():
            for batch in torch.split(x, self.batch_size):
                out = self.model(batch.to(self.device))
                logits, sex = out if isinstance(out, tuple) else (out, None)
                counts.append(torch.softmax(logits.float(), dim=1).cpu())
                if sex is not None:
                    sexes.append(torch.softmax(sex.float(), dim=2).cpu())
        if not counts:
            return np.zeros((0, len(self.classes)), np.float32), None
        return torch.cat(counts).numpy(), (torch.cat(sexes).numpy() if sexes else None)

    def count_probabilities(self, windows: np.ndarray) -> np.ndarray:
        """The count network alone (no VAD gate): softmax [B, classes]."""
        return self._network(windows)[0]

    @property
    def has_sex_head(self) -> bool:
        return bool(self.metadata.get("sex_head"))

    def predict_with_sex(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`predict`'s probabilities and, from the same forward pass, [B, 2] women and men per window."""
        probs, sex = self._network(windows)
        if sex is None:
            raise ModelError(f"{self.path}: this model has no sex-composition head (train one with --sex-head)")
        probs = self._gate(probs, windows)
        return probs, _split_counts(sex, probs.argmax(axis=1))

    def speech_probability(self, windows: np.ndarray, enough: float | None = None) -> np.ndarray:
        """The VAD stage alone: each window's highest 32-ms speech probability [B] (see SpeechGate's
        for `enough`)."""
        if self.gate is None:
            raise RuntimeError("this counter was loaded with vad=False")
        x = self._check(windows)
        with torch.inference_mode(), self._lock:
            out = [self.gate.speech_probability(b, enough) for b in torch.split(x, self.gate.BATCH)]
        return torch.cat(out).numpy() if out else np.zeros(0, np.float32)

    def predict(self, windows: np.ndarray) -> np.ndarray:
        """Probabilities of each count, rows summing to 1; VAD-silent windows are one-hot on 0."""
        return self._gate(self.count_probabilities(windows), windows)

    def _gate(self, probs: np.ndarray, windows: np.ndarray) -> np.ndarray:
        """The VAD gate over the network's probabilities.

        The gate can only turn a count into 0, so it is asked only about the windows the network
        hears voices in (silero costs as much as the network): same counts, less work in a quiet room.
        """
        if self.gate is not None and len(probs):
            voiced = np.flatnonzero(probs.argmax(axis=1) > 0)
            if len(voiced):
                speech = self.speech_probability(np.asarray(windows, dtype=np.float32)[voiced], self.vad_threshold)
                silent = voiced[speech < self.vad_threshold]
                probs[silent] = 0.0
                probs[silent, 0] = 1.0
        return probs.astype(np.float32)


def _split_counts(sex: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Women and men [B, 2] for each count, reading the two heads jointly: of the splits of the count
    into women + men, the one whose two probabilities multiply to the most, so the composition never
    contradicts the count."""
    out = np.zeros((len(counts), 2), dtype=np.int64)
    for i, count in enumerate(np.asarray(counts)):
        women = np.arange(count + 1)
        best = int(np.argmax(sex[i, 0, women] * sex[i, 1, count - women]))
        out[i] = (best, count - best)
    return out


def load_counter(path: str | Path | None = None, device: str = "auto", vad: bool = True,
                 vad_threshold: float = 0.5, threads: int = 0, sex: bool = False) -> Counter:
    """Load a model file as a Counter; `threads` 0 keeps torch's.

    Without a path: models/counter.safetensors, or with `sex` the shipped sex-composition model.
    """
    if threads > 0:
        torch.set_num_threads(threads)
    keep_freed_memory()
    weights = Path(path) if path is not None else sex_model_path() if sex else default_model_path()
    if path is None and not weights.is_file():
        raise ModelError(
            "no trained model is installed (expected models/counter.safetensors); train one with `occupancy train`"
        )
    model, metadata = load_model(weights)
    chosen = pick_device(device)
    gate = SpeechGate() if vad else None
    log.debug("counter %s on %s, vad=%s", weights.stem, chosen, vad)
    return Counter(model, metadata, weights, chosen, gate, vad_threshold)
