"""`occupancy dataset make`: write a fixed training set to disk in the report's format."""

from __future__ import annotations

import argparse

from ..config import Config, override
from .export import make_dataset
from .mixing import RECIPES


def add_command(subparsers) -> None:
    parser = subparsers.add_parser("dataset", help="make training data from speech corpora")
    sub = parser.add_subparsers(dest="dataset_command", metavar="ACTION", required=True)
    make = sub.add_parser(
        "make",
        help="write mixtures as Audio_<Split><k>.wav plus one metadata CSV per split",
        description="Write labelled 1-s mixtures (speaker-disjoint train/validation/test). "
        "The same settings give the same bytes; an interrupted run resumes.",
    )
    make.add_argument("--out", required=True, metavar="DIR", help="output folder (new, or one this command began)")
    make.add_argument("--train", type=_count, default=100000, metavar="N", help="training examples (default 100000)")
    make.add_argument("--val", type=_count, default=10000, metavar="N", help="validation examples (default 10000)")
    make.add_argument("--test", type=_count, default=10000, metavar="N", help="test examples (default 10000)")
    make.add_argument("--recipe", choices=RECIPES, help="mixture recipe (default: data.recipe in the config)")
    make.add_argument(
        "--corpus", nargs="+", action="extend", metavar="PATH",
        help="speech corpus folders: LibriSpeech or speechocean762 layout (default: data.corpora)",
    )
    make.add_argument("--seed", type=int, metavar="N", help="seed for splits and mixtures (default: data.seed)")
    make.set_defaults(handler=run_make)


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def run_make(args: argparse.Namespace, config: Config) -> int:
    config = override(config, "data", corpora=args.corpus, recipe=args.recipe, seed=args.seed)
    make_dataset(args.out, config.data, {"train": args.train, "validation": args.val, "test": args.test})
    print(f"dataset written to {args.out}")
    return 0
