#!/usr/bin/env python
"""Reproduce the seed paper's comparison: every architecture, both recipes, the seed paper's training settings.

Each (architecture, recipe) pair trains for at most --minutes-per-model minutes (batch 32, Adam,
lr 1e-4, cross-entropy; fresh mixtures from ../shared/data), then is scored without the VAD gate on
fixed test-split mixtures of the realistic recipe (dry), the realistic recipe in rooms, and the
report's recipe. Writes runs/zoo/<arch>-<recipe>/ (curves, CSV, model, checkpoint: not kept in git) and,
in the repo, docs/zoo/table.{md,json} with every run's curves as docs/zoo/<arch>-<recipe>-curves.png.

    .venv/bin/python scripts/train_zoo.py --minutes-per-model 3
    .venv/bin/python scripts/train_zoo.py --params   # parameter counts beside the seed paper's Table II
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from occupancy.config import load_config  # noqa: E402
from occupancy.lab.evaluate import TEST_SETS, evaluate_windows, mixture_windows  # noqa: E402
from occupancy.models import ARCHITECTURES, load_counter  # noqa: E402
from occupancy.models.architectures import count_parameters, parameter_table  # noqa: E402
from occupancy.lab.train import PRESETS, TrainSettings, train  # noqa: E402

log = logging.getLogger("zoo")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes-per-model", type=float, default=10.0)
    parser.add_argument("--models", nargs="+", default=list(ARCHITECTURES), choices=ARCHITECTURES)
    parser.add_argument("--recipes", nargs="+", default=["paper", "realistic"], choices=["paper", "realistic"])
    parser.add_argument("--train-length", type=int, default=4000, help="fresh mixtures per epoch")
    parser.add_argument("--test-length", type=int, default=1000, help="test mixtures per test set")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "zoo", help="run folders (weights, checkpoints)")
    parser.add_argument("--report", type=Path, default=REPO / "docs" / "zoo",
                        help="the table (markdown + JSON) and every run's curves, kept in the repo")
    parser.add_argument("--params", action="store_true", help="print the parameter table and stop")
    args = parser.parse_args()
    if args.params:
        print(parameter_table())
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    config = load_config(REPO / "config.yaml" if (REPO / "config.yaml").is_file() else None)
    tests = {name: mixture_windows(config, length=args.test_length, seed=1234, max_speakers=3, **kw)
             for name, kw in TEST_SETS.items()}
    table_file = args.report / "table.json"
    rows = json.loads(table_file.read_text()) if table_file.is_file() else []
    for arch in args.models:
        for recipe in args.recipes:
            run = args.out / f"{arch}-{recipe}"
            settings = TrainSettings(**{**PRESETS["paper"], "arch": arch, "recipe": recipe, "epochs": 1000,
                                        "max_minutes": args.minutes_per_model, "train_length": args.train_length,
                                        "val_length": 1000})
            best = train(config, settings, run, arch, threads=args.threads)
            counter = load_counter(best, device="auto", vad=False, runtime="torch")
            metrics = counter.metadata["metrics"]
            row = {"arch": arch, "recipe": recipe, "params": count_parameters(counter.model),
                   "minutes": metrics["train_minutes"], "best_epoch": metrics["best_epoch"],
                   "val_acc": metrics["val_accuracy"]}
            for name, (windows, counts) in tests.items():
                row[name] = round(evaluate_windows(counter, windows, counts)["network"]["accuracy"], 4)
            log.info("%s", row)
            rows = [r for r in rows if (r["arch"], r["recipe"]) != (arch, recipe)] + [row]
            args.report.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(run / "curves.png", args.report / f"{arch}-{recipe}-curves.png")
            table_file.write_text(json.dumps(rows, indent=1) + "\n")
            (args.report / "table.md").write_text(markdown(rows))
    print(markdown(rows))
    return 0


def markdown(rows: list[dict]) -> str:
    names = list(TEST_SETS)
    lines = ["| model | trained on | params | minutes (CPU) | val acc | " + " | ".join(f"test: {n}" for n in names) + " |",
             "|---|---|---|---|---|" + "---|" * len(names)]
    for r in rows:
        tests = " | ".join(f"{100 * r[n]:.1f} %" for n in names)
        lines.append(f"| {r['arch']} | {r['recipe']} | {r['params']:,} | {r['minutes']} | {100 * r['val_acc']:.1f} % | {tests} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
