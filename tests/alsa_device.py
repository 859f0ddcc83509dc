"""A real PortAudio input device that plays a file: the ALSA `file` plugin reading raw s16le samples.

PortAudio reads it at 16 kHz int16 mono and gets exactly the file's samples, faster than real time;
past the file's end it repeats leftovers, so a run must stop after the file's length (--duration).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

ALSA_CONF = Path("/usr/share/alsa/alsa.conf")
DEVICE = "occfile"


def alsa_file_device(folder: Path, samples: np.ndarray) -> dict[str, str]:
    """Write `samples` (float in [-1, 1]) as the device's input; return the environment that shows it."""
    if not ALSA_CONF.is_file():
        pytest.skip("needs ALSA's configuration (/usr/share/alsa/alsa.conf)")
    raw = folder / "in.raw"
    np.clip(np.round(samples * 32768), -32768, 32767).astype("<i2").tofile(raw)
    conf = folder / "asound.conf"
    conf.write_text(
        f'pcm.{DEVICE} {{ type file; slave.pcm "null"; file "/dev/null"; infile "{raw}"; format "raw" }}\n'
    )
    return {**os.environ, "ALSA_CONFIG_PATH": f"{ALSA_CONF}:{conf}"}
