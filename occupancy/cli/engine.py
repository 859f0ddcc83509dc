"""`occupancy devices`, `occupancy replay` and `occupancy monitor`: the real-time engine's commands.

Both runners build one Pipeline (see pipeline.py) and stop cleanly on Ctrl-C, SIGTERM or SIGHUP: what was
captured is counted, the log flushed and the run closed. They show either the Textual dashboard
(monitor's default on a terminal; `replay --dashboard`) or, headless, one line per window and a
summary every minute of audio.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from datetime import UTC, datetime

from ..config import Config, override
from ..errors import ConfigError, DeviceError

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
    replay.add_argument(
        "--replace", action="store_true",
        help="first delete what other runs logged in the time these files cover (without it, such a replay "
        "is refused: an hour of the log never holds more than an hour)",
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
        "--metrics-port", type=int, metavar="N", help="serve Prometheus metrics on port N while running (on monitor.metrics_address, 127.0.0.1 by default)"
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
    add_voices_flags(parser)
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


def add_voices_flags(parser: argparse.ArgumentParser) -> None:
    """--voices and --voices-minutes, shared by monitor, replay and classify."""
    parser.add_argument(
        "--voices", action="store_true", default=None,
        help="also estimate how many different people spoke in the last minutes (monitor.voices; voiceprints "
             "stay in memory, never written: see docs/counter.md)",
    )
    parser.add_argument(
        "--voices-minutes", metavar="N",
        help="minutes the distinct-voices figure looks back over, 1-60 (monitor.voices_minutes, default 5)",
    )


def with_voices_flags(config: Config, args) -> Config:
    """The config with --voices and --voices-minutes applied (validated like the file's settings)."""
    return override(config, "monitor", voices=args.voices, voices_minutes=args.voices_minutes)


def run_devices(args, config: Config) -> int:
    from ..engine.capture import import_sounddevice, input_devices

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
    from ..engine.audio import find_audio_files
    from ..engine.capture import FileSource
    from ..engine.loading import load_counter_from_config, load_voices_from_config
    from ..engine.pipeline import Pipeline

    config = override(config, "audio", hop_s=args.hop)
    config = override(config, "model", sex=args.sex)
    config = with_voices_flags(config, args)
    files = find_audio_files(args.files)
    source = FileSource(
        files, realtime=args.speed == "realtime", start=_parse_start(args.start), block_size=config.audio.block_size
    )
    counter = load_counter_from_config(config.model, live=True)
    pipeline = Pipeline(
        config, source, counter, db_path=args.db, replace=args.replace, voices=load_voices_from_config(config.monitor)
    )
    return _run(pipeline, config, args.dashboard)


def run_monitor(args, config: Config) -> int:
    from ..engine.capture import FileSource, MicSource, find_device
    from ..engine.loading import load_counter_from_config, load_voices_from_config
    from ..engine.pipeline import Pipeline
    from ..sample import SAMPLE_AUDIO

    config = override(config, "audio", device=args.device, hop_s=args.hop)
    config = override(config, "model", sex=args.sex)
    config = with_voices_flags(config, args)
    spec = config.audio.device
    if args.duration is not None and not 0 < args.duration < math.inf:  # NaN fails this too
        raise ConfigError(f"--duration: must be a positive, finite number of seconds, got {args.duration}")
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
        config, source, load_counter_from_config(config.model, live=True), db_path=args.db, max_seconds=args.duration,
        record_dir=args.record, voices=load_voices_from_config(config.monitor),
    )
    if args.metrics_port is not None:
        from ..engine.metrics import serve_metrics

        serve_metrics(pipeline, config, args.metrics_port)
    return _run(pipeline, config, args.dashboard)


def _parse_start(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--start: not an ISO time (e.g. 2026-11-25T18:00:00+01:00), got {text!r}") from None
    try:
        return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    except OverflowError:  # an offset past the calendar's ends
        raise ConfigError(f"--start: {text} lies outside the calendar in UTC") from None


def _run(pipeline, config: Config, dashboard: bool) -> int:
    """Run to the end of the source, or until Ctrl-C/SIGTERM/SIGHUP (or `q` on the dashboard); all stop cleanly."""
    # Textual draws on stderr; the headless lines go to stdout: the screen only where both are a terminal.
    if dashboard and not all(stream is not None and stream.isatty() for stream in (sys.stdout, sys.stderr)):
        log.info("output is not a terminal: printing one line per window instead of the dashboard")
        dashboard = False
    if dashboard:
        from ..ui.dashboard import run_dashboard  # Textual only when the screen is wanted

        return run_dashboard(pipeline, config)
    from ..ui.headless import run_headless

    return run_headless(pipeline)
