"""What every part agrees on, defined once: the audio format and where files live.

The project folder is the source checkout (where config.yaml, models/ and runs/ are); training
writes models/ and runs/ there, and the default config resolves its relative paths against it.
The models a user counts with by default are package data (occupancy/models/shipped), found through
importlib.resources, so an installed wheel counts without a checkout; `occupancy export --onnx
--install` copies a model from models/ there.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

SAMPLE_RATE = 16000  # Hz: the rate every window is counted at
WINDOW_S = 1.0  # seconds in one counted window
WINDOW = int(SAMPLE_RATE * WINDOW_S)  # samples in one counted window

PROJECT_DIR = Path(__file__).resolve().parents[1]
MODELS_DIR = PROJECT_DIR / "models"  # where training installs its models (a source checkout)
RUNS_DIR = PROJECT_DIR / "runs"
SHIPPED_DIR = Path(str(resources.files("occupancy") / "models" / "shipped"))  # package data
DEFAULT_MODEL = SHIPPED_DIR / "counter.safetensors"  # the counter monitor, replay and classify use
SEX_MODEL = SHIPPED_DIR / "counter-sex.safetensors"  # the shipped model with the sex-composition head
GATE_MODEL = SHIPPED_DIR / "silero_vad_batch.onnx"  # the speech gate for ONNX Runtime (silero-vad, MIT)

# The speech gate (models/counter.py): a window quieter than VAD_QUIET_DBFS is silent when its speech
# probability is below VAD_THRESHOLD (model.vad_threshold), a louder one only below VAD_LOUD_THRESHOLD.
# 0.4 since counter v4: its network calls far fewer real silent seconds speech (AMI's: 44 -> 26 %), so
# the lower threshold hears 2.7 points more one-voice seconds in rooms at no cost on AMI (RESULTS.md).
# The level since counter v7: the silent seconds the network calls speech are a quiet room's tone (AMI's:
# -73 dBFS, 32 dB under its speech), while silero misses reverberant speech at any level. -55 keeps such
# tone under it up to speech at -25 dBFS; swept over gains on AMI and the real voices in rooms, it and
# `occupancy check`'s range (-45..-30) were chosen together (RESULTS.md, "Counter v7").
VAD_THRESHOLD = 0.4
VAD_LOUD_THRESHOLD = 0.05
VAD_QUIET_DBFS = -55.0
