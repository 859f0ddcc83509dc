"""The inference worker on the bundled sample's real windows, with a small deterministic counter."""

from __future__ import annotations

import queue
import statistics
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from occupancy.engine.audio import file_windows, level_dbfs
from occupancy.sample import SAMPLE_AUDIO
from occupancy.engine.events import TimedWindow
from occupancy.engine.worker import Smoother, Worker

T0 = datetime(2026, 11, 25, 9, 0, 0, tzinfo=UTC)


class LevelCounter:
    """Counts by loudness (silence 0, louder means more): deterministic, for testing the plumbing."""

    name = "level"
    classes = [0, 1, 2, 3]
    device = "cpu"

    def __init__(self):
        self.batches: list[int] = []

    def count(self, window: np.ndarray) -> int:
        return int(np.clip((level_dbfs(window) + 50) // 8, 0, 3))

    def predict(self, windows: np.ndarray) -> np.ndarray:
        self.batches.append(len(windows))
        return np.eye(4, dtype=np.float32)[[self.count(w) for w in windows]]


class BrokenCounter(LevelCounter):
    def predict(self, windows):
        raise RuntimeError("model exploded")


def sample_windows() -> list[TimedWindow]:
    now = time.monotonic()
    return [
        TimedWindow(T0 + timedelta(seconds=w.start_s), w.samples, 1.0, now) for w in file_windows(SAMPLE_AUDIO)
    ]


@pytest.mark.parametrize(
    "method, expected", [("median", [1, 2, 2, 3, 3]), ("max", [1, 3, 3, 3, 3]), ("mean", [1, 2, 2, 8 / 3, 8 / 3])]
)
def test_smoother_over_the_last_three_counts(method, expected):
    smoother = Smoother(method, 3)
    assert [smoother.add(c) for c in [1, 3, 2, 3, 3]] == pytest.approx(expected)


def test_worker_batches_when_behind_and_emits_every_window_in_order():
    windows = sample_windows()
    inbox: queue.Queue = queue.Queue()
    for w in windows:  # all waiting before the worker starts: it is behind
        inbox.put(w)
    inbox.put(None)
    counter, events = LevelCounter(), []
    worker = Worker(counter, inbox, events.append, batch_size=16, smoothing="median", smoothing_windows=3)
    worker.start()
    worker.join(60)
    assert not worker.is_alive() and worker.error is None
    assert max(counter.batches) == 16 and sum(counter.batches) == len(windows)
    assert [e.start for e in events] == [w.start for w in windows]
    assert all(e.end - e.start == timedelta(seconds=1) for e in events)
    counts = [counter.count(w.samples) for w in windows]
    assert [e.count for e in events] == counts
    assert len(set(counts)) == 4  # the sample's quiet and busy seconds reach every class
    medians = [statistics.median(counts[max(0, i - 2) : i + 1]) for i in range(len(counts))]
    assert [e.smoothed for e in events] == medians
    assert [e.level_dbfs for e in events] == [level_dbfs(w.samples) for w in windows]
    assert all(e.latency_ms >= 0 and e.probabilities[e.count] == 1.0 for e in events)


def test_worker_reports_a_failing_model_and_keeps_the_queue_moving():
    inbox: queue.Queue = queue.Queue(maxsize=4)
    worker = Worker(BrokenCounter(), inbox, lambda e: None)
    worker.start()
    for w in sample_windows()[:20]:  # more than the queue holds: would block if the worker stopped taking
        inbox.put(w, timeout=10)
    inbox.put(None, timeout=10)
    worker.join(10)
    assert not worker.is_alive()
    assert "model exploded" in str(worker.error)
