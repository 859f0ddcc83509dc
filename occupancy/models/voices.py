"""Distinct voices (opt-in): how many different people spoke within the last minutes.

Each 1-s window the counter hears as exactly one voice becomes a voiceprint: Resemblyzer's GE2E
speaker encoder (Apache-2.0, its weights from the Resemblyzer 0.1.4 wheel) followed by a linear
projection fitted on our training speakers (lab/voices/encoder.py builds both into one ONNX file,
`shipped/voices.onnx`). The voiceprints of the horizon are grouped by average-linkage agglomerative
clustering on cosine distance, cut at the threshold the file names; groups whose seconds alternate
within the same stretches of speech are joined (one voice that scattered); the figure is the number
of groups heard in at least `max(MIN_SUPPORT, SUPPORT_SHARE x voiceprints)` windows, so that a
stray window (a cough, a miscount, two voices at a turn's boundary) opens no voice of its own.

Privacy: a voiceprint identifies a person. They live only in a DistinctVoices object's memory,
expire with its horizon, and nothing here writes, logs or returns them: only the figure leaves.

Runs on numpy and ONNX Runtime (no PyTorch): the front end below is Resemblyzer's (facts from its
hparams.py/audio.py, our code): the window raised to -30 dBFS (never lowered), a 400-point STFT
every 160 samples with a periodic Hann window, centred frames with zero padding, power, 40 mel bands
on the Slaney scale with Slaney area normalisation, no log.
"""

from __future__ import annotations

import json
from collections import deque
from pathlib import Path

import numpy as np

from ..errors import ModelError
from ..paths import SAMPLE_RATE, SHIPPED_DIR
from .onnx_runtime import open_session

VOICES_MODEL = SHIPPED_DIR / "voices.onnx"
SETTINGS_KEY = "voices"  # ONNX metadata: the front end and clustering settings the file was tuned with
N_FFT = 400
HOP = 160
N_MELS = 40
LEVEL_DBFS = -30.0  # one-voice windows quieter than this are raised to it
EMBED_BATCH = 4  # windows embedded per call: as cheap per window as larger batches
MIN_SUPPORT = 4  # fewest windows a voice needs within the horizon ...
SUPPORT_SHARE = 0.03  # ... or this share of the horizon's voiceprints, whichever is more
RECOUNT_EVERY_S = 10.0  # seconds of stream between two clusterings: the figure is a minutes-long one
NEXT_S = 1.0  # one-voice windows at most this far apart (start to start) are next to each other


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear to 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz * 3.0 / 200.0
    log_part = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, log_part, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    return np.where(mel >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0)), mel * 200.0 / 3.0)


def slaney_filterbank() -> np.ndarray:
    """[1 + N_FFT/2, N_MELS] triangular filters over 0-8 kHz, each scaled to unit area (Slaney)."""
    freqs = np.linspace(0, SAMPLE_RATE / 2, 1 + N_FFT // 2)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(SAMPLE_RATE / 2), N_MELS + 2))
    slopes = edges[:, None] - freqs[None, :]
    widths = np.diff(edges)
    rising = -slopes[:-2] / widths[:-1, None]
    falling = slopes[2:] / widths[1:, None]
    filters = np.maximum(0.0, np.minimum(rising, falling)) * (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return filters.T.astype(np.float32)


_FILTERBANK = slaney_filterbank()
_HANN = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)


def voice_features(windows: np.ndarray) -> np.ndarray:
    """float32 [B, samples] -> the encoder's input, power mel frames float32 [B, frames, 40]."""
    windows = np.asarray(windows, dtype=np.float32)
    level = np.sqrt(np.mean(np.square(windows, dtype=np.float64), axis=1)) + 1e-12
    gain = np.maximum(1.0, 10 ** (LEVEL_DBFS / 20) / level).astype(np.float32)
    x = np.pad(windows * gain[:, None], ((0, 0), (N_FFT // 2, N_FFT // 2)))
    frames = np.lib.stride_tricks.sliding_window_view(x, N_FFT, axis=1)[:, ::HOP]
    spectrum = np.fft.rfft(frames * _HANN, axis=2)
    power = (spectrum.real ** 2 + spectrum.imag ** 2).astype(np.float32)
    # One 2-D matrix product: a batched 3-D one let numpy's BLAS start threads that stall on a busy machine.
    mel = power.reshape(-1, power.shape[2]) @ _FILTERBANK
    return np.ascontiguousarray(mel.reshape(len(windows), power.shape[1], N_MELS))


def cluster_labels(voiceprints: np.ndarray, threshold: float) -> np.ndarray:
    """Group label of each unit vector after average-linkage clustering on cosine distance, merging while
    the closest two groups are at most `threshold` apart (scipy's linkage + fcluster 'distance').

    Each row keeps its nearest group, so a merge costs O(n) plus a rescan of the rows that had one of
    the two merged groups nearest (average linkage only moves those farther away).
    """
    n = len(voiceprints)
    owner = np.arange(n)
    if n < 2:
        return owner
    x = np.asarray(voiceprints, dtype=np.float64)
    distance = 1.0 - x @ x.T
    np.fill_diagonal(distance, np.inf)
    size = np.ones(n)
    nearest = distance.argmin(axis=1)
    nearest_distance = distance[np.arange(n), nearest]
    for _ in range(n - 1):
        i = int(nearest_distance.argmin())
        j = int(nearest[i])
        if nearest_distance[i] > threshold:
            break
        merged = (size[i] * distance[i] + size[j] * distance[j]) / (size[i] + size[j])
        merged[[i, j]] = np.inf
        distance[i], distance[:, i] = merged, merged
        distance[j], distance[:, j] = np.inf, np.inf
        size[i], size[j] = size[i] + size[j], 0.0
        owner[owner == j] = i
        nearest_distance[j] = np.inf
        closer = merged < nearest_distance
        nearest[closer], nearest_distance[closer] = i, merged[closer]
        stale = np.union1d(np.flatnonzero(((nearest == i) | (nearest == j)) & (size > 0)), [i])
        nearest[stale] = distance[stale].argmin(axis=1)
        nearest_distance[stale] = distance[stale, nearest[stale]]
    return np.unique(owner, return_inverse=True)[1]


def merge_interleaved(labels: np.ndarray, times: np.ndarray, interleave: float) -> np.ndarray:
    """Join groups whose windows alternate within the same stretches of speech.

    One person's voice scatters: some of their seconds sound unlike the rest and form a group of their
    own, but those seconds sit between the person's other seconds, inside the same turns. Two people
    meet only where one hands over to the other. A one-voice second's neighbours are the one-voice
    seconds at most NEXT_S before and after it. Two groups are joined, the most alternating pair first,
    while the neighbours they find in each other are at least `interleave` of all the neighbours of
    whichever of the two has fewer. Asking about neighbours, not about every second of a group, matters
    in a reverberant room: the counter hears many seconds there as two voices, so a scattered group's
    seconds often have no one-voice neighbour at all. People who take turns of L one-voice seconds find
    at most about 1/L of their neighbours in each other. `times` ascend.
    """
    labels = np.array(labels)
    if len(labels) < 2:
        return labels
    before = np.flatnonzero(np.diff(times) <= NEXT_S)
    while True:
        groups = int(labels.max()) + 1
        pairs = np.zeros((groups, groups))
        np.add.at(pairs, (labels[before], labels[before + 1]), 1.0)
        pairs += pairs.T  # [g, h]: neighbours g's seconds find in h's (a pair inside g counts twice)
        neighbours = pairs.sum(axis=1)
        np.fill_diagonal(pairs, 0.0)
        ratio = pairs / np.maximum(np.minimum.outer(neighbours, neighbours), 1)
        i, j = np.unravel_index(int(ratio.argmax()), ratio.shape)
        if ratio[i, j] < interleave or pairs[i, j] == 0:
            return labels
        labels[labels == j] = i


def count_voices(voiceprints: np.ndarray, times: np.ndarray, threshold: float, interleave: float) -> int:
    """Distinct voices among one horizon's voiceprints (heard at `times`, ascending): groups by voice
    (cluster_labels), joined where they alternate (merge_interleaved), counted where heard in at least
    max(MIN_SUPPORT, SUPPORT_SHARE x voiceprints) seconds."""
    if not len(voiceprints):
        return 0
    labels = merge_interleaved(cluster_labels(voiceprints, threshold), times, interleave)
    support = max(MIN_SUPPORT, SUPPORT_SHARE * len(voiceprints))
    return int((np.bincount(labels) >= support).sum())


class VoiceEncoder:
    """1-s windows -> unit-length voiceprints, on ONNX Runtime (one thread: it runs beside the counter)."""

    def __init__(self, path: str | Path = VOICES_MODEL, threads: int = 1):
        path = Path(path)
        if not path.is_file():
            raise ModelError(f"{path}: the voices model is missing (reinstall occupancy)")
        self.path = path
        self.session = open_session(path, threads=threads)
        settings = self.session.get_modelmeta().custom_metadata_map.get(SETTINGS_KEY)
        if not settings:
            raise ModelError(f"{path}: not a voices model (no '{SETTINGS_KEY}' metadata)")
        self.settings = json.loads(settings)
        self.threshold = float(self.settings["threshold"])
        self.interleave = float(self.settings["interleave"])

    def embed(self, windows: np.ndarray) -> np.ndarray:
        """float32 [B, samples] -> float32 [B, dimensions], each row of length 1."""
        if not len(windows):
            return np.zeros((0, int(self.settings["dimensions"])), np.float32)
        return self.session.run(["voiceprint"], {"mels": voice_features(windows)})[0]


class DistinctVoices:
    """One stream's figure: `hear(t, window)` each window counted as one voice, `figure(t)` at any time.

    `t` is the stream's time in seconds (a replay's or the microphone's clock); what was heard more
    than `horizon_s` before the latest `t` is forgotten. One object per stream: a microphone run,
    each replayed or classified file.
    """

    def __init__(self, encoder: VoiceEncoder, horizon_s: float = 300.0):
        self.encoder = encoder
        self.horizon_s = float(horizon_s)
        self._waiting: list[tuple[float, np.ndarray]] = []  # one-voice windows not yet embedded
        self._heard: deque[tuple[float, np.ndarray]] = deque()  # (t, voiceprint), oldest first
        self._figure = 0
        self._counted_at: float | None = None

    @property
    def held(self) -> int:
        """Voiceprints in memory now (waiting windows included)."""
        return len(self._heard) + len(self._waiting)

    def hear(self, t: float, window: np.ndarray) -> None:
        self._waiting.append((float(t), window))
        if len(self._waiting) >= EMBED_BATCH:
            self._embed_waiting()

    def figure(self, t: float) -> int:
        """Distinct voices heard with enough support in the horizon ending at `t`; reclustered once every
        RECOUNT_EVERY_S of stream time (the same figure in between)."""
        if self._counted_at is not None and 0 <= t - self._counted_at < RECOUNT_EVERY_S:
            return self._figure
        self._embed_waiting()
        self._forget_before(t - self.horizon_s)
        times = np.array([t for t, _ in self._heard])
        heard = np.array([v for _, v in self._heard]) if self._heard else np.zeros((0, 1))
        self._figure = count_voices(heard, times, self.encoder.threshold, self.encoder.interleave)
        self._counted_at = float(t)
        return self._figure

    def clear(self) -> None:
        """Forget every voice (a new stream)."""
        self._waiting.clear()
        self._heard.clear()
        self._figure, self._counted_at = 0, None

    def _embed_waiting(self) -> None:
        if not self._waiting:
            return
        voiceprints = self.encoder.embed(np.stack([w for _, w in self._waiting]))
        self._heard.extend((t, v) for (t, _), v in zip(self._waiting, voiceprints))
        self._waiting.clear()

    def _forget_before(self, oldest: float) -> None:
        while self._heard and self._heard[0][0] < oldest:
            self._heard.popleft()
