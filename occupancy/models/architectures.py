"""Every counting network, built by name from one registry.

All take a batch of 1-s windows, float32 [B, 16000] at 16 kHz, and return count logits [B, classes]
(plus, with `sex_head=True`, a second output: logits for the number of women and of men).

- M3, M5, M11, M18, M34-res: the raw-waveform CNNs of Dai et al. 2016 as the seed paper adapted them
  (first conv kernel 80 stride 16 with 32 channels, kernel 3 after, Conv-BN-ReLU blocks with
  MaxPool(4), global average pooling, linear head). With 3 classes their parameter counts equal
  the seed paper's Table II.
- arch1, arch2, arch3: the seed paper's small 2D CNNs on a dB spectrogram.
- melconv: our default. A fixed log-mel front end, a per-window level normalisation (so the count
  cannot be read from loudness), then residual dilated 1D convolutions over time.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torchaudio
from torch import nn

from ..paths import SAMPLE_RATE
from .files import ARCHITECTURES  # the names, listed where no torch is needed


# The seed paper's Table II (3 classes): name -> (parameters, validation accuracy as printed).
PAPER_TABLE = {
    "M3": (5923, "73.95 %"),
    "M5": (37507, "79.37 %"),
    "M11": (449059, "~73.7 %"),
    "M18": (924643, "77.07 %"),
    "M34-res": (None, "not trained"),
    "arch1": (9795, "68.57 %"),
    "arch2": (65571, "54.20 %"),
    "arch3": (483, "58.62 %"),
}


class CountNet(nn.Module):
    """A feature body followed by the count head and the optional sex-composition head."""

    def __init__(self, body: nn.Module, width: int, n_classes: int, sex_head: bool, max_speakers: int):
        super().__init__()
        self.body = body
        self.head = nn.Linear(width, n_classes)
        # Two classifiers over 0..max_speakers: number of women, number of men.
        self.sex = nn.Linear(width, 2 * (max_speakers + 1)) if sex_head else None

    def forward(self, x: torch.Tensor):
        features = self.body(x)
        logits = self.head(features)
        if self.sex is None:
            return logits
        return logits, self.sex(features).unflatten(1, (2, -1))  # [B, 2, max_speakers + 1]


def _conv_block(cin: int, cout: int, kernel: int, stride: int = 1) -> list[nn.Module]:
    padding = 0 if stride > 1 else kernel // 2
    return [nn.Conv1d(cin, cout, kernel, stride, padding), nn.BatchNorm1d(cout), nn.ReLU()]


class _Waveform(nn.Module):
    """[B, T] -> [B, 1, T], so raw-waveform bodies can start with a Conv1d."""

    def forward(self, x):
        return x.unsqueeze(1)


class _GlobalAvgPool(nn.Module):
    def forward(self, x):
        return x.mean(dim=tuple(range(2, x.dim())))


def _dai_body(groups: list[tuple[int, int]], block=None) -> tuple[nn.Module, int]:
    """Dai et al.'s plain nets: first conv 80/16 with 32 channels, then (channels, convs) groups.

    MaxPool(4) ends the first conv and every group but a fifth (1 s at stride 16 leaves 996
    frames: four pools bring it to 3, a fifth would leave nothing).
    `block(cin, cout)` makes one unit of a group: a kernel-3 conv block, or a residual block (M34-res).
    """
    block = block or (lambda cin, cout: _conv_block(cin, cout, 3))
    layers: list[nn.Module] = [_Waveform(), *_conv_block(1, 32, 80, 16), nn.MaxPool1d(4)]
    cin = 32
    for index, (channels, units) in enumerate(groups):
        for _ in range(units):
            layers += block(cin, channels)
            cin = channels
        if index < 3:
            layers.append(nn.MaxPool1d(4))
    layers.append(_GlobalAvgPool())
    return nn.Sequential(*layers), cin


class _ResBlock1d(nn.Module):
    """Two kernel-3 convs with a shortcut (1x1 conv where the width changes); `dilation` widens it."""

    def __init__(self, cin: int, cout: int, dilation: int = 1):
        super().__init__()
        self.conv1 = nn.Conv1d(cin, cout, 3, padding=dilation, dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm1d(cout)
        self.conv2 = nn.Conv1d(cout, cout, 3, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm1d(cout)
        self.skip = nn.Identity() if cin == cout else nn.Conv1d(cin, cout, 1, bias=False)

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.skip(x))


def _m34_body() -> tuple[nn.Module, int]:
    """M34-res: first conv, then 3/4/6/3 residual blocks of 32/64/128/256 channels."""
    return _dai_body([(32, 3), (64, 4), (128, 6), (256, 3)], block=lambda cin, cout: [_ResBlock1d(cin, cout)])


class _Spectrogram(nn.Module):
    """Power spectrogram in dB, [B, T] -> [B, 1, freq, frames], with the seed paper's torchaudio transforms."""

    def __init__(self):
        super().__init__()
        self.spec = torchaudio.transforms.Spectrogram(n_fft=400)
        self.db = torchaudio.transforms.AmplitudeToDB(top_db=80)

    def forward(self, x):
        return self.db(self.spec(x)).unsqueeze(1)


def _spectrogram_body(channels: list[int], dropouts: list[float]) -> tuple[nn.Module, int]:
    """The seed paper's 2D CNNs: 3x3 Conv2d-BN-ReLU-MaxPool(2) blocks, a dropout after the first few."""
    layers: list[nn.Module] = [_Spectrogram()]
    cin = 1
    for index, cout in enumerate(channels):
        layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2)]
        if index < len(dropouts):
            layers.append(nn.Dropout(dropouts[index]))
        cin = cout
    layers.append(_GlobalAvgPool())
    return nn.Sequential(*layers), cin


class LogMel(nn.Module):
    """Fixed log-mel filterbank with per-window level normalisation.

    Subtracting the window's mean log energy makes the features identical for any gain, so the
    network must count from spectral structure rather than loudness; dividing by the spread keeps
    quiet and loud rooms on one scale.
    """

    def __init__(self, n_mels: int = 80, n_fft: int = 512, hop: int = 160):
        super().__init__()
        self.mel = torchaudio.transforms.MelSpectrogram(
            SAMPLE_RATE, n_fft=n_fft, win_length=400, hop_length=hop, n_mels=n_mels, f_min=50.0, f_max=7600.0
        )

    def forward(self, x):
        x = x - x.mean(dim=1, keepdim=True)
        logmel = torch.log(self.mel(x) + 1e-8)
        mean = logmel.mean(dim=(1, 2), keepdim=True)
        std = logmel.std(dim=(1, 2), keepdim=True).clamp_min(1e-3)
        return (logmel - mean) / std


def _melconv_body(n_mels: int = 80, width: int = 128, dilations: tuple[int, ...] = (1, 2, 4, 8, 16)):
    """Log-mel front end, a stride-2 conv (100 frames -> 50), then residual dilated 1D convs.

    Pooling both the mean and the maximum over time lets the head see how busy the whole second
    was and its densest moment.
    """
    body = nn.Sequential(
        LogMel(n_mels),
        *_conv_block(n_mels, width, 5, 2),
        *[_ResBlock1d(width, width, d) for d in dilations],
        _MeanMaxPool(),
    )
    return body, 2 * width


class _MeanMaxPool(nn.Module):
    def forward(self, x):
        return torch.cat([x.mean(dim=2), x.amax(dim=2)], dim=1)


# name -> builder of (body, feature width), one per name in ARCHITECTURES; keyword arguments pass through.
_BODIES: dict[str, Callable[..., tuple[nn.Module, int]]] = {
    "M3": lambda: _dai_body([(32, 1)]),
    "M5": lambda: _dai_body([(32, 1), (64, 1), (128, 1)]),
    "M11": lambda: _dai_body([(32, 2), (64, 2), (128, 3), (256, 2)]),
    "M18": lambda: _dai_body([(32, 4), (64, 4), (128, 4), (256, 4)]),
    "M34-res": _m34_body,
    "arch1": lambda: _spectrogram_body([32, 32], [0.2, 0.4]),
    "arch2": lambda: _spectrogram_body([32, 32, 64, 64], [0.2, 0.3, 0.4]),
    "arch3": lambda: _spectrogram_body([32], [0.2]),
    "melconv": _melconv_body,
}


def build_model(
    arch: str, n_classes: int = 4, sex_head: bool = False, max_speakers: int = 3, **kwargs
) -> CountNet:
    """The network `arch` with a count head of `n_classes`; unknown names raise KeyError."""
    if arch not in _BODIES:
        raise KeyError(f"unknown architecture '{arch}' (known: {', '.join(ARCHITECTURES)})")
    body, width = _BODIES[arch](**kwargs)
    return CountNet(body, width, n_classes, sex_head, max_speakers)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def parameter_table() -> str:
    """Markdown table: each architecture's parameters (the seed paper's 3 classes and our 4) beside Table II."""
    rows = ["| model | params (3 classes) | seed paper's params | seed paper's val. accuracy | params (4 classes) |",
            "|---|---|---|---|---|"]
    for name in ARCHITECTURES:
        ours3 = count_parameters(build_model(name, n_classes=3))
        ours4 = count_parameters(build_model(name, n_classes=4))
        reported, accuracy = PAPER_TABLE.get(name, (None, "-"))
        rows.append(f"| {name} | {ours3:,} | {f'{reported:,}' if reported else '-'} | {accuracy} | {ours4:,} |")
    return "\n".join(rows)

