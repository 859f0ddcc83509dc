"""The bundled demo recording: real LibriSpeech voices, 0-3 speaking in turn, with per-second truth.

Made by scripts/make_sample.py from ../shared/data; used by the demo (monitor with no microphone)
and by the tests.
"""

from __future__ import annotations

import csv
from importlib import resources
from pathlib import Path

import numpy as np

from ..paths import WINDOW

SAMPLE_AUDIO: Path = Path(str(resources.files(__package__) / "sample.flac"))
SAMPLE_TRUTH: Path = Path(str(resources.files(__package__) / "sample.csv"))


def load_truth(path: Path = SAMPLE_TRUTH) -> list[int]:
    """True count of speakers for each second of the sample (index = second)."""
    with open(path, newline="") as fh:
        return [int(row["count"]) for row in csv.DictReader(fh)]


def sample_windows() -> np.ndarray:
    """The sample's whole 1-s windows, float32 [90, 16000], one per line of its truth."""
    import soundfile as sf

    audio, _rate = sf.read(SAMPLE_AUDIO, dtype="float32")
    return audio[: len(audio) // WINDOW * WINDOW].reshape(-1, WINDOW)
