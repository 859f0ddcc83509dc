"""The distinct-voices stage (opt-in): feeds one stream's one-voice windows to its figure, in order.

The figure comes from an object with DistinctVoices' interface (models/voices.py, built by
engine/loading.py): `hear(t, window)`, `figure(t)`, `clear()`. Its voiceprints never leave it: this
stage hands on only the integer figure. A new stream (another replayed or classified file) starts
from nothing, so one file's voices are never counted in the next.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class VoiceFigure(Protocol):
    """What the stage needs of occupancy.models.voices.DistinctVoices."""

    def hear(self, t: float, window: np.ndarray) -> None: ...

    def figure(self, t: float) -> int: ...

    def clear(self) -> None: ...


class VoicesStage:
    """`figure(stream, t, samples, count)` for each counted window, in stream order."""

    def __init__(self, voices: VoiceFigure):
        self.voices = voices
        self._stream: object = None

    def figure(self, stream: object, t: float, samples: np.ndarray, count: int) -> int:
        """Distinct voices in the horizon ending at `t` (stream seconds, the window's start), once a window
        the counter heard as exactly one voice has been heard; `stream` names the stream it belongs to."""
        if stream != self._stream:
            self.voices.clear()
            self._stream = stream
        if count == 1:
            self.voices.hear(t, samples)
        return self.voices.figure(t)
