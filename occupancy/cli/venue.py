"""`occupancy check` and `occupancy dashboard`: commissioning a microphone, and watching the service.

`check` listens (or reads a file) while the installer talks near, stays quiet, then talks from the far
end, and says whether the counter's accuracy will hold there (engine/commissioning.py): exit 0 ready,
1 not ready (the verdict says what to change), 2 a user error. `dashboard` shows the live dashboard
over the log the headless service writes, reading it only (ui/follow.py): `q` leaves the service running.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..config import Config, override
from ..errors import ConfigError, StorageError

MIN_SECONDS = 6  # two seconds for each third


def _seconds(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of seconds: {text!r}") from None
    if not MIN_SECONDS <= value <= 3600:
        raise argparse.ArgumentTypeError(f"must be {MIN_SECONDS}-3600 seconds, got {value}")
    return value


def add_command(subparsers) -> None:
    check = subparsers.add_parser(
        "check", help="check the microphone: levels, noise, clipping, far-end speech, and a verdict",
        description="Listen for --seconds while you talk at a normal voice where people will sit (first third), "
                    "stay quiet (second third), then talk from the far end of the room (last third); print the "
                    "noise floor, speech levels, clipping, dropouts, the share of seconds with speech and a "
                    "verdict. Exit 0 when ready, 1 when something should change. Nothing is recorded to disk.",
    )
    check.add_argument("file", nargs="?", metavar="FILE", help="check a recording instead of the microphone")
    check.add_argument("--seconds", type=_seconds, default=30, metavar="N", help="seconds to listen (default: 30)")
    check.add_argument("--device", metavar="D", help="input device name or index (see `occupancy devices`)")
    check.set_defaults(handler=run_check)

    dashboard = subparsers.add_parser(
        "dashboard", help="watch the log the service writes, on the live dashboard (read-only)",
        description="Show the live dashboard over a log another process writes (the headless service): it "
                    "only reads the log, never locks it, and leaves nothing beside it. q leaves the dashboard; "
                    "the service goes on counting.",
    )
    dashboard.add_argument("--db", metavar="PATH", help="SQLite log (default: storage.database in the config)")
    dashboard.set_defaults(handler=run_watch)


def run_check(args, config: Config) -> int:
    from ..engine.audio import read_audio
    from ..engine.commissioning import PHASES, assess, record
    from ..engine.loading import load_counter_from_config

    if args.file and args.device:
        raise ConfigError("check: give a FILE or --device, not both")
    counter = load_counter_from_config(config.model)
    if args.file:
        audio, dropouts = read_audio(args.file), {}
        source = args.file
    else:
        from ..engine.capture import find_device

        spec = override(config, "audio", device=args.device).audio.device
        source = find_device(spec)["name"]
        third = args.seconds / len(PHASES)
        print(f"listening to {source} for {args.seconds} s; nothing is saved", flush=True)

        def tell(phase: int, text: str) -> None:
            print(f"  {phase * third:4.0f} s: {text} ({third:.0f} s)", flush=True)

        audio, dropouts = record(spec, args.seconds, config.audio.block_size, on_phase=tell)
    try:
        result = assess(audio, counter, dropouts)
    except ValueError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    print(f"check of {source}")
    sys.stdout.write("".join(f"  {line}\n" if not line.startswith("verdict") else f"{line}\n" for line in result.lines()))
    return 0 if result.ready else 1


def run_watch(args, config: Config) -> int:
    from ..ui.dashboard import watch_log

    db_path = Path(os.path.expanduser(str(args.db or config.storage.database)))
    if not db_path.is_file():
        raise StorageError(f"{db_path}: no occupancy log yet (is the service running? it creates the log on start)")
    if not sys.stdout.isatty():
        raise ConfigError("dashboard: needs a terminal (for reports from a script, use `occupancy report`)")
    return watch_log(db_path, config)
