"""Training a counting network on fresh on-the-fly mixtures, on one CPU/GPU or under torchrun (DDP).

One run writes into its folder: `metrics.csv` (per-epoch train/val loss and accuracy), `curves.png`,
`checkpoint.pt` (last epoch: weights, optimiser, schedule; for --resume) and the best epoch by
validation accuracy as `<name>.safetensors` + `<name>.json`. Under torchrun every process trains on
its share of each batch (gloo on CPU, nccl on GPU); only rank 0 validates and writes files.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader, DistributedSampler, RandomSampler
from tqdm import tqdm

from ..config import Config, DataConfig
from ..errors import OccupancyError
from ..paths import SAMPLE_RATE
from ..models.architectures import LogMel, build_model, count_parameters
from ..models.device import keep_freed_memory, pick_device
from ..models.io import load_model, save_model
from .presets import PRESETS
from .widen import widen_melconv

log = logging.getLogger(__name__)

CSV_FIELDS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "minutes"]


_DATA = DataConfig()


@dataclass
class TrainSettings:
    """Everything that defines a run; recorded in the model's JSON as its recipe."""

    arch: str = "melconv"
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    epochs: int = 30
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    optimizer: str = "adamw"  # "adam" (the seed paper) or "adamw"
    schedule: str = "onecycle"  # "onecycle", "constant" (the seed paper) or "time" (see _time_factor)
    label_smoothing: float = 0.0
    train_length: int = 8000  # fresh mixtures per epoch
    val_length: int = 1500
    recipe: str = _DATA.recipe  # these three come from config.yaml's data section (train_settings)
    reverb_share: float = _DATA.reverb_share
    max_speakers: int = _DATA.max_speakers
    paper_share: float = 0.2  # share of each epoch drawn with the seed paper's recipe
    scene_share: float = 0.0  # share of each epoch drawn from conversation scenes (lab/data/scenes.py)
    real_voice_share: float = 0.0  # realistic mixtures and scenes with one real voice of data.voices among the talkers
    pause_tone_share: float = 0.0  # empty rooms and backgrounds heard in the pauses of the training speech
    mic_colour_share: float = 0.0  # examples heard through a random microphone's response (data/microphone.py)
    table_rooms: int = 0  # meeting rooms (microphone on a table, talkers 0.6-2 m away) beside the room bank
    min_snr_db: float = 3.0  # lowest speech-to-background ratio of realistic mixtures and scenes (up to 30 dB)
    sex_head: bool = False
    patience: int = 6  # epochs without a better validation accuracy before stopping; 0: never
    max_minutes: float = 0.0  # stop after the epoch that passes this ("time": at this minute); 0: no limit
    seed: int = 0
    workers: int = 1
    init: str = ""  # model file to start from (same network, or a narrower melconv to widen); "": random


def train_settings(data: DataConfig, preset: str = "default", **given: Any) -> TrainSettings:
    """A run's settings: config.yaml's data section (recipe, reverb share, max speakers), then the
    preset, then what was given (None: not given)."""
    values = dict(recipe=data.recipe, reverb_share=data.reverb_share, max_speakers=data.max_speakers)
    values.update(PRESETS[preset])
    values.update({k: v for k, v in given.items() if v is not None})
    return TrainSettings(**values)


def _rank() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _datasets(config: Config, s: TrainSettings):
    """Fresh training examples of the main recipe, with a `paper_share` by the seed paper's recipe and a
    `scene_share` of seconds from conversation scenes, and a fixed validation set of the main recipe."""
    try:
        from .data import MixtureDataset, load_splits
    except ImportError as exc:
        raise OccupancyError(f"the mixture dataset (occupancy.lab.data) is not available: {exc}") from None
    if s.sex_head and s.real_voice_share > 0:
        raise OccupancyError("--real-voice-share: the real voices have no known sex, so a sex-head model cannot "
                             "learn from them (use 0 with --sex-head)")
    for flag, share in (("--real-voice-share", s.real_voice_share), ("--pause-tone-share", s.pause_tone_share),
                        ("--mic-colour-share", s.mic_colour_share)):
        if not 0 <= share <= 1:
            raise OccupancyError(f"{flag}: must be between 0 and 1, got {share}")
    if s.table_rooms < 0:
        raise OccupancyError(f"--table-rooms: must be at least 0, got {s.table_rooms}")
    if not 0 <= s.min_snr_db < 30:
        raise OccupancyError(f"--min-snr-db: must be at least 0 and below 30 dB, got {s.min_snr_db}")
    splits = load_splits(config.data)
    lengths = {recipe: int(round(s.train_length * share))
               for recipe, share in (("paper", s.paper_share), ("scenes", s.scene_share)) if recipe != s.recipe}
    lengths = {s.recipe: s.train_length - sum(lengths.values()), **lengths}
    seeds = {s.recipe: s.seed, "paper": s.seed + 1, "scenes": s.seed + 3}  # + 2 is validation's
    mixing = dict(reverb_share=s.reverb_share, max_speakers=s.max_speakers, real_voice_share=s.real_voice_share,
                  snr_db=(s.min_snr_db, 30.0), pause_tone_share=s.pause_tone_share, mic_colour_share=s.mic_colour_share)
    parts = [MixtureDataset(splits, split="train", recipe=recipe, length=length, seed=seeds[recipe], fresh=True,
                            table_rooms=s.table_rooms, **mixing)
             for recipe, length in lengths.items() if length > 0]
    val = MixtureDataset(splits, split="validation", recipe=s.recipe, length=s.val_length, seed=s.seed + 2,
                         fresh=False, **mixing)
    if s.workers > 1:
        # one process cache for all: the last count is the total
        clips = [dataset.mixer.preload() for dataset in (*parts, val)][-1]
        log.info("decoded %d recordings before starting %d data workers", clips, s.workers)
    return parts, val


class _Epochs(ConcatDataset):
    """Concatenated mixture datasets whose set_epoch reaches every part (fresh mixtures each epoch)."""

    def set_epoch(self, epoch: int) -> None:
        for part in self.datasets:
            part.set_epoch(epoch)


def _loss(model_out, batch, criterion) -> tuple[torch.Tensor, torch.Tensor]:
    """Count loss (+ half the sex-composition loss when the model has that head) and count logits."""
    if isinstance(model_out, tuple):
        logits, sex = model_out
        loss = criterion(logits, batch["count"])
        loss = loss + 0.25 * (criterion(sex[:, 0], batch["females"]) + criterion(sex[:, 1], batch["males"]))
        return loss, logits
    return criterion(model_out, batch["count"]), model_out


def validate(model: nn.Module, loader, device: torch.device) -> tuple[float, float]:
    """Mean cross-entropy and count accuracy over a loader."""
    model.eval()
    criterion = nn.CrossEntropyLoss(reduction="sum")
    total, loss_sum, correct = 0, 0.0, 0
    with torch.inference_mode():
        for batch in loader:
            batch = {k: v.to(device) for k, v in batch.items()}
            loss, logits = _loss(model(batch["audio"]), batch, criterion)
            loss_sum += float(loss)
            correct += int((logits.argmax(1) == batch["count"]).sum())
            total += len(logits)
    return loss_sum / max(total, 1), correct / max(total, 1)


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in rows]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in (("train", "train"), ("val", "validation")):
        ax_loss.plot(epochs, [r[f"{key}_loss"] for r in rows], marker="o", label=label)
        ax_acc.plot(epochs, [r[f"{key}_acc"] for r in rows], marker="o", label=label)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="count accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        return [{k: (int(v) if k == "epoch" else float(v)) for k, v in row.items()} for row in csv.DictReader(fh)]


def _write_rows(rows: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def train_distributed(config: Config, settings: TrainSettings, out_dir: str | Path, name: str,
                      resume: bool = False, device: str = "auto", threads: int = 0) -> Path | None:
    """`train`, joining the process group first when started by torchrun; None in processes other
    than rank 0 (only rank 0 reports the result)."""
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() and device != "cpu" else "gloo")
    try:
        best = train(config, settings, out_dir, name, resume=resume, device=device, threads=threads)
        if distributed:
            dist.barrier()  # no process leaves while another still talks to it
    finally:
        if distributed:
            dist.destroy_process_group()
    return None if distributed and int(os.environ.get("RANK", "0")) != 0 else best


def train(config: Config, settings: TrainSettings, out_dir: str | Path, name: str,
          resume: bool = False, device: str = "auto", threads: int = 0) -> Path:
    """Run training; returns the best model's weights path (`out_dir/<name>.safetensors`)."""
    s = settings
    rank, world = _rank()
    out = Path(out_dir)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    dev = _device(device, threads, world)
    _seed_everything(s.seed + rank)
    train_set, sampler, train_loader, val_loader = _loaders(config, s, dev, rank, world)

    model = build_model(s.arch, n_classes=s.max_speakers + 1, sex_head=s.sex_head,
                        max_speakers=s.max_speakers, **s.arch_kwargs)
    if s.init and not resume:
        _start_from(model, s.init, s.seed)
    plain = model.to(dev)
    if world > 1:
        model = nn.parallel.DistributedDataParallel(plain, device_ids=[dev.index] if dev.type == "cuda" else None)
    clock = _Clock()
    optimizer, scheduler = _optimizer(model, s, clock, len(train_loader))
    criterion = nn.CrossEntropyLoss(label_smoothing=s.label_smoothing)
    progress = _Progress(out, name)
    if resume:
        progress.resume(plain, optimizer, scheduler, clock, dev)
    if rank == 0:
        log.info("training %s (%s, %s parameters) on %s, %d process(es), %d steps/epoch",
                 name, s.arch, f"{count_parameters(plain):,}", dev, world, len(train_loader))
    for epoch in range(progress.start_epoch, s.epochs):
        train_set.set_epoch(epoch)
        if world > 1:
            sampler.set_epoch(epoch)
        loss, accuracy = _train_epoch(model, train_loader, optimizer, scheduler, criterion, dev, s, clock,
                                      desc=f"epoch {epoch + 1}/{s.epochs}", bar=rank == 0 and sys.stderr.isatty())
        stop = False
        if rank == 0:
            val_loss, val_acc = validate(plain, val_loader, dev)
            stop = progress.end_epoch(
                dict(epoch=epoch, train_loss=loss, train_acc=accuracy, val_loss=val_loss, val_acc=val_acc,
                     lr=scheduler.get_last_lr()[0], minutes=clock.minutes()),
                s, plain, optimizer, scheduler, config,
            )
        if world > 1:
            flag = [stop]
            dist.broadcast_object_list(flag, src=0)
            stop = flag[0]
        if stop:
            break
    return progress.best_path


def _device(device: str, threads: int, world: int) -> torch.device:
    """The device this process trains on (its own GPU under torchrun), with `threads` torch threads (0: torch's)."""
    if threads > 0:
        torch.set_num_threads(threads)
    keep_freed_memory()  # 7-14 % more examples per second on CPU
    dev = pick_device(device)
    if dev.type == "cuda" and world > 1:
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(dev)
    return dev


def _loaders(config: Config, s: TrainSettings, dev: torch.device, rank: int, world: int):
    """The training set (fresh mixtures each epoch), its sampler, and the training and validation loaders."""
    parts, val = _datasets(config, s)
    train_set = _Epochs(parts)
    if world > 1:
        sampler = DistributedSampler(train_set, num_replicas=world, rank=rank, shuffle=True, seed=s.seed)
    else:
        sampler = RandomSampler(train_set, generator=torch.Generator().manual_seed(s.seed))
    loader_kw = dict(num_workers=s.workers, pin_memory=dev.type == "cuda")
    per_rank = max(1, s.batch_size // world)
    train_loader = DataLoader(train_set, batch_size=per_rank, sampler=sampler, drop_last=True, **loader_kw)
    val_loader = DataLoader(val, batch_size=128, shuffle=False, **loader_kw)
    return train_set, sampler, train_loader, val_loader


def _optimizer(model: nn.Module, s: TrainSettings, clock: "_Clock", steps_per_epoch: int):
    """Adam(W) and the learning-rate schedule (one step per batch)."""
    opt_cls = torch.optim.AdamW if s.optimizer == "adamw" else torch.optim.Adam
    optimizer = opt_cls(model.parameters(), lr=s.lr, weight_decay=s.weight_decay)
    if s.schedule == "onecycle":
        steps = s.epochs * steps_per_epoch
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=s.lr, total_steps=steps, pct_start=0.15)
    elif s.schedule == "time":
        if s.max_minutes <= 0:
            raise OccupancyError("the 'time' schedule needs --max-minutes")
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: _time_factor(clock.minutes() / s.max_minutes))
    else:
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    return optimizer, scheduler


def _train_epoch(model, loader, optimizer, scheduler, criterion, dev, s: TrainSettings, clock: "_Clock",
                 desc: str, bar: bool) -> tuple[float, float]:
    """One pass over the epoch's mixtures (cut short when the "time" schedule runs out): mean loss, accuracy."""
    model.train()
    loss_sum, correct, seen = 0.0, 0, 0
    batches = tqdm(loader, desc=desc, leave=False, dynamic_ncols=True, disable=not bar)  # bars on a terminal only
    for batch in batches:
        batch = {k: v.to(dev, non_blocking=True) for k, v in batch.items()}
        loss, logits = _loss(model(batch["audio"]), batch, criterion)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        loss_sum += float(loss.detach()) * len(logits)
        correct += int((logits.argmax(1) == batch["count"]).sum())
        seen += len(logits)
        batches.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
        if s.schedule == "time" and clock.minutes() >= s.max_minutes:
            break  # the schedule has reached zero: validate what we have and stop
    return loss_sum / max(seen, 1), correct / max(seen, 1)


class _Progress:
    """The run folder's record: metrics.csv, curves.png, the best model and checkpoint.pt (for --resume)."""

    def __init__(self, out: Path, name: str):
        self.name = name
        self.out = out
        self.best_path = out / f"{name}.safetensors"
        self.checkpoint = out / "checkpoint.pt"
        self.csv = out / "metrics.csv"
        self.start_epoch, self.best_acc, self.bad_epochs = 0, -1.0, 0
        self.rows: list[dict] = []

    def resume(self, model: nn.Module, optimizer, scheduler, clock: "_Clock", dev: torch.device) -> None:
        if not self.checkpoint.is_file():
            raise OccupancyError(f"{self.checkpoint}: no checkpoint to resume from")
        state = torch.load(self.checkpoint, map_location=dev, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        self.start_epoch, self.best_acc, self.bad_epochs = state["epoch"] + 1, state["best_acc"], state["bad_epochs"]
        clock.shift(state["minutes"])
        self.rows = [r for r in _read_rows(self.csv) if r["epoch"] < self.start_epoch]
        log.info("resuming %s at epoch %d (best validation accuracy so far %.3f)", self.name, self.start_epoch + 1,
                 self.best_acc)

    def end_epoch(self, row: dict, s: TrainSettings, model: nn.Module, optimizer, scheduler, config: Config) -> bool:
        """Record the epoch, keep the model if it is the best so far, checkpoint; True when training should stop."""
        self.rows.append(row)
        _write_rows(self.rows, self.csv)
        _plot(self.rows, self.out / "curves.png")
        log.info("epoch %d/%d: train loss %.3f acc %.3f | val loss %.3f acc %.3f | %.1f min", row["epoch"] + 1,
                 s.epochs, row["train_loss"], row["train_acc"], row["val_loss"], row["val_acc"], row["minutes"])
        if row["val_acc"] > self.best_acc:
            self.best_acc, self.bad_epochs = row["val_acc"], 0
            save_model(model, self.best_path, _metadata(s, model, config, row["epoch"], row["val_acc"], row["minutes"]))
        else:
            self.bad_epochs += 1
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "epoch": row["epoch"], "best_acc": self.best_acc,
                    "bad_epochs": self.bad_epochs, "minutes": row["minutes"]}, self.checkpoint)
        stop = (s.patience > 0 and self.bad_epochs >= s.patience) or (0 < s.max_minutes <= row["minutes"])
        if stop:
            log.info("stopping after epoch %d (%s)", row["epoch"] + 1,
                     "no better validation accuracy" if self.bad_epochs >= s.patience > 0 else "time budget spent")
        return stop


def _start_from(model: nn.Module, path: str, seed: int) -> None:
    """Load a trained model's weights into `model`: as they are when the networks match, or widened
    (widen_melconv) when `model` is a wider melconv than the trained one."""
    trained, meta = load_model(path)
    if {k: v.shape for k, v in trained.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}:
        model.load_state_dict(trained.state_dict())
        how = "same network"
    elif meta["architecture"] == "melconv" and isinstance(model.body[0], LogMel):
        try:
            widen_melconv(trained, model, seed)
        except (ValueError, IndexError, RuntimeError) as exc:
            raise OccupancyError(f"--init {path}: cannot widen it into this network ({exc})") from None
        how = "widened"
    else:
        raise OccupancyError(f"--init {path}: its {meta['architecture']} network has other layers than this one")
    log.info("starting from %s (%s)", path, how)


class _Clock:
    """Minutes of training, carried across --resume."""

    def __init__(self):
        self.started = time.monotonic()

    def minutes(self) -> float:
        return (time.monotonic() - self.started) / 60

    def shift(self, minutes: float) -> None:
        self.started -= minutes * 60


def _time_factor(done: float) -> float:
    """LR factor by share of the time budget spent: 5 % linear warm-up, then cosine down to 0.

    Why: on a shared CPU the examples per minute vary, so a schedule in steps cannot promise to
    finish annealing inside the budget; one in wall-clock time always does (at the cost of exact
    reproducibility).
    """
    if done < 0.05:
        return max(done / 0.05, 0.01)
    return max(0.5 * (1 + math.cos(math.pi * min((done - 0.05) / 0.95, 1.0))), 0.0)


def _metadata(s: TrainSettings, model: nn.Module, config: Config, epoch: int, val_acc: float, minutes: float) -> dict:
    return {
        "architecture": s.arch,
        "arch_kwargs": s.arch_kwargs,
        "classes": list(range(s.max_speakers + 1)),
        "class_meaning": f"number of people speaking at once; {s.max_speakers} means {s.max_speakers} or more",
        "sex_head": s.sex_head,
        "max_speakers": s.max_speakers,
        "sample_rate": SAMPLE_RATE,
        "window_s": 1.0,
        "recipe": dataclasses.asdict(s),
        "training_data": [str(Path(p).name) for p in (*config.data.corpora, *config.data.noise,
                                                      *(config.data.voices if max(s.real_voice_share, s.pause_tone_share) > 0 else ()))],
        "parameters": count_parameters(model),
        "metrics": {"best_epoch": epoch + 1, "val_accuracy": round(val_acc, 4), "train_minutes": round(minutes, 1)},
    }
