"""`occupancy train` and `occupancy evaluate`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shutil
from pathlib import Path

from ..config import Config
from ..errors import OccupancyError
from .architectures import ARCHITECTURES, DEFAULT_ARCHITECTURE

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]


def add_command(subparsers) -> None:
    from ..train import PRESETS, TrainSettings

    defaults = TrainSettings()
    p = subparsers.add_parser(
        "train", help="train a counting network on fresh mixtures (also under torchrun)",
        description="Train a counting network on mixtures made on the fly from config's data.corpora. "
                    "Writes metrics.csv, curves.png, checkpoint.pt and the best model into the run folder. "
                    "Run the same command under `torchrun --nproc-per-node N` for data-parallel training.",
    )
    p.add_argument("--model", default=DEFAULT_ARCHITECTURE, choices=ARCHITECTURES, help="architecture (default: %(default)s)")
    p.add_argument("--name", help="name of the model files (default: the architecture)")
    p.add_argument("--preset", choices=sorted(PRESETS), default="default",
                   help="'report': the report's batch 32, Adam, lr 1e-4, 10 epochs on its recipe; flags below override")
    p.add_argument("--out", metavar="DIR", help="run folder (default: runs/<name>)")
    p.add_argument("--install", action="store_true", help="copy the best model into models/<name>.safetensors at the end")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoint.pt")
    p.add_argument("--arch-kwargs", metavar="JSON", help='architecture options, e.g. \'{"width": 96}\'')
    p.add_argument("--init", metavar="PATH", help="start from this model's weights: the same network (fine-tuning), "
                                                  "or a narrower melconv, widened to --arch-kwargs' width")
    for flag, kind in (("epochs", int), ("batch_size", int), ("lr", float), ("weight_decay", float),
                       ("train_length", int), ("val_length", int), ("reverb_share", float), ("seed_share", float),
                       ("label_smoothing", float), ("patience", int), ("max_minutes", float), ("seed", int),
                       ("workers", int)):
        p.add_argument("--" + flag.replace("_", "-"), type=kind, metavar=kind.__name__.upper(),
                       help=f"(default: {getattr(defaults, flag)})")
    p.add_argument("--optimizer", choices=["adam", "adamw"])
    p.add_argument("--schedule", choices=["onecycle", "constant", "time"], help="time: warm-up then cosine over --max-minutes of wall clock")
    p.add_argument("--recipe", choices=["realistic", "seed"])
    p.add_argument("--sex-head", action="store_true", help="add the sex-composition head (women, men)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.set_defaults(handler=run_train)

    e = subparsers.add_parser(
        "evaluate", help="measure a model: accuracy, per-count accuracy, confusion, MAE",
        description="Score a model on the test split's mixtures (realistic dry, realistic reverberant, report "
                    "recipe; fixed seed) or on a seed-format folder (--data). Prints a table and writes JSON.",
    )
    e.add_argument("--model", metavar="PATH", help="model weights (default: models/counter.safetensors)")
    e.add_argument("--data", metavar="DIR", help="seed-format folder: Audio_<Set><k>.wav + <Set>.csv with 'Speakers'")
    e.add_argument("--length", type=int, default=2000, help="mixtures per set (default: %(default)s)")
    e.add_argument("--seed", type=int, default=1234, help="test mixtures' seed (default: %(default)s)")
    e.add_argument("--split", choices=["test", "validation", "train"], default="test",
                   help="whose voices the mixtures hold; train vs test tells memorised speakers from missing "
                        "capacity (default: %(default)s; the bars and real recordings are test-only)")
    e.add_argument("--no-vad", action="store_true", help="score the network without the VAD gate")
    e.add_argument("--output", metavar="JSON", help="where to write the JSON (default: runs/eval/<model>.json)")
    e.add_argument("--record", action="store_true", help="also store the figures in the model's own JSON")
    e.add_argument("--device", choices=["auto", "cpu", "cuda"])
    e.add_argument("--threads", type=int)
    e.set_defaults(handler=run_evaluate)


def _settings(args) -> "TrainSettings":
    from ..train import PRESETS, TrainSettings

    values = dict(PRESETS[args.preset])
    for f in dataclasses.fields(TrainSettings):
        given = getattr(args, f.name, None)
        if given is not None and f.name not in ("arch", "arch_kwargs", "sex_head"):
            values[f.name] = given
    if args.arch_kwargs:
        try:
            values["arch_kwargs"] = json.loads(args.arch_kwargs)
        except json.JSONDecodeError as exc:
            raise OccupancyError(f"--arch-kwargs: not JSON ({exc})") from None
    return TrainSettings(arch=args.model, sex_head=args.sex_head, **values)


def run_train(args, config: Config) -> int:
    import torch.distributed as dist

    from ..train import train

    settings = _settings(args)
    name = args.name or args.model
    out = Path(args.out) if args.out else REPO / "runs" / name
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        import torch

        dist.init_process_group(backend="nccl" if torch.cuda.is_available() and args.device != "cpu" else "gloo")
    try:
        best = train(config, settings, out, name, resume=args.resume, device=args.device, threads=args.threads)
        if distributed:
            dist.barrier()  # no process leaves while another still talks to it
    finally:
        if distributed:
            dist.destroy_process_group()
    if distributed and int(os.environ.get("RANK", "0")) != 0:
        return 0
    print(f"best model: {best}")
    if args.install:
        target = REPO / "models" / best.name
        shutil.copyfile(best, target)
        shutil.copyfile(best.with_suffix(".json"), target.with_suffix(".json"))
        print(f"installed: {target}")
    return 0


def run_evaluate(args, config: Config) -> int:
    from ..evaluate import (BARS, TEST_SETS, evaluate_sex, evaluate_windows, folder_windows, format_report,
                            mixture_set, recording_sets, throughput)
    from .counter import load_counter

    test = args.split == "test"
    if args.record and not test:
        raise OccupancyError("--record stores test-split figures only: leave out --split")
    counter = load_counter(args.model, device=args.device or config.model.device, vad=not args.no_vad
                           and config.model.vad, vad_threshold=config.model.vad_threshold,
                           threads=args.threads if args.threads is not None else config.model.threads)
    top = counter.classes[-1]
    results = {}
    if args.data:
        windows, counts = folder_windows(args.data)
        results[Path(args.data).name] = evaluate_windows(counter, windows, counts)
    else:
        for set_name, kwargs in TEST_SETS.items():
            log.info("scoring %s on %d %s mixtures", set_name, args.length, args.split)
            windows, counts, sexes = mixture_set(config, length=args.length, seed=args.seed, max_speakers=top,
                                                 split=args.split, **kwargs)
            results[set_name] = evaluate_windows(counter, windows, counts)
            if counter.has_sex_head:
                results[set_name]["sex"] = evaluate_sex(counter, windows, counts, sexes)
        for set_name, (recorded, counts) in (recording_sets(config) if test else {}).items():
            log.info("scoring %s (%d windows of real recordings)", set_name, len(recorded))
            results[set_name] = evaluate_windows(counter, recorded, counts)
    print(format_report(counter.name, results, counter.classes, BARS if test else {}))
    speed = throughput(counter, windows, config.model.batch_size)
    print(f"\nthroughput ({speed['threads']} threads, batches of {speed['batch']}): network {speed['network']:.0f} "
          f"windows/s, whole counter {speed['counter']:.0f} windows/s")
    report = {"model": counter.name, "vad": counter.vad, "split": None if args.data else args.split, "seed": args.seed,
              "results": results, "throughput": speed}
    output = Path(args.output) if args.output else REPO / "runs" / "eval" / f"{counter.name}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(f"\nwritten: {output}")
    if args.record:
        _record(counter, results, speed)
    return 0


def _record(counter, results: dict, speed: dict) -> None:
    """Store each set's accuracies in the model's JSON (the 'metrics' the README table quotes)."""
    from .io import metadata_path

    meta_file = metadata_path(counter.path)
    meta = json.loads(meta_file.read_text(encoding="utf-8"))
    metrics = meta.setdefault("metrics", {})
    for set_name, r in results.items():
        metrics[set_name] = {"accuracy": round(r["counter"]["accuracy"], 4),
                             "network_accuracy": round(r["network"]["accuracy"], 4),
                             "mae": round(r["counter"]["mae"], 4), "n": r["counter"]["n"],
                             "per_count": {k: (round(v, 4) if v is not None else None)
                                           for k, v in r["counter"]["per_count"].items()}}
        for extra in ("vad", "sex"):
            if extra in r:
                metrics[set_name][extra] = r[extra]
    metrics["throughput_windows_per_s"] = speed
    meta_file.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    print(f"recorded in: {meta_file}")
