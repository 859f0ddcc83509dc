"""The `occupancy` command: parses flags, loads the config once, dispatches to a subcommand.

Each family of subcommands has a module here exposing `add_command(subparsers)`; the parsers it
adds set `handler(args, config) -> exit code`, which calls into the part of the package that does the work.
Only the module of the subcommand named on the command line is imported (all of them for
`occupancy --help` or an unknown name), and none of them loads a model runtime or the audio
libraries until its handler runs, so `--help` and `report` start at once.
User mistakes (OccupancyError) end as one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import resource
import sys

# Before numpy loads: its BLAS would start a thread per core for the log-mel front end's matrix
# product, which stalled for 70-770 ms instead of 5 on a machine whose cores were busy.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from .. import __version__
from ..config import load_config
from ..errors import ConfigError, MissingExtraError, OccupancyError

# Every subcommand and the module that adds it, in the order `occupancy --help` lists them.
COMMANDS = {
    "devices": "occupancy.cli.engine",
    "replay": "occupancy.cli.engine",
    "monitor": "occupancy.cli.engine",
    "classify": "occupancy.cli.classify",
    "report": "occupancy.cli.report",
    "check": "occupancy.cli.venue",
    "dashboard": "occupancy.cli.venue",
    "sync": "occupancy.cli.fleet",
    "dataset": "occupancy.cli.lab",
    "train": "occupancy.cli.lab",
    "evaluate": "occupancy.cli.lab",
    "bench": "occupancy.cli.lab",
    "export": "occupancy.cli.lab",
}
COMMAND_MODULES = list(dict.fromkeys(COMMANDS.values()))
# What the train extra installs (pyproject.toml), by import name: a venue install has none of them.
TRAIN_EXTRA = {"torch", "torchaudio", "silero_vad", "pyroomacoustics", "scipy", "tqdm", "onnx", "onnxscript"}


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


def add_global_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--version", action="version", version=f"occupancy {__version__}")
    parser.add_argument(
        "--config", metavar="PATH", help="settings file (default: $OCCUPANCY_CONFIG, else ./config.yaml)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="print debug messages")


def named_command(argv: list[str]) -> str | None:
    """The subcommand argv names, read past the global options as the real parser reads them; None
    when there is none or argv is malformed (the full parser then says what is wrong)."""
    pre = argparse.ArgumentParser(prog="occupancy", add_help=False, exit_on_error=False)
    add_global_options(pre)
    pre.add_argument("command", nargs="?")
    try:
        return pre.parse_known_args(argv)[0].command
    except argparse.ArgumentError:
        return None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser with `command`'s module only, when it is a known subcommand; else with every module."""
    parser = argparse.ArgumentParser(
        prog="occupancy",
        description="Count how many people speak at once in a room, live, and log hourly traffic.",
    )
    add_global_options(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in [COMMANDS[command]] if command in COMMANDS else COMMAND_MODULES:
        importlib.import_module(name).add_command(sub)
    return parser


def run_handler(args: argparse.Namespace) -> int:
    """The subcommand's handler with the config; a package of the train extra missing (train,
    evaluate, bench, export or CUDA in a venue install) is a MissingExtraError saying what to install."""
    for flag in ("config", "db", "plot"):
        if getattr(args, flag, None) == "":  # else read as "not given": a replay would write the default log
            raise ConfigError(f"--{flag}: an empty path names no file (leave --{flag} out for the default)")
    try:
        return int(args.handler(args, load_config(args.config)) or 0)
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] not in TRAIN_EXTRA:
            raise
        raise MissingExtraError(f"`occupancy {args.command}` needs the train extra ({exc.name} is not installed): "
                                "pip install 'occupancy[train]'") from None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(named_command(argv))
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    try:
        return run_handler(args)
    except OccupancyError as exc:
        print(f"occupancy: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("occupancy: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        sys.stderr.close()  # output piped into `head` and closed: not an error worth a traceback
        return 0
    except OSError as exc:  # from any part, e.g. a module imported late by a thread
        if exc.errno not in (errno.EMFILE, errno.ENFILE):
            raise
        limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        print(f"occupancy: error: too many open files ({exc.strerror}; this process may open {limit}: "
              "raise the limit with `ulimit -n`)", file=sys.stderr)
        return 2
