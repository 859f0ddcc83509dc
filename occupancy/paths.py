"""What every part agrees on, defined once: the audio format and where files live.

The project folder is the source checkout (where config.yaml, models/ and runs/ are); training
writes models/ and runs/ there, and the default config resolves its relative paths against it.
"""

from __future__ import annotations

from pathlib import Path

SAMPLE_RATE = 16000  # Hz: the rate every window is counted at
WINDOW_S = 1.0  # seconds in one counted window
WINDOW = int(SAMPLE_RATE * WINDOW_S)  # samples in one counted window

PROJECT_DIR = Path(__file__).resolve().parents[1]
MODELS_DIR = PROJECT_DIR / "models"
RUNS_DIR = PROJECT_DIR / "runs"
DEFAULT_MODEL = MODELS_DIR / "counter.safetensors"  # the counter monitor, replay and classify use
SEX_MODEL = MODELS_DIR / "counter-sex.safetensors"  # the shipped model with the sex-composition head
