"""A real PortAudio input device that plays given samples: ALSA's `file` plugin reading raw s16le.

The benchmark measures the monitor through it, and the tests capture from it; it needs no model
runtime, so the tests of the engine import it without PyTorch.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

ALSA_CONF = Path("/usr/share/alsa/alsa.conf")
ALSA_DEVICE = "occfile"


def alsa_file_device(folder: Path, samples: np.ndarray) -> dict[str, str]:
    """Environment in which PortAudio sees an input device 'occfile' playing `samples` (16 kHz s16le)."""
    raw = folder / "in.raw"
    np.clip(np.round(samples * 32768), -32768, 32767).astype("<i2").tofile(raw)
    conf = folder / "asound.conf"
    conf.write_text(
        f'pcm.{ALSA_DEVICE} {{ type file; slave.pcm "null"; file "/dev/null"; infile "{raw}"; format "raw" }}\n'
    )
    return {**os.environ, "ALSA_CONFIG_PATH": f"{ALSA_CONF}:{conf}"}
