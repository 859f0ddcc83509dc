"""A random microphone's colouring, laid over a whole training window.

Why: a venue's microphone (and the room's furniture) shapes the spectrum: a cheap capsule rolls off
the bass and the top, a far-field array has resonances of its own. Our corpora are mostly heard
through good close microphones, so a colour the network has never heard can read as "another voice";
a fresh random response per window teaches it that the spectrum's overall shape says nothing about
the count. The response is smooth in frequency (a high-pass, a low-pass, a tilt, a few broad peaks and
dips), applied as a zero-phase gain on the window's spectrum: its impulse response is a few ms long,
so treating the window as periodic costs nothing audible.
"""

from __future__ import annotations

import numpy as np
import scipy.fft

from ...paths import SAMPLE_RATE
from .mixing import rms, set_loudness

HIGH_PASS_HZ = (50.0, 400.0)  # 12 dB per octave below
LOW_PASS_HZ = (2500.0, 8000.0)  # 12-24 dB per octave above (8 kHz: the top is kept)
TILT_DB_PER_OCTAVE = 2.0  # +- about 1 kHz
BANDS = (0, 4)  # broad peaks and dips, each +- BAND_DB, 0.3-1.5 octaves wide
BAND_DB = 6.0


def microphone_gain(rng: np.random.Generator, length: int) -> np.ndarray:
    """Linear gains for the rfft bins of `length` samples: one random microphone's response."""
    freqs = np.maximum(np.fft.rfftfreq(length, 1 / SAMPLE_RATE), 1.0)
    octaves = np.log2(freqs / 1000.0)
    high = float(np.exp(rng.uniform(*np.log(HIGH_PASS_HZ))))
    low = float(np.exp(rng.uniform(*np.log(LOW_PASS_HZ))))
    steep = float(rng.uniform(12.0, 24.0))
    db = -12.0 * np.maximum(np.log2(high / freqs), 0.0)
    db -= steep * np.maximum(np.log2(freqs / low), 0.0)
    db += float(rng.uniform(-TILT_DB_PER_OCTAVE, TILT_DB_PER_OCTAVE)) * octaves
    for _ in range(int(rng.integers(BANDS[0], BANDS[1] + 1))):
        centre = float(rng.uniform(np.log2(200 / 1000), np.log2(6000 / 1000)))
        width = float(rng.uniform(0.3, 1.5))
        db += float(rng.uniform(-BAND_DB, BAND_DB)) * np.exp(-0.5 * ((octaves - centre) / (width / 2)) ** 2)
    return (10 ** (db / 20)).astype(np.float32)


def colour(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The window as one random microphone hears it, at the same RMS level (peaks kept below full scale)."""
    coloured = scipy.fft.irfft(scipy.fft.rfft(audio) * microphone_gain(rng, len(audio)), len(audio))
    return set_loudness(coloured, 20 * np.log10(rms(audio)))[0]
