"""`occupancy devices`, `occupancy replay` and `occupancy monitor`: the real-time engine's commands.

Both runners build one Pipeline (see pipeline.py) and stop cleanly on Ctrl-C or SIGTERM: what was
captured is counted, the log flushed and the run closed. They show either the Textual dashboard
(monitor's default on a terminal; `replay --dashboard`) or, headless, one line per window and a
summary every minute of audio.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Callable
from datetime import UTC, datetime

from .audio import find_audio_files
from .capture import FileSource, MicSource, find_device, input_devices, import_sounddevice
from .config import Config, override
from .errors import ConfigError, DeviceError, ModelError
from .pipeline import Pipeline
from .sample import SAMPLE_AUDIO
from .worker import CountEvent

log = logging.getLogger(__name__)


def add_command(subparsers) -> None:
    devices = subparsers.add_parser("devices", help="list the audio input devices")
    devices.set_defaults(handler=run_devices)

    replay = subparsers.add_parser(
        "replay", help="count recorded WAV/FLAC files through the live pipeline and log them"
    )
    replay.add_argument("files", nargs="+", metavar="FILE", help="audio files or folders of them")
    replay.add_argument(
        "--speed", choices=["realtime", "max"], default="realtime",
        help="pace like a live stream (default) or go as fast as possible",
    )
    replay.add_argument(
        "--start", metavar="ISO-TIME",
        help="time the first file starts, e.g. 2026-11-25T18:00:00+01:00 (no offset: UTC); "
        "default: each file's modification time minus its duration",
    )
    _common_flags(replay, dashboard_default=False)
    replay.set_defaults(handler=run_replay)

    monitor = subparsers.add_parser(
        "monitor", help="count people speaking at the microphone, live, and log it "
        "(no microphone: replays the bundled sample)"
    )
    monitor.add_argument("--device", metavar="D", help="input device name or index (see `occupancy devices`)")
    monitor.add_argument(
        "--record", metavar="DIR", help="also save the raw audio as FLAC files in DIR (off by default)"
    )
    monitor.add_argument(
        "--duration", type=float, metavar="SECONDS",
        help="stop after this many seconds of audio (default: run until stopped)",
    )
    monitor.add_argument(
        "--metrics-port", type=int, metavar="N", help="serve Prometheus metrics on 127.0.0.1:N while running"
    )
    _common_flags(monitor, dashboard_default=True)
    monitor.set_defaults(handler=run_monitor)


def _common_flags(parser: argparse.ArgumentParser, dashboard_default: bool) -> None:
    parser.add_argument("--db", metavar="PATH", help="SQLite log (default: storage.database in the config)")
    parser.add_argument("--hop", type=float, metavar="SECONDS", help="seconds between window starts (audio.hop_s)")
    parser.add_argument(
        "--sex", action="store_true", default=None,
        help="also estimate how many women and men speak, logged and shown (model.sex): counts then come "
             "from models/counter-sex.safetensors unless model.path names another model with that head",
    )
    view = parser.add_mutually_exclusive_group()
    view.add_argument(
        "--headless", dest="dashboard", action="store_false",
        help="print one line per window, a summary every minute" + ("" if dashboard_default else " (default)"),
    )
    view.add_argument(
        "--dashboard", dest="dashboard", action="store_true",
        help="show the live Textual dashboard" + (" (default on a terminal)" if dashboard_default else ""),
    )
    parser.set_defaults(dashboard=dashboard_default)


def run_devices(args, config: Config) -> int:
    sd = import_sounddevice()
    devices = input_devices()
    if not devices:
        print("no audio input devices found")
        return 1
    default = sd.default.device[0]
    for d in devices:
        mark = "*" if d["index"] == default else " "
        host = sd.query_hostapis(d["hostapi"])["name"]
        print(
            f"{mark} {d['index']:3d}  {d['name']}  ({host}, {d['max_input_channels']} ch, "
            f"default {d['default_samplerate']:.0f} Hz)"
        )
    return 0


def run_replay(args, config: Config) -> int:
    config = override(config, "audio", hop_s=args.hop)
    config = override(config, "model", sex=args.sex)
    files = find_audio_files(args.files)
    source = FileSource(
        files, realtime=args.speed == "realtime", start=_parse_start(args.start), block_size=config.audio.block_size
    )
    return _run(Pipeline(config, source, _load_counter(config), db_path=args.db), config, args.dashboard)


def run_monitor(args, config: Config) -> int:
    config = override(config, "audio", device=args.device, hop_s=args.hop)
    config = override(config, "model", sex=args.sex)
    spec = config.audio.device
    if args.duration is not None and args.duration <= 0:
        raise ConfigError(f"--duration: must be a positive number of seconds, got {args.duration}")
    try:
        find_device(spec)
        source = MicSource(spec, config.audio.block_size)
    except DeviceError as exc:
        if spec is not None:
            raise
        log.warning("%s: replaying the bundled sample in real time instead (demo)", exc)
        source = FileSource(
            [SAMPLE_AUDIO], realtime=True, start=datetime.now(UTC), block_size=config.audio.block_size,
            repeat=True, kind="demo",
        )
    pipeline = Pipeline(
        config, source, _load_counter(config), db_path=args.db, max_seconds=args.duration, record_dir=args.record
    )
    if args.metrics_port is not None:
        from .metrics import serve_metrics

        serve_metrics(pipeline, config, args.metrics_port)
    return _run(pipeline, config, args.dashboard)


def _parse_start(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--start: not an ISO time (e.g. 2026-11-25T18:00:00+01:00), got {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _load_counter(config: Config):
    """The shipped counter (with model.sex, the shipped sex-composition model); torch gets all cores
    but one, left for capture and the log writer."""
    from .models import load_counter, sex_model_path

    model = config.model
    threads = model.threads or max(1, (os.cpu_count() or 2) - 1)
    counter = load_counter(
        path=model.path, device=model.device, vad=model.vad, vad_threshold=model.vad_threshold, threads=threads,
        sex=model.sex,
    )
    if model.sex and not counter.has_sex_head:
        raise ModelError(f"{counter.path}: model.sex needs a model with a sex-composition head "
                         f"(such as {sex_model_path().name}, trained with --sex-head)")
    return counter


def _run(pipeline: Pipeline, config: Config, dashboard: bool) -> int:
    """Run to the end of the source, or until Ctrl-C/SIGTERM (or `q` on the dashboard); all stop cleanly."""
    if dashboard and not sys.stdout.isatty():
        log.info("output is not a terminal: printing one line per window instead of the dashboard")
        dashboard = False
    if dashboard:
        from .dashboard import run_dashboard  # Textual only when the screen is wanted

        return run_dashboard(pipeline, config)
    printer = HeadlessPrinter(pipeline.counters)
    pipeline.subscribe(printer)
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: pipeline.stop())
    try:
        pipeline.run()
    finally:
        signal.signal(signal.SIGTERM, previous)
        printer.finish()
    return 0


class HeadlessPrinter:
    """One line per window, and a summary line whenever a minute of audio is complete."""

    def __init__(self, counters: Callable[[], dict[str, int]] = dict):
        self._source_counters = counters
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
            + ("" if event.women is None else f"  women {event.women} men {event.men}"),
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
            + "".join(f", {name} {value}" for name, value in self._source_counters().items()),
            flush=True,
        )
        self._counts = []
