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
3. The window is silent when that is below its threshold: `vad_threshold` (VAD_THRESHOLD, 0.4) for a
   window quieter than `vad_quiet_dbfs` (VAD_QUIET_DBFS, -55 dBFS RMS as recorded), `vad_loud_threshold`
   (VAD_LOUD_THRESHOLD, 0.05) for a louder one: there silero must be sure nobody speaks, because it
   misses reverberant and far-field speech that the network hears. A silent window's probabilities are
   exactly one-hot on count 0. (Windows the network already counts as 0 keep the network's
   probabilities: the gate could not change their count, so it is not run on them.)
4. Otherwise the count network's softmax is returned unchanged (it may still say 0).
Why: count networks trained on synthetic zeros call many real silent seconds "someone speaks", most of
them far quieter than speech (AMI's, at -73 dBFS); a VAD gate fixes that while letting the network
decide 1, 2 or 3+. One threshold for every level traded those seconds against reverberant speech
(models/RESULTS.md, "Counter v7").

Two runtimes count this way from the same model file: ONNX Runtime (onnx_runtime.py), what monitor,
replay and classify run on a CPU, without PyTorch; and PyTorch (torch_runtime.py), for training,
evaluation, export, bench and CUDA. This module holds what they share; runtimes.py picks one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ModelError
from ..paths import VAD_LOUD_THRESHOLD, VAD_QUIET_DBFS, VAD_THRESHOLD, WINDOW

VAD_FRAME = 512
VAD_LEVEL = 10 ** (-20 / 20)  # RMS the VAD hears a window at, where VAD_MAX_GAIN is enough to get it there
VAD_MAX_GAIN = 10 ** (10 / 20)


@dataclass(frozen=True)
class GateRule:
    """When the gate calls a window silent: its speech probability below `threshold` where the window is
    quieter than `quiet_dbfs`, below `loud_threshold` elsewhere (model.vad_* in the config)."""

    threshold: float = VAD_THRESHOLD
    loud_threshold: float = VAD_LOUD_THRESHOLD
    quiet_dbfs: float = VAD_QUIET_DBFS

    def silent(self, speech: np.ndarray, windows: np.ndarray) -> np.ndarray:
        """Which windows are silent, given their speech probabilities [B] (bool [B])."""
        quiet = rms_dbfs(windows) < self.quiet_dbfs
        return speech < np.where(quiet, self.threshold, self.loud_threshold)

    @property
    def enough(self) -> float:
        """A speech probability at which no window can be silent: the gate may stop listening there."""
        return max(self.threshold, self.loud_threshold)


class Counter:
    """A loaded model ready to count: `predict(windows [B, 16000]) -> probabilities [B, classes]`.

    A runtime supplies `_network(windows)` (the count softmax and, for a sex-head model, the women/men
    softmax) and a `gate` with `speech_probability(windows, enough)`; the rest is common.
    """

    def __init__(self, metadata: dict, path: Path, device: str, gate, gate_rule: GateRule):
        self.metadata = metadata
        self.path = Path(path)
        self.name = self.path.stem
        self.classes = [int(c) for c in metadata["classes"]]
        self.device = device
        self.gate = gate
        self.gate_rule = gate_rule

    @property
    def vad(self) -> bool:
        return self.gate is not None

    @property
    def has_sex_head(self) -> bool:
        return bool(self.metadata.get("sex_head"))

    def _network(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """One forward pass over checked windows: count softmax [B, classes] and, for a sex-head model,
        the women/men softmax [B, 2, max_speakers + 1] (else None)."""
        raise NotImplementedError

    def count_probabilities(self, windows: np.ndarray) -> np.ndarray:
        """The count network alone (no VAD gate): softmax [B, classes]."""
        return self._network(check_windows(windows))[0]

    def predict(self, windows: np.ndarray) -> np.ndarray:
        """Probabilities of each count, rows summing to 1; VAD-silent windows are one-hot on 0."""
        windows = check_windows(windows)
        return self._gate(self._network(windows)[0], windows)

    def predict_with_sex(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`predict`'s probabilities and, from the same forward pass, [B, 2] women and men per window."""
        windows = check_windows(windows)
        probs, sex = self._network(windows)
        if sex is None:
            raise ModelError(f"{self.path}: this model has no sex-composition head (train one with --sex-head)")
        probs = self._gate(probs, windows)
        return probs, _split_counts(sex, probs.argmax(axis=1))

    def speech_probability(self, windows: np.ndarray, enough: float | None = None) -> np.ndarray:
        """The VAD stage alone: each window's highest 32-ms speech probability [B]. With `enough`, a
        runtime may stop listening to a batch once every window has reached it (the PyTorch gate does)."""
        if self.gate is None:
            raise RuntimeError("this counter was loaded with vad=False")
        return self.gate.speech_probability(check_windows(windows), enough)

    def _gate(self, probs: np.ndarray, windows: np.ndarray) -> np.ndarray:
        """The VAD gate over the network's probabilities.

        The gate can only turn a count into 0, so it is asked only about the windows the network
        hears voices in (silero costs as much as the network): same counts, less work in a quiet room.
        """
        if self.gate is not None and len(probs):
            voiced = np.flatnonzero(probs.argmax(axis=1) > 0)
            if len(voiced):
                speech = self.gate.speech_probability(windows[voiced], self.gate_rule.enough)
                silent = voiced[self.gate_rule.silent(speech, windows[voiced])]
                probs[silent] = 0.0
                probs[silent, 0] = 1.0
        return probs.astype(np.float32)


def check_windows(windows: np.ndarray) -> np.ndarray:
    """Windows as contiguous float32 [B, 16000]; ValueError for any other shape."""
    windows = np.ascontiguousarray(windows, dtype=np.float32)
    if windows.ndim != 2 or windows.shape[1] != WINDOW:
        raise ValueError(f"expected windows of shape [B, {WINDOW}], got {list(windows.shape)}")
    return windows


def rms_dbfs(windows: np.ndarray) -> np.ndarray:
    """Each window's RMS level in dBFS [B], as the level meter and `check` read it (-120 for digital
    silence)."""
    rms = np.sqrt(np.mean(np.square(windows, dtype=np.float64), axis=1))
    return 20 * np.log10(np.maximum(rms, 1e-6))


def level_for_gate(windows: np.ndarray) -> np.ndarray:
    """Windows brought towards VAD_LEVEL RMS with at most VAD_MAX_GAIN of gain, clipped to [-1, 1]:
    what both runtimes' speech gates hear (float32 [B, samples])."""
    rms = np.sqrt(np.mean(np.square(windows), axis=1, keepdims=True))
    gain = np.minimum(np.float32(VAD_LEVEL) / np.maximum(rms, np.float32(1e-12)), np.float32(VAD_MAX_GAIN))
    return np.clip(windows * gain, -1.0, 1.0).astype(np.float32, copy=False)


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=axis, keepdims=True))
    return (z / z.sum(axis=axis, keepdims=True)).astype(np.float32)


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
