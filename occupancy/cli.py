"""The `occupancy` command: parses flags, loads the config once, dispatches to a subcommand.

Each subcommand lives beside the code it drives, in a module exposing
`add_command(subparsers)`; the parser it adds sets `handler(args, config) -> exit code`.
User mistakes (OccupancyError) end as one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from . import __version__
from .config import load_config
from .errors import OccupancyError

# Subcommand modules, in the order `occupancy --help` lists them.
COMMAND_MODULES = [
    "occupancy.classify",
    "occupancy.data.commands",
    "occupancy.models.commands",
    "occupancy.engine_commands",
    "occupancy.report",
    "occupancy.bench",
    "occupancy.export",
]


class _OneLineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"occupancy: {record.levelname.lower()}: {record.getMessage()}"


def setup_logging(verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLineFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("occupancy").setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("asyncio", "matplotlib", "PIL", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="occupancy",
        description="Count how many people speak at once in a room, live, and log hourly traffic.",
    )
    parser.add_argument("--version", action="version", version=f"occupancy {__version__}")
    parser.add_argument(
        "--config", metavar="PATH", help="settings file (default: $OCCUPANCY_CONFIG, else ./config.yaml)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="print debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    try:
        config = load_config(args.config)
        return int(args.handler(args, config) or 0)
    except OccupancyError as exc:
        print(f"occupancy: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("occupancy: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        sys.stderr.close()  # output piped into `head` and closed: not an error worth a traceback
        return 0


if __name__ == "__main__":
    sys.exit(main())
