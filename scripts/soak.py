#!/usr/bin/env python
"""Soak: replay many hours of audio as fast as possible through the real pipeline and SQLite log,
to show that memory stays flat, no window is dropped and the hourly table equals the events.

The audio is the bundled sample looped (FileSource streams it again and again: nothing is written
to disk but the log). Memory is sampled from /proc/self/status every few seconds against the
number of windows logged; growth is measured after the first hour of audio (warm-up: allocator
pools, SQLite's page cache, bounded history buffers filling).

    .venv/bin/python scripts/soak.py --hours 72 --output docs/bench-soak.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from occupancy.engine.capture import FileSource  # noqa: E402
from occupancy.cli import setup_logging  # noqa: E402
from occupancy.config import load_config  # noqa: E402
from occupancy.engine.loading import load_counter_from_config  # noqa: E402
from occupancy.engine.pipeline import Pipeline  # noqa: E402
from occupancy.sample import SAMPLE_AUDIO  # noqa: E402
from occupancy.engine.store import open_store  # noqa: E402

log = logging.getLogger("soak")
T0 = datetime(2026, 1, 5, 0, 0, tzinfo=UTC)  # midnight: the soak's hours are whole UTC hours


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


class MemorySampler:
    """(seconds since start, windows logged, RSS MB) every `every` seconds, in a daemon thread."""

    def __init__(self, pipeline: Pipeline, every: float = 2.0):
        self.samples: list[tuple[float, int, float]] = []
        self._pipeline, self._every = pipeline, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._started = time.monotonic()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            self._sample()

    def _sample(self) -> None:
        writer = self._pipeline.writer
        self.samples.append((time.monotonic() - self._started, writer.windows if writer else 0, rss_mb()))


def memory_growth(samples: list[tuple[float, int, float]], warmup_windows: int) -> dict:
    """RSS after the warm-up hour and at the end, and the growth per hour of audio fitted over the
    run's second half (a leak keeps growing there; caches and bounded buffers have levelled off)."""
    after = [(w, r) for _, w, r in samples if w >= warmup_windows]
    if len(after) < 6:
        return {"note": "too short to measure growth after the warm-up hour"}
    windows, rss = np.array(after, dtype=float).T
    half = windows >= windows[-1] / 2
    slope_per_window = float(np.polyfit(windows[half], rss[half], 1)[0])
    return {
        "rss_start_mb": round(samples[0][2], 1),
        "rss_after_warmup_mb": round(float(rss[0]), 1),
        "rss_at_half_mb": round(float(rss[half][0]), 1),
        "rss_end_mb": round(float(rss[-1]), 1),
        "rss_peak_mb": round(max(r for _, _, r in samples), 1),
        "growth_after_warmup_mb": round(float(rss[-1] - rss[0]), 1),
        "growth_second_half_mb": round(float(rss[-1] - rss[half][0]), 1),
        "fitted_growth_second_half_mb_per_audio_hour": round(slope_per_window * 3600, 3),
    }


def check_log(db_path: Path, expected_windows: int) -> dict:
    """Every window logged once, and each hourly row equal to its events recounted here."""
    db = open_store(db_path, readonly=True)
    events = db["events"].count
    recount = {
        row["hour"]: row
        for row in db.query(
            "SELECT substr(start_utc, 1, 13) || ':00:00.000+00:00' AS hour, count(*) AS windows, "
            "sum(seconds) AS seconds, sum(count) AS count_sum, max(count) AS peak_count "
            "FROM events GROUP BY 1"
        )
    }
    hourly = {row["hour_utc"]: row for row in db.query("SELECT * FROM hourly")}
    mismatched = [
        hour for hour in recount.keys() | hourly.keys()
        if hour not in recount or hour not in hourly
        or any(recount[hour][k] != hourly[hour][k] for k in ("windows", "seconds", "count_sum", "peak_count"))
    ]
    integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
    run = next(db.query("SELECT * FROM runs ORDER BY id DESC LIMIT 1"))
    db.close()
    return {
        "expected_windows": expected_windows, "events": events, "run_windows": run["windows"],
        "dropped_windows": expected_windows - events, "hours": len(hourly),
        "hours_not_matching_events": mismatched, "integrity_check": integrity,
        "db_mb": round(db_path.stat().st_size / 1e6, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=24.0, help="hours of audio to replay (default: %(default)s)")
    parser.add_argument("--output", type=Path, help="write the figures as JSON here")
    parser.add_argument("--db", type=Path, help="keep the log here (default: a temporary file)")
    args = parser.parse_args()
    setup_logging(False)
    config = load_config()
    duration = sf.info(str(SAMPLE_AUDIO)).duration
    copies = max(1, round(args.hours * 3600 / duration))
    expected = round(copies * duration / config.audio.hop_s)
    with tempfile.TemporaryDirectory(prefix="occupancy-soak-") as tmp:
        db = args.db or Path(tmp) / "soak.db"
        source = FileSource([SAMPLE_AUDIO] * copies, start=T0, block_size=config.audio.block_size)
        pipeline = Pipeline(config, source, load_counter_from_config(config.model, live=True), db_path=db)
        sampler = MemorySampler(pipeline)
        log.info("soak: %d x %s = %.1f h of audio into %s", copies, SAMPLE_AUDIO.name, copies * duration / 3600, db)
        started, cpu = time.perf_counter(), time.process_time()
        sampler.start()
        pipeline.run()
        sampler.stop()
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        result = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "audio_hours": round(copies * duration / 3600, 3), "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
            "x_realtime": round(copies * duration / wall, 1), "load_average_after": os.getloadavg()[0],
            "memory": memory_growth(sampler.samples, warmup_windows=round(3600 / config.audio.hop_s)),
            "log": check_log(db, expected),
            "rss_samples": [(round(t, 1), w, round(r, 1)) for t, w, r in sampler.samples],
        }
    summary = {k: v for k, v in result.items() if k != "rss_samples"}
    print(json.dumps(summary, indent=1))
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    ok = result["log"]["dropped_windows"] == 0 and not result["log"]["hours_not_matching_events"]
    return 0 if ok and result["log"]["integrity_check"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
