"""The counter on ONNX Runtime and numpy, without PyTorch: what monitor, replay and classify run on a CPU.

- The count network is the model's ONNX companion, `<name>.onnx` (lab/onnx.py exports it and checks
  it against PyTorch). For a log-mel network (melconv) it starts after the front end, which is
  computed here in numpy: ONNX Runtime's STFT kernel took a third of the network's time, numpy's
  FFT a fifth of that. Other architectures take the windows themselves.
- The speech gate is silero-vad's 16 kHz sequence model, rewritten (lab/onnx.py, build_gate_model)
  to score the 31 frames of a whole batch of windows in one call.
Both run one batch of `BATCH` windows at a time: ONNX Runtime is as fast per window at 16 as at 256,
and small batches keep the monitor's memory low while it catches up.

Privacy: ONNX Runtime's POSIX builds from 1.29 on write a device id under ~/.cache/Microsoft when
imported. The pinned 1.28.0 writes nothing, and ORT_DISABLE_TELEMETRY=1, set here before the import,
keeps a newer one quiet too.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..errors import ModelError
from ..paths import GATE_MODEL, SAMPLE_RATE
from .counter import VAD_FRAME, Counter, GateRule, level_for_gate, softmax
from .files import check_weights, export_command, metadata_path, onnx_path, read_metadata, weights_sha256

BATCH = 16
VAD_CONTEXT = 64  # samples of the previous frame silero-vad hears before each frame of 512
VAD_STATE = 128  # silero-vad's LSTM width
WEIGHTS_KEY = "weights_sha256"  # ONNX metadata: the weights file the network was exported from
FRONT_END_KEY = "front_end"  # ONNX metadata: the log-mel settings, for a network whose input is 'features'


def import_onnxruntime():
    """onnxruntime with its telemetry off, or a one-line ModelError when it is not installed."""
    os.environ["ORT_DISABLE_TELEMETRY"] = "1"
    try:
        import onnxruntime
    except ImportError as exc:
        raise ModelError(f"onnxruntime is not installed ({exc}): pip install onnxruntime") from None
    return onnxruntime


def open_session(path: str | Path, threads: int = 1):
    """An ONNX Runtime session on the CPU with `threads` (0: every core).

    Worker threads do not spin while idle: on a machine whose cores are busy with other work, a
    spinning second thread made a batch 2-4 times slower.
    """
    ort = import_onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or os.cpu_count() or 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # its notes about unused initialisers are not the user's concern
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime's own exception types; the user gets one line
        raise ModelError(f"{path}: ONNX Runtime cannot load it ({str(exc).splitlines()[0]})") from None


class LogMel:
    """The melconv front end (models/architectures.py: LogMel) in numpy: torchaudio's MelSpectrogram
    (periodic Hann window of `win_length` centred in `n_fft`, centred frames with reflect padding,
    power 2, HTK mel bands without normalisation), then log(mel + 1e-8) standardised per window with
    the unbiased spread clamped at 1e-3. float32 [B, samples] -> [B, n_mels, frames].

    The FFT is float64: numpy's float32 FFT was twice as slow.
    """

    def __init__(self, n_fft: int, win_length: int, hop_length: int, n_mels: int, f_min: float, f_max: float):
        self.n_fft, self.hop = n_fft, hop_length
        left = (n_fft - win_length) // 2
        self.window = np.zeros(n_fft)
        self.window[left:left + win_length] = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win_length) / win_length)
        self.filterbank = mel_filterbank(n_fft // 2 + 1, n_mels, f_min, f_max).astype(np.float32)

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        x = windows - windows.mean(axis=1, keepdims=True)
        x = np.pad(x, ((0, 0), (self.n_fft // 2, self.n_fft // 2)), mode="reflect")
        frames = np.lib.stride_tricks.sliding_window_view(x, self.n_fft, axis=1)[:, ::self.hop]
        spectrum = np.fft.rfft(frames * self.window, axis=2)
        power = (spectrum.real ** 2 + spectrum.imag ** 2).astype(np.float32)
        # One 2-D matrix product: a batched 3-D one let numpy's BLAS start threads that stall on a busy machine.
        mel = (power.reshape(-1, power.shape[2]) @ self.filterbank).reshape(len(x), power.shape[1], -1)
        logmel = np.log(mel + np.float32(1e-8)).transpose(0, 2, 1)
        mean = logmel.mean(axis=(1, 2), keepdims=True)
        spread = np.maximum(logmel.std(axis=(1, 2), keepdims=True, ddof=1), np.float32(1e-3))
        return np.ascontiguousarray((logmel - mean) / spread, dtype=np.float32)


def mel_filterbank(n_freqs: int, n_mels: int, f_min: float, f_max: float) -> np.ndarray:
    """torchaudio.functional.melscale_fbanks(n_freqs, f_min, f_max, n_mels, 16000, norm=None,
    mel_scale='htk'): triangular filters [n_freqs, n_mels]."""
    freqs = np.linspace(0, SAMPLE_RATE // 2, n_freqs)
    mels = np.linspace(2595.0 * np.log10(1.0 + f_min / 700.0), 2595.0 * np.log10(1.0 + f_max / 700.0), n_mels + 2)
    edges = 700.0 * (10.0 ** (mels / 2595.0) - 1.0)
    slopes = edges[None, :] - freqs[:, None]
    widths = np.diff(edges)
    down = -slopes[:, :-2] / widths[:-1]
    up = slopes[:, 2:] / widths[1:]
    return np.maximum(0.0, np.minimum(down, up))


class OnnxSpeechGate:
    """silero-vad on ONNX Runtime: each window's highest frame score, as the PyTorch gate computes it
    (levelled by at most VAD_MAX_GAIN, state reset per window, 31 frames of 512 samples each heard
    with the 64 before it). The model takes every frame of a batch of windows at once, frame-major.

    With `enough`, it first scores the first FIRST_FRAMES frames only, and the rest (carrying the
    state on) only if some window has not reached `enough` yet: speech usually does within them, so a
    window of speech costs a third of the gate.
    """

    FIRST_FRAMES = 8

    def __init__(self, path: str | Path = GATE_MODEL):
        if not Path(path).is_file():
            raise ModelError(f"{path}: the speech gate's model is missing (reinstall occupancy)")
        self.session = open_session(path, threads=1)  # a second thread was never faster for its small steps

    def speech_probability(self, windows: np.ndarray, enough: float | None = None) -> np.ndarray:
        out = [self._batch(windows[i:i + BATCH], enough) for i in range(0, len(windows), BATCH)]
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def _batch(self, windows: np.ndarray, enough: float | None) -> np.ndarray:
        x = level_for_gate(windows)
        frames = windows.shape[1] // VAD_FRAME
        padded = np.zeros((len(x), VAD_CONTEXT + frames * VAD_FRAME), np.float32)
        padded[:, VAD_CONTEXT:] = x[:, : frames * VAD_FRAME]
        heard = np.lib.stride_tricks.sliding_window_view(padded, VAD_CONTEXT + VAD_FRAME, axis=1)[:, ::VAD_FRAME]
        frame_major = np.ascontiguousarray(heard.transpose(1, 0, 2))  # [frames, B, 576]
        parts = (frame_major,) if enough is None else (frame_major[:self.FIRST_FRAMES], frame_major[self.FIRST_FRAMES:])
        h = c = np.zeros((1, len(x), VAD_STATE), np.float32)
        best = np.zeros(len(x), np.float32)
        for part in parts:
            feed = {"input": part.reshape(-1, part.shape[2]), "h": h, "c": c}
            scores, h, c = self.session.run(["speech_probs", "hn", "cn"], feed)
            best = np.maximum(best, scores.max(axis=1))
            if enough is not None and (best >= enough).all():
                break
        return best


class OnnxCounter(Counter):
    """The count network's ONNX companion, with the numpy front end where its input is 'features'."""

    def __init__(self, session, metadata: dict, path: Path, gate: OnnxSpeechGate | None, gate_rule: GateRule):
        super().__init__(metadata, path, "cpu", gate, gate_rule)
        self.session = session
        front_end = session.get_modelmeta().custom_metadata_map.get(FRONT_END_KEY)
        self.front_end = LogMel(**json.loads(front_end)) if front_end else None
        self.input = session.get_inputs()[0].name

    def _network(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        counts, sexes = [], []
        for i in range(0, len(windows), BATCH):
            batch = windows[i:i + BATCH]
            out = self.session.run(None, {self.input: self.front_end(batch) if self.front_end else batch})
            counts.append(softmax(out[0], axis=1))
            if len(out) > 1:
                sexes.append(softmax(out[1], axis=2))
        if not counts:
            return np.zeros((0, len(self.classes)), np.float32), None
        return np.concatenate(counts), (np.concatenate(sexes) if sexes else None)


def load_onnx_counter(weights: Path, vad: bool, gate_rule: GateRule, threads: int) -> OnnxCounter:
    """The model file's ONNX companion as a counter, refused with one line when it is missing or was
    exported from other weights than the file beside it."""
    check_weights(weights)
    metadata = read_metadata(weights)
    network = onnx_path(weights)
    if not network.is_file():
        raise ModelError(f"{weights}: no ONNX companion ({network.name}) to count with on the CPU; "
                         f"write it with `{export_command(weights)}`")
    session = open_session(network, threads)
    if session.get_modelmeta().custom_metadata_map.get(WEIGHTS_KEY) != weights_sha256(weights):
        raise ModelError(f"{network}: out of date, exported from other weights than {weights.name}; "
                         f"rebuild it with `{export_command(weights)}`")
    outputs = session.get_outputs()
    if outputs[0].shape[-1] != len(metadata["classes"]) or (len(outputs) > 1) != bool(metadata.get("sex_head")):
        raise ModelError(f"{network}: its outputs do not fit {metadata_path(weights).name}; "
                         f"rebuild it with `{export_command(weights)}`")
    return OnnxCounter(session, metadata, weights, OnnxSpeechGate() if vad else None, gate_rule)
