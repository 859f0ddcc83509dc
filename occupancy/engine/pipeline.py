"""The real-time engine wired together, the same for the microphone, a replay and the demo:

    source -> block queue -> Capture (slicer) -> window queue -> Worker -> subscribers
                                                                          (StoreWriter first)

A dashboard or the headless printer calls `subscribe(callback)` before `start()`; callbacks run in
the worker thread with each CountEvent, so they must be quick (put it on a queue, or
`call_from_thread`). `source.status` says what the input is doing (e.g. retrying a lost device).
"""

from __future__ import annotations

import logging
import signal
import threading
from contextlib import contextmanager
import queue
import time
from collections.abc import Callable
from pathlib import Path

from ..paths import SAMPLE_RATE
from .capture import Capture, Recorder
from ..config import Config
from ..errors import LogGoneError, OccupancyError
from .store import RunInfo, StoreWriter, summarize_latency
from .events import CountEvent
from .voices import VoicesStage
from .worker import Worker

log = logging.getLogger(__name__)

# Signals that stop a run cleanly, like Ctrl-C: a service manager's stop, a closed terminal or a reload.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


@contextmanager
def _sigint_ignored():
    """Ignore Ctrl-C for the duration (main thread only: signal handlers live there)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextmanager
def stopped_by_signals(stop: Callable[[], None]):
    """While the block runs, SIGTERM, SIGHUP and Ctrl-C (SIGINT) call `stop` (main thread only: signal
    handlers live there), which must take no lock (see Pipeline.request_stop). Once one has come they stay ignored afterwards, instead of going back to killing
    the process: a storm of them must not end a run that stopped cleanly in exit 143 (or SIGINT's 130)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []  # a plain list, no lock: a handler can interrupt the main thread anywhere, even itself

    def on_signal(signum, frame) -> None:
        received.append(signum)
        stop()

    previous = {sig: signal.signal(sig, on_signal) for sig in (*STOP_SIGNALS, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_IGN if received else handler)


class Pipeline:
    """One run: `start()`, then `wait()` until the source ends (or `stop()`), then `close()`."""

    def __init__(
        self,
        config: Config,
        source,
        counter,
        *,
        db_path: str | Path | None = None,
        max_seconds: float | None = None,
        record_dir: str | Path | None = None,
        replace: bool = False,
        voices: VoicesStage | None = None,
    ):
        audio, monitor = config.audio, config.monitor
        self.source = source
        self.counter = counter
        self.db_path = Path(db_path or config.storage.database)
        block_s = audio.block_size / SAMPLE_RATE
        # Both queues hold `monitor.queue_seconds` of audio; when they are full the source drops.
        self.blocks: queue.Queue = queue.Queue(maxsize=max(1, round(monitor.queue_seconds / block_s)))
        self.windows: queue.Queue = queue.Queue(maxsize=max(1, round(monitor.queue_seconds / audio.hop_s)))
        self.capture = Capture(
            source, self.blocks, self.windows, window_s=audio.window_s, hop_s=audio.hop_s,
            max_seconds=max_seconds, recorder=Recorder(record_dir) if record_dir else None,
        )
        self.worker = Worker(
            counter, self.windows, self._emit, batch_size=config.model.batch_size,
            smoothing=monitor.smoothing, smoothing_windows=monitor.smoothing_windows, sex=config.model.sex,
            voices=voices,
        )
        self._config = config
        self._replace = replace  # delete what other runs logged in the source's time first (replay --replace)
        self.writer: StoreWriter | None = None
        self._subscribers: list[Callable[[CountEvent], None]] = []
        self._failed_callbacks: set[int] = set()
        self._launched = False  # start() got as far as starting the threads
        self._closed = False
        self._stop_requested = False
        self._started = 0.0

    def subscribe(self, callback: Callable[[CountEvent], None]) -> None:
        """Call `callback(event)` (in the worker thread) for every counted window."""
        self._subscribers.append(callback)

    def input_stats(self) -> dict[str, int]:
        """The source's overflow/drop/restart counts (empty for a replay)."""
        return self.source.input_stats()

    def start(self) -> None:
        """Open the input and the log (DeviceError/StorageError here, before any thread runs)."""
        self.source.start(self.blocks)
        storage = self._config.storage
        self.writer = StoreWriter(
            self.db_path,
            RunInfo(
                source=self.source.kind, device=self.source.name, model=self.counter.name,
                compute=str(self.counter.device), hop_s=self._config.audio.hop_s,
            ),
            flush_interval_s=storage.flush_interval_s,
            retention_days=storage.retention_days,
            input_stats=self.input_stats,
            claim=self.source.spans,
            replace=self._replace,
        )
        try:
            self.writer.start()
        except OccupancyError:
            self.source.stop()
            self._drain_blocks()
            raise
        self._started = time.monotonic()
        self.capture.start()
        self.worker.start()
        self._launched = True

    def stop(self) -> None:
        """Ask the source to end; everything already captured is still counted and logged."""
        self.source.stop()

    def request_stop(self) -> None:
        """stop() at the next wait(): safe in a signal handler, which may interrupt the main thread while it
        holds the very lock stop() takes (a storm of SIGTERMs deadlocked in the source's Event.set)."""
        self._stop_requested = True

    def wait(self, timeout: float | None = None) -> bool:
        """True once every window is counted; stops the source early if any part has failed."""
        if not self._launched:
            return False
        if self.error is not None or self._stop_requested:
            self.stop()
        self.worker.join(timeout)
        return not self.worker.is_alive()

    @property
    def error(self) -> Exception | None:
        """The first failure of any part (log, model, capture, replay file), or None."""
        parts = (self.writer, self.worker, self.capture, self.source)
        return next((p.error for p in parts if getattr(p, "error", None) is not None), None)

    def close(self) -> None:
        """Stop, count what is queued, flush the log, close the run; raise the first failure."""
        if self._closed or not self._launched:
            return  # already closed, or start() failed and cleaned up itself
        self._closed = True
        self.stop()
        self.capture.join()
        self.worker.join()
        self.writer.stop()
        elapsed = time.monotonic() - self._started
        if self.writer.replaced:
            log.info("replaced %d windows logged by run %s", self.writer.replaced.total(),
                     ", ".join(str(run) for run in sorted(self.writer.replaced)))
        if not isinstance(self.writer.error, LogGoneError):  # else its windows went with the file
            log.info(
                "run %s: %d windows logged to %s in %.1f s (%.1f windows/s); %s; capture-to-log latency %s",
                self.writer.run_id, self.writer.windows, self.db_path, elapsed, self.writer.windows / elapsed,
                ", ".join(f"{k} {v}" for k, v in self.input_stats().items()) or "no drops possible",
                summarize_latency(self.writer.log_latencies_ms),
            )
        if self.error is not None:
            raise self.error

    def run(self) -> None:
        """start(), wait until the source ends, `stop()` is called or Ctrl-C, then close()."""
        self.start()
        try:
            while not self.wait(0.2):
                pass
        except KeyboardInterrupt:
            log.info("interrupted: flushing the log")
        finally:
            with _sigint_ignored():  # a second Ctrl-C must not cut the log's flush and the run's close
                self.close()

    def _emit(self, event: CountEvent) -> None:
        self.writer.put(event)
        for callback in self._subscribers:
            try:
                callback(event)
            except Exception as exc:  # noqa: BLE001 - a broken display must not stop the logging
                if id(callback) not in self._failed_callbacks:
                    self._failed_callbacks.add(id(callback))
                    log.error("event subscriber %r failed: %s", callback, exc)

    def _drain_blocks(self) -> None:
        """Take blocks until the stopped source ends the queue, so its thread can finish."""
        while self.blocks.get() is not None:
            pass
