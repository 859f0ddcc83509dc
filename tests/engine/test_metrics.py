"""Prometheus metrics served over real HTTP on loopback, fed by a real replay of the sample."""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from occupancy.engine.capture import FileSource
from occupancy.config import Config, MonitorConfig
from occupancy.errors import ConfigError
from occupancy.engine.metrics import Metrics, serve_metrics
from occupancy.models import default_model_path, load_counter
from occupancy.engine.pipeline import Pipeline
from occupancy.sample import SAMPLE_AUDIO
from tests.e2e.test_engine import CLI, HIDE_PORTAUDIO

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 25, 18, 0, tzinfo=UTC)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> dict[str, list]:
    """name -> samples of every metric family the endpoint serves."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def value(samples: list, name: str, **labels) -> float:
    return next(s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def replay_and_scrape(config: Config, db_path: Path, voices=None) -> tuple[list, dict[str, list]]:
    """Replay the sample through a pipeline serving metrics; its events and the endpoint at the end."""
    pipeline = Pipeline(config, FileSource([SAMPLE_AUDIO], start=T0), load_counter(), db_path=db_path, voices=voices)
    events = []
    pipeline.subscribe(events.append)
    port = free_port()
    metrics = serve_metrics(pipeline, config, port)
    try:
        pipeline.run()
        return events, scrape(port)
    finally:
        metrics.server.shutdown()


@pytest.mark.skipif(not default_model_path().is_file(), reason="needs the shipped model")
def test_replay_feeds_the_endpoint(tmp_path):
    events, got = replay_and_scrape(Config(), tmp_path / "o.db")
    last = events[-1]
    assert value(got["occupancy_windows"], "occupancy_windows_total") == len(events) == 90
    assert value(got["occupancy_count"], "occupancy_count") == last.count
    assert value(got["occupancy_smoothed_count"], "occupancy_smoothed_count") == last.smoothed
    assert value(got["occupancy_last_window_end_timestamp_seconds"], "occupancy_last_window_end_timestamp_seconds") \
        == last.end.timestamp()
    latency = got["occupancy_latency_seconds"]
    assert value(latency, "occupancy_latency_seconds_count") == 90
    assert value(latency, "occupancy_latency_seconds_sum") == pytest.approx(sum(e.latency_ms for e in events) / 1000)
    within_1s = sum(e.latency_ms <= 1000 for e in events)
    assert value(latency, "occupancy_latency_seconds_bucket", le="1.0") == within_1s
    info = got["occupancy_monitor_info"][0].labels
    assert info == {"venue": "My venue", "room": "", "model": "counter", "compute": "cpu", "source": "replay"}
    assert value(got["occupancy_level_dbfs"], "occupancy_level_dbfs") == last.level_dbfs
    assert "occupancy_capacity_limit" not in got  # monitor.capacity_limit is 0: no limit
    for name in ("overflows", "dropped", "restarts"):  # a replay cannot drop: zero, but present
        assert value(got[f"occupancy_{name}"], f"occupancy_{name}_total") == 0
    assert "occupancy_distinct_voices" not in got  # monitor.voices is off


@pytest.mark.skipif(not default_model_path().is_file(), reason="needs the shipped model")
def test_distinct_voices_gauge_is_the_latest_figure(tmp_path):
    from occupancy.engine.loading import load_voices_from_config

    config = dataclasses.replace(Config(), monitor=MonitorConfig(voices=True, voices_minutes=4))
    events, got = replay_and_scrape(config, tmp_path / "o.db", load_voices_from_config(config.monitor))
    (sample,) = got["occupancy_distinct_voices"]
    assert sample.value == events[-1].voices >= 1


def test_input_stats_are_read_at_scrape_time():
    counts = {"overflows": 0, "dropped": 0, "restarts": 0}
    metrics = Metrics({"model": "m"}, input_stats=lambda: dict(counts))
    port = free_port()
    metrics.serve(port)
    try:
        counts.update(overflows=3, dropped=7, restarts=1)
        got = scrape(port)
    finally:
        metrics.server.shutdown()
    assert value(got["occupancy_overflows"], "occupancy_overflows_total") == 3
    assert value(got["occupancy_dropped"], "occupancy_dropped_total") == 7
    assert value(got["occupancy_restarts"], "occupancy_restarts_total") == 1


def test_a_busy_port_is_a_one_line_config_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"--metrics-port {port}: cannot listen on 127.0.0.1:{port}") as err:
            Metrics({}).serve(port)
    assert "\n" not in str(err.value)


def test_a_port_out_of_range_is_a_one_line_config_error():
    with pytest.raises(ConfigError, match="--metrics-port 70000: cannot listen on 127.0.0.1:70000"):
        Metrics({}).serve(70000)


def test_monitor_serves_metrics_while_it_runs(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", HIDE_PORTAUDIO + CLI, "monitor", "--headless", "--duration", "3",
         "--metrics-port", str(port), "--db", str(tmp_path / "log.db")],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )
    try:
        proc.stdout.readline()  # the first window is counted: the endpoint is up (demo: the sample, live pace)
        got = scrape(port)
        assert value(got["occupancy_windows"], "occupancy_windows_total") >= 1
        assert got["occupancy_monitor_info"][0].labels["source"] == "demo"
    finally:
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
