"""What flows between the engine's stages: a timed window (capture -> worker) and a counted one
(worker -> log, dashboard, metrics). Defined apart from every stage so that none imports another
stage's module for its data types.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from ..paths import SAMPLE_RATE

# The times a window can be logged at: the log reaches a window before and the hour after each one,
# which must still be dates (years 1 to 9999) where the calendar ends.
LOG_TIMES = (datetime(1, 1, 2, tzinfo=UTC), datetime(9999, 12, 30, tzinfo=UTC))


@dataclass(frozen=True)
class TimedWindow:
    """A 1-s window placed in time: what capture hands the worker."""

    start: datetime  # UTC
    samples: np.ndarray  # float32 [16000] at 16 kHz
    seconds: float  # time this window accounts for in the log: the hop
    captured_at: float  # time.monotonic() when its last sample arrived
    stream: int = 0  # which stream of the source it belongs to (a replay's file); the voices stage restarts at a new one

    @property
    def end(self) -> datetime:
        return self.start + timedelta(seconds=len(self.samples) / SAMPLE_RATE)


@dataclass(frozen=True)
class CountEvent:
    """One counted window: what the log stores and the dashboard shows."""

    start: datetime  # UTC, window start
    end: datetime  # UTC, window end
    seconds: float  # time this window accounts for (the hop)
    count: int  # most likely class: 0, 1, 2 or 3 (3 means "3 or more")
    probabilities: tuple[float, ...]  # one per class of the counter
    smoothed: float  # smoothing (median|max|mean) over the last `monitor.smoothing_windows` counts
    level_dbfs: float  # input level of the window
    latency_ms: float  # window's last sample captured -> count computed
    captured_at: float  # time.monotonic() when the window's last sample arrived
    women: int | None = None  # with model.sex: how many of `count` are women (None: not estimated)
    men: int | None = None  # ... and men; women + men == count
    voices: int | None = None  # with monitor.voices: distinct voices heard within its horizon (None: not estimated)


def count_label(count: int, top: int) -> str:
    """'3+' for the highest class (it means 'that many or more'), else the number."""
    return f"{count}+" if count == top else str(count)
