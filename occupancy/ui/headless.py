"""Headless output for a service or a pipe: one line per window, and a summary for every minute of audio."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from ..engine.events import CountEvent
from ..engine.pipeline import Pipeline, stopped_by_signals


def run_headless(pipeline: Pipeline) -> int:
    """Run the pipeline printing its windows, until the source ends, Ctrl-C, SIGTERM or SIGHUP (all stop cleanly)."""
    printer = HeadlessPrinter(pipeline.input_stats)
    pipeline.subscribe(printer)
    try:
        with stopped_by_signals(pipeline.request_stop):
            pipeline.run()
    finally:
        printer.finish()
    return 0


class HeadlessPrinter:
    """One line per window, and a summary line whenever a minute of audio is complete."""

    def __init__(self, input_stats: Callable[[], dict[str, int]] = dict):
        self._input_stats = input_stats
        self._minute: datetime | None = None
        self._counts: list[int] = []

    def __call__(self, event: CountEvent) -> None:
        minute = event.start.replace(second=0, microsecond=0)
        if self._minute is not None and minute != self._minute:
            self.finish()
        self._minute = minute
        self._counts.append(event.count)
        probs = " ".join(f"{p:.2f}" for p in event.probabilities)
        print(
            f"{event.start.astimezone(UTC):%Y-%m-%d %H:%M:%S.%f}"[:-3]
            + f"Z  count {event.count}  smoothed {event.smoothed:.1f}  level {event.level_dbfs:6.1f} dBFS"
            f"  p [{probs}]  {event.latency_ms:.0f} ms"
            + ("" if event.women is None else f"  women {event.women} men {event.men}")
            + ("" if event.voices is None else f"  voices {event.voices}"),
            flush=True,
        )

    def finish(self) -> None:
        """Print the summary of the minute in progress (at a minute's end, and at the end of a run)."""
        if not self._counts:
            return
        counts = self._counts
        busy = sum(c >= 1 for c in counts) / len(counts)
        print(
            f"-- minute {self._minute.astimezone(UTC):%Y-%m-%d %H:%M}Z: {len(counts)} windows, "
            f"mean {sum(counts) / len(counts):.2f}, peak {max(counts)}, busy {busy:.0%}"
            + "".join(f", {name} {value}" for name, value in self._input_stats().items()),
            flush=True,
        )
        self._counts = []
