"""Measure how many training mixtures per second MixtureDataset delivers (dry, reverberant, with workers).

Usage: .venv/bin/python scripts/data_benchmark.py [--examples 4000] [--workers 0 1 2]
The audio cache is warmed first: steady-state training reads every utterance from memory.
"""

from __future__ import annotations

import argparse
import time

import torch

from occupancy.config import load_config
from occupancy.lab.data import MixtureDataset, load_splits


def rate(dataset: MixtureDataset, workers: int, examples: int) -> float:
    loader = torch.utils.data.DataLoader(dataset, batch_size=64, num_workers=workers)
    start = time.perf_counter()
    seen = 0
    for batch in loader:
        seen += len(batch["count"])
        if seen >= examples:
            break
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=4000)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    torch.set_num_threads(1)
    splits = load_splits(load_config().data)
    for recipe, share in (("paper", 0.0), ("realistic", 0.0), ("realistic", 0.5), ("realistic", 1.0)):
        dataset = MixtureDataset(splits, "train", recipe=recipe, length=args.examples, reverb_share=share)
        for i in range(len(dataset)):  # warm the cache (inherited by forked workers)
            dataset[i]
        dataset.set_epoch(1)
        figures = ", ".join(f"{w} workers {rate(dataset, w, args.examples):,.0f}/s" for w in args.workers)
        print(f"{recipe:9s} reverb {share:.1f}: {figures}", flush=True)


if __name__ == "__main__":
    main()
