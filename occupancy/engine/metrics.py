"""Prometheus metrics of a running monitor, so many venues can be watched from one Grafana.

    metrics = serve_metrics(pipeline, config, port=9108)   # before pipeline.run()

`Metrics.observe(event)` is subscribed to the pipeline's count events (it runs in the worker thread
and only sets a few numbers). The source's overflow/drop/restart counts are read when Prometheus
scrapes, so they are never stale. Each exporter has its own CollectorRegistry: no process-wide
state, and two pipelines in one process (tests) never collide.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Gauge, Histogram, Info, start_http_server
from prometheus_client import Counter as PromCounter
from prometheus_client.core import CounterMetricFamily

from ..config import Config
from ..errors import ConfigError
from .events import CountEvent

log = logging.getLogger(__name__)

# Capture-to-count latency: a healthy CPU monitor sits in the first buckets, a backlog in the last.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# The input stats (Pipeline.input_stats()) and what they mean on a dashboard.
INPUT_STATS = {
    "overflows": "input overflows reported by PortAudio (samples lost before they reached us)",
    "dropped": "audio blocks dropped because the capture queue was full (the model fell behind)",
    "restarts": "times the input stream failed and was reopened",
}


class _InputStats:
    """A collector reading the input stats at scrape time (they live in the capture thread)."""

    def __init__(self, input_stats: Callable[[], dict[str, int]]):
        self._input_stats = input_stats

    def collect(self):
        values = self._input_stats()
        for name, doc in INPUT_STATS.items():
            family = CounterMetricFamily(f"occupancy_{name}", doc)
            family.add_metric([], values.get(name, 0))
            yield family


class Metrics:
    """The monitor's metrics in their own registry; feed it with `observe(event)`."""

    def __init__(
        self, info: dict[str, str], input_stats: Callable[[], dict[str, int]] = dict, voices_minutes: int | None = None,
        capacity_limit: int = 0,
    ):
        """`voices_minutes`: the distinct-voices horizon with monitor.voices on, else None (no such gauge);
        `capacity_limit`: monitor.capacity_limit, served as a gauge the fleet's alert compares with (0: none)."""
        self.registry = CollectorRegistry()
        self.server = None
        r = self.registry
        self.count = Gauge("occupancy_count", "people speaking at once in the latest window (3 means 3+)", registry=r)
        self.smoothed = Gauge("occupancy_smoothed_count", "smoothed occupancy over the last windows", registry=r)
        self.windows = PromCounter("occupancy_windows", "windows counted", registry=r)
        self.level = Gauge("occupancy_level_dbfs", "input level of the latest window (digital silence: a dead "
                           "or muted microphone)", registry=r)
        if capacity_limit > 0:
            Gauge("occupancy_capacity_limit", "monitor.capacity_limit: the smoothed count above which the room is "
                  "over capacity", registry=r).set(capacity_limit)
        self.last_window = Gauge(
            "occupancy_last_window_end_timestamp_seconds", "end of the latest counted window (Unix time)",
            registry=r,
        )
        self.latency = Histogram(
            "occupancy_latency_seconds", "window's last sample captured -> count computed",
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.voices = None if voices_minutes is None else Gauge(
            "occupancy_distinct_voices",
            f"distinct voices heard in the last {voices_minutes} min (approximate; the figure only, never a voiceprint)",
            registry=r,
        )
        Info("occupancy_monitor", "what this monitor runs", registry=r).info(info)
        r.register(_InputStats(input_stats))

    def observe(self, event: CountEvent) -> None:
        """Record one count event (called in the worker thread: only sets numbers)."""
        self.count.set(event.count)
        self.smoothed.set(event.smoothed)
        self.windows.inc()
        self.level.set(event.level_dbfs)
        self.last_window.set(event.end.timestamp())
        self.latency.observe(event.latency_ms / 1000.0)
        if self.voices is not None and event.voices is not None:
            self.voices.set(event.voices)

    def serve(self, port: int, addr: str = "127.0.0.1") -> None:
        """Serve /metrics over HTTP from a daemon thread (`self.server.shutdown()` stops it)."""
        try:
            self.server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        except (OSError, OverflowError) as exc:  # OverflowError: a port outside 0-65535
            reason = getattr(exc, "strerror", None) or exc
            raise ConfigError(f"--metrics-port {port}: cannot listen on {addr}:{port} ({reason})") from None
        log.info("serving Prometheus metrics on http://%s:%d/metrics", addr, port)


def serve_metrics(pipeline, config: Config, port: int, addr: str | None = None) -> Metrics:
    """Subscribe metrics to a pipeline (before it starts) and serve them on addr:port (default:
    monitor.metrics_address). Venue and room are in the info metric for joins; a fleet's Prometheus puts
    them on every series as target labels (deploy/prometheus/)."""
    metrics = Metrics(
        {
            "venue": config.monitor.venue,
            "room": config.monitor.room,
            "model": pipeline.counter.name,
            "compute": str(pipeline.counter.device),
            "source": pipeline.source.kind,
        },
        input_stats=pipeline.input_stats,
        voices_minutes=config.monitor.voices_minutes if config.monitor.voices else None,
        capacity_limit=config.monitor.capacity_limit,
    )
    pipeline.subscribe(metrics.observe)
    metrics.serve(port, addr or config.monitor.metrics_address)
    return metrics
