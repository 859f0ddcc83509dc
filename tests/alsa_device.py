"""A real PortAudio input device that plays a file: the ALSA `file` plugin reading raw s16le samples.

PortAudio reads it at 16 kHz int16 mono and gets exactly the file's samples, faster than real time;
past the file's end it repeats leftovers, so a run must stop after the file's length (--duration).
The device itself is made by occupancy.lab.alsa (the benchmark measures the monitor through it too).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from occupancy.lab.alsa import ALSA_CONF
from occupancy.lab.alsa import ALSA_DEVICE as DEVICE
from occupancy.lab.alsa import alsa_file_device as _device_environment

__all__ = ["DEVICE", "alsa_file_device"]


def alsa_file_device(folder: Path, samples: np.ndarray) -> dict[str, str]:
    """Write `samples` (float in [-1, 1]) as the device's input; return the environment that shows it."""
    if not ALSA_CONF.is_file():
        pytest.skip("needs ALSA's configuration (/usr/share/alsa/alsa.conf)")
    return _device_environment(folder, samples)
