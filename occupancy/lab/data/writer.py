"""Write a fixed dataset to disk in the seed paper's format: Audio_<Split><k>.wav plus <Split>.csv.

Row k of each CSV describes file k. The parameters are stored in dataset.json so a folder is never
silently mixed from two different datasets, and an interrupted run resumes where it stopped: the CSV
holds only rows whose audio file was completely written before them.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import os
from pathlib import Path

import soundfile as sf
from tqdm import tqdm

from ...paths import SAMPLE_RATE
from ...config import DataConfig
from .corpus import DataError
from .dataset import MixtureDataset
from .mixing import COLUMNS
from .splits import load_splits

log = logging.getLogger(__name__)

FILE_NAMES = {"train": "Train", "validation": "Validation", "test": "Test"}
FORMAT_VERSION = 1


def wav_path(out: Path, split: str, index: int) -> Path:
    return out / f"Audio_{FILE_NAMES[split]}{index}.wav"


def csv_path(out: Path, split: str) -> Path:
    return out / f"{FILE_NAMES[split]}.csv"


def csv_row(meta: dict) -> dict:
    """Lists (speaker ids, files, offsets, gains, rooms) become ';'-separated cells."""
    return {k: ";".join(map(str, v)) if isinstance(v, list) else v for k, v in meta.items()}


def make_dataset(out: str | Path, config: DataConfig, sizes: dict[str, int]) -> None:
    """Write (or finish writing) the dataset described by `config` and `sizes` into `out`."""
    out = Path(out)
    params = {
        "format": FORMAT_VERSION,
        "sizes": sizes,
        **{k: v for k, v in dataclasses.asdict(config).items() if k != "cache_mb"},
    }
    splits = load_splits(config)  # first: a wrong corpus path must not leave a claimed folder behind
    _claim_folder(out, params)
    splits.save(out / "splits.json")
    for split, size in sizes.items():
        dataset = MixtureDataset(
            splits, split, config.recipe, size, config.seed, fresh=False,
            reverb_share=config.reverb_share, max_speakers=config.max_speakers,
        )
        _write_split(out, split, dataset)


def _claim_folder(out: Path, params: dict) -> None:
    """Refuse a folder holding anything but this same dataset; otherwise record the parameters."""
    spec = out / "dataset.json"
    if spec.is_file():
        try:
            stored = json.loads(spec.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DataError(f"{spec}: unreadable ({exc}); delete the folder or choose another --out") from None
        if stored != params:
            changed = sorted(k for k in params.keys() | stored.keys() if params.get(k) != stored.get(k))
            raise DataError(
                f"{out} holds a different dataset (differs in {', '.join(changed)}); choose another --out"
            )
        log.info("%s: resuming the dataset already there", out)
        return
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"{out}: not an empty folder and holds no dataset.json; choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
        spec.write_text(json.dumps(params, indent=1) + "\n", encoding="utf-8")
    except OSError as exc:
        raise DataError(f"{out}: cannot create the dataset folder ({exc.strerror or exc})") from None


def _complete_rows(path: Path) -> int:
    """Rows fully written to a CSV; a row cut off by an interruption is removed."""
    if not path.is_file():
        return 0
    data = path.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    if complete != data:
        path.write_bytes(complete)
    return max(complete.count(b"\n") - 1, 0)


def _write_split(out: Path, split: str, dataset: MixtureDataset) -> None:
    table = csv_path(out, split)
    done = _complete_rows(table)
    for k in range(min(done, len(dataset))):  # a file deleted since: write it again
        if not wav_path(out, split, k).is_file():
            _write_wav(wav_path(out, split, k), dataset.example(k)[0])
    with open(table, "a", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        if done == 0:
            writer.writeheader()
        for k in tqdm(range(done, len(dataset)), initial=done, total=len(dataset), desc=FILE_NAMES[split], unit="file"):
            audio, meta = dataset.example(k)
            _write_wav(wav_path(out, split, k), audio)
            writer.writerow(csv_row(meta))
            fh.flush()


def _write_wav(path: Path, audio) -> None:
    """Written beside and renamed, so a file that exists is always complete."""
    tmp = path.with_name(path.name + ".part")
    sf.write(tmp, audio, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    os.replace(tmp, path)
