"""The inference worker: a thread that turns timed 1-s windows into count events.

It takes every window already waiting (up to `model.batch_size`) in one batch, so it catches up
when it falls behind instead of lagging further. The counter is anything with the interface of
`occupancy.models.load_counter()`'s result: `predict(float32 [B, 16000]) -> [B, classes]`
probabilities, `classes` the count each column stands for (e.g. [0, 1, 2, 3], 3 meaning 3 or more),
plus `name` and `device`.
"""

from __future__ import annotations

import queue
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

import numpy as np

from .audio import level_dbfs
from .events import CountEvent, TimedWindow
from .voices import VoicesStage


class CountModel(Protocol):
    """What the worker needs of a counter (see occupancy.models.counter.Counter)."""

    name: str
    classes: list[int]
    device: object

    def predict(self, windows: np.ndarray) -> np.ndarray: ...

    def predict_with_sex(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...  # only with sex=True


_SMOOTHERS: dict[str, Callable[[deque], float]] = {
    "median": statistics.median,
    "max": max,
    "mean": statistics.fmean,
}


class Smoother:
    """Median, max or mean of the last n counts: steadier occupancy than single windows."""

    def __init__(self, method: str = "median", n: int = 5):
        if method not in _SMOOTHERS:
            raise ValueError(f"smoothing must be one of {', '.join(_SMOOTHERS)}, got {method!r}")
        self._reduce = _SMOOTHERS[method]
        self._recent: deque[int] = deque(maxlen=n)

    def add(self, count: int) -> float:
        self._recent.append(count)
        return float(self._reduce(self._recent))


class Worker(threading.Thread):
    """Consumes TimedWindows (None ends the stream) and calls `emit` with each CountEvent, in order.

    An exception from the counter stops the worker; it is kept in `error` for the pipeline.
    """

    def __init__(
        self,
        counter: CountModel,
        windows: queue.Queue,
        emit: Callable[[CountEvent], None],
        *,
        batch_size: int = 64,
        smoothing: str = "median",
        smoothing_windows: int = 5,
        sex: bool = False,
        voices: VoicesStage | None = None,
    ):
        super().__init__(name="occupancy-worker", daemon=True)
        self.counter = counter
        self.windows = windows
        self.emit = emit
        self.batch_size = batch_size
        self.smoother = Smoother(smoothing, smoothing_windows)
        self.sex = sex
        self.voices = voices  # the distinct-voices stage, or None (monitor.voices off)
        self.error: Exception | None = None
        self.largest_batch = 0

    def run(self) -> None:
        try:
            ended = False
            while not ended:
                batch, ended = self._next_batch()
                if batch:
                    self._count(batch)
        except Exception as exc:  # noqa: BLE001 - any model failure must reach the pipeline, not vanish
            self.error = exc
            self._drain()

    def _next_batch(self) -> tuple[list[TimedWindow], bool]:
        """Block for one window, then take whatever else is already waiting."""
        first = self.windows.get()
        if first is None:
            return [], True
        batch = [first]
        while len(batch) < self.batch_size:
            try:
                item = self.windows.get_nowait()
            except queue.Empty:
                break
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    def _count(self, batch: list[TimedWindow]) -> None:
        self.largest_batch = max(self.largest_batch, len(batch))
        samples = np.stack([w.samples for w in batch])
        if self.sex:
            probs, sexes = self.counter.predict_with_sex(samples)
        else:
            probs, sexes = self.counter.predict(samples), [(None, None)] * len(batch)
        probs = np.asarray(probs, dtype=np.float64)
        if probs.shape != (len(batch), len(self.counter.classes)):
            raise ValueError(f"counter returned shape {probs.shape} for {len(batch)} windows")
        done = time.monotonic()
        for window, p, (women, men) in zip(batch, probs, sexes):
            count = int(self.counter.classes[int(np.argmax(p))])
            self.emit(
                CountEvent(
                    start=window.start,
                    end=window.end,
                    seconds=window.seconds,
                    count=count,
                    probabilities=tuple(float(x) for x in p),
                    smoothed=self.smoother.add(count),
                    level_dbfs=level_dbfs(window.samples),
                    latency_ms=(done - window.captured_at) * 1000.0,
                    captured_at=window.captured_at,
                    women=None if women is None else int(women),
                    men=None if men is None else int(men),
                    voices=None if self.voices is None else self.voices.figure(
                        window.stream, window.start.timestamp(), window.samples, count),
                )
            )

    def _drain(self) -> None:
        """After a failure keep taking windows so capture never blocks on a full queue."""
        while self.windows.get() is not None:
            pass
