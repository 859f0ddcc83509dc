"""Measuring a counter: accuracy, per-count accuracy, confusion matrix and mean absolute count error.

Test sets: mixtures drawn on the fly from the speaker-disjoint test split with a fixed seed (the
realistic recipe dry and in simulated rooms, and the seed paper's recipe), or any folder in the dataset
dataset's format (`Audio_<Set><k>.wav` files and `<Set>.csv` with a `Speakers` column).
Beside the mixtures, real recordings as they are, nothing mixed in: every whole second of the
held-out empty-room noise files (count 0; never heard in training), as recorded and played at a
quiet venue's -70..-40 dBFS, of the test speakers' utterances (count 1: one real voice alone must
not be called two), and of each recording with per-second truth in `data.recordings`.
The same mixtures made of the train speakers' voices tell a network that memorised its speakers
(far better there than on the test split) from one short of capacity (no better there).
Every figure is given for the whole counter (VAD gate + network) and for the network alone, and the
VAD stage's own figures (share of non-speech / speech windows it lets through) beside them, and
with `--peer` the peer's (pyannote's segmentation-3.0, lab/peer.py) on every real set.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..engine.audio import read_audio
from ..config import Config
from ..errors import OccupancyError
from ..models.counter import Counter
from ..models.files import metadata_path
from ..paths import SAMPLE_RATE, WINDOW

log = logging.getLogger(__name__)

# name -> MixtureDataset arguments; the accuracy each must reach for the shipped default.
TEST_SETS = {
    "realistic dry": dict(recipe="realistic", reverb_share=0.0),
    "realistic reverberant": dict(recipe="realistic", reverb_share=1.0),
    "paper recipe": dict(recipe="paper", reverb_share=0.0),
}
# name -> scene settings: conversations of 10-30 s, every labelled second (see lab/data/scenes.py)
SCENE_SETS = {
    "conversation scenes, dry": dict(reverb_share=0.0),
    "conversation scenes, rooms": dict(reverb_share=1.0),
}
QUIET_ROOM_DBFS = (-70.0, -40.0)  # RMS levels of an empty venue, where "nobody speaks" must hold
NOISY_VOICES = {"real voices + noise 0-10 dB": False, "real voices + noise, rooms": True}  # name -> in rooms
BARS = {"realistic dry": 0.93, "realistic reverberant": 0.84, "paper recipe": 0.90, "conversation scenes, dry": 0.92,
        "conversation scenes, rooms": 0.84, "held-out non-speech, -70..-40 dBFS": 0.99, "test voices alone": 0.97,
        "real: conversation-4-speakers": 0.97, "real voices + noise 0-10 dB": 0.95, "real voices + noise, rooms": 0.95,
        "real: ami": 0.93}
# sets of one voice or none, where any count of 2 or more is wrong: the most share of seconds that may read 2+
CEILINGS_2PLUS = {"real voices: picovoice-commands": 0.01, "real voices: picovoice-keywords": 0.01}


def score(predicted: np.ndarray, truth: np.ndarray, classes: list[int]) -> dict:
    """Accuracy, per-count accuracy, confusion (rows truth, columns predicted) and MAE of the count."""
    top = classes[-1]
    truth = np.minimum(truth, top)  # the last class means "that many or more"
    confusion = np.zeros((len(classes), len(classes)), dtype=int)
    np.add.at(confusion, (truth, predicted), 1)
    per_count = {str(c): (float(confusion[c, c] / confusion[c].sum()) if confusion[c].sum() else None)
                 for c in classes}
    return {
        "n": int(len(truth)),
        "accuracy": float((predicted == truth).mean()) if len(truth) else None,
        "per_count": per_count,
        "mae": float(np.abs(predicted - truth).mean()) if len(truth) else None,
        "read_2plus": float((predicted >= 2).mean()) if len(truth) and truth.max() <= 1 else None,
        "confusion": confusion.tolist(),
    }


def mixture_set(config: Config, recipe: str, reverb_share: float, length: int, seed: int,
                max_speakers: int, split: str = "test") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`length` fixed mixtures of `split`'s speakers (same seed, same windows every time), their counts
    and their numbers of women and men [length, 2]."""
    from .data import MixtureDataset, load_splits

    dataset = MixtureDataset(load_splits(config.data), split=split, recipe=recipe, length=length, seed=seed,
                             fresh=False, reverb_share=reverb_share, max_speakers=max_speakers)
    audio, counts, sexes = [], [], []
    for batch in DataLoader(dataset, batch_size=250, num_workers=1):
        audio.append(batch["audio"].numpy())
        counts.append(batch["count"].numpy())
        sexes.append(torch.stack([batch["females"], batch["males"]], dim=1).numpy())
    return np.concatenate(audio), np.concatenate(counts), np.concatenate(sexes)


def mixture_windows(config: Config, recipe: str, reverb_share: float, length: int, seed: int,
                    max_speakers: int) -> tuple[np.ndarray, np.ndarray]:
    """`length` fixed test mixtures and their counts (see mixture_set)."""
    audio, counts, _ = mixture_set(config, recipe, reverb_share, length, seed, max_speakers)
    return audio, counts


def scene_set(config: Config, reverb_share: float, scenes: int, seed: int, max_speakers: int,
              split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """Every labelled second of `scenes` fixed conversation scenes of `split`'s speakers (1 to
    `max_speakers` + 1 talkers each), and its count."""
    from .data import load_splits
    from .data.mixing import Mixer
    from .data.rooms import rir_bank
    from .data.scenes import scene_windows

    splits = load_splits(config.data)
    mixer = Mixer(splits, split, max_speakers, reverb_share)
    if reverb_share > 0:
        mixer.bank = rir_bank(config.data.rir_rooms)
    return scene_windows(mixer, seed, scenes, max_talkers=max_speakers + 1)


def recording_sets(config: Config) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Real sound, cut into whole seconds: name -> (windows, counts).

    The held-out empty-room noise (never in training) as recorded and at a quiet venue's levels, the
    test speakers alone, the held-out real voices as recorded and over held-out real noise (real_sound.py),
    and every recording with per-second truth in `data.recordings`.
    """
    from .data import load_splits
    from .data.rooms import rir_bank
    from .real_sound import held_out_voices, noisy_voices, truth_folder, voice_seconds

    splits = load_splits(config.data)
    noise, zeros = _whole_seconds([n.path for n in splits.test_noise if n.empty_room], count=0)
    voices = [f for speaker in splits.speakers["test"] for f in speaker.files()]
    sets = {
        "held-out non-speech": (noise, zeros),
        "held-out non-speech, -70..-40 dBFS": (_at_levels(noise, QUIET_ROOM_DBFS, seed=0), zeros),
        "test voices alone": _whole_seconds(voices, count=1),
    }
    for folder, files in held_out_voices(splits).items():
        sets[f"real voices: {folder}"] = voice_seconds(files)
    if splits.voices["test"]:
        for set_name, rooms in NOISY_VOICES.items():
            sets[set_name] = noisy_voices(splits, rir_bank(config.data.rir_rooms) if rooms else None, seed=int(rooms))
    for folder in map(Path, config.data.recordings):
        if not folder.is_dir():
            log.warning("%s: recordings folder not found (data.recordings): left out", folder)
            continue
        if (folder / "truth.csv").is_file():
            sets[f"real: {folder.name}"] = truth_folder(folder)
            continue
        for truth in sorted(folder.glob("*.csv")):
            audio = next((p for p in (truth.with_suffix(".wav"), truth.with_suffix(".flac")) if p.is_file()), None)
            if audio is not None:
                sets[f"real: {truth.stem}"] = _labelled_seconds(audio, truth)
    return sets


def _at_levels(windows: np.ndarray, levels_dbfs: tuple[float, float], seed: int) -> np.ndarray:
    """Each window scaled to an RMS level drawn uniformly (in dB) from `levels_dbfs`."""
    rng = np.random.default_rng(seed)
    rms = np.sqrt(np.mean(np.square(windows, dtype=np.float64), axis=1))
    target = 10 ** (rng.uniform(*levels_dbfs, size=len(windows)) / 20)
    gain = np.where(rms > 0, target / np.maximum(rms, 1e-12), 0.0)
    return (windows * gain[:, None]).astype(np.float32)


def _labelled_seconds(audio: Path, truth: Path) -> tuple[np.ndarray, np.ndarray]:
    """The windows a truth CSV (start_s, end_s, count) labels in a recording, and their counts."""
    samples = read_audio(audio)
    with open(truth, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    try:
        spans = [(round(float(r["start_s"]) * SAMPLE_RATE), int(r["count"])) for r in rows]
    except (KeyError, ValueError) as exc:
        raise OccupancyError(f"{truth}: needs columns start_s, end_s, count with numbers ({exc})") from None
    spans = [(start, count) for start, count in spans if start + WINDOW <= len(samples)]
    windows = np.stack([samples[start:start + WINDOW] for start, _ in spans]) if spans else np.zeros((0, WINDOW), np.float32)
    return windows, np.array([count for _, count in spans], dtype=np.int64)


def _whole_seconds(paths: list[str], count: int) -> tuple[np.ndarray, np.ndarray]:
    """Every whole 1-s window of the files (a shorter tail is left out rather than padded)."""
    per_file = [s[: len(s) // WINDOW * WINDOW].reshape(-1, WINDOW) for s in map(read_audio, paths)]
    windows = np.concatenate(per_file) if per_file else np.zeros((0, WINDOW), dtype=np.float32)
    return windows, np.full(len(windows), count, dtype=np.int64)


def folder_windows(folder: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """A dataset folder (`occupancy dataset make` writes them): the first second of each `Audio_<Set><k>.wav` and row k's `Speakers`."""
    folder = Path(folder)
    tables = sorted(folder.glob("*.csv"))
    if len(tables) != 1:
        raise OccupancyError(f"{folder}: expected exactly one <Set>.csv table beside the Audio_<Set><k>.wav files, "
                             f"found {len(tables)}")
    table = tables[0]
    with open(table, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or "Speakers" not in rows[0]:
        raise OccupancyError(f"{table}: needs a 'Speakers' column")
    windows = np.zeros((len(rows), WINDOW), dtype=np.float32)
    counts = np.zeros(len(rows), dtype=np.int64)
    for k, row in enumerate(rows):
        samples = read_audio(folder / f"Audio_{table.stem}{k}.wav")[:WINDOW]
        windows[k, : len(samples)] = samples
        try:
            counts[k] = int(row["Speakers"])
        except ValueError:
            raise OccupancyError(f"{table}: row {k + 1}: Speakers must be a whole number, got {row['Speakers']!r}") from None
    return windows, counts


def evaluate_windows(counter: Counter, windows: np.ndarray, counts: np.ndarray) -> dict:
    """Scores of the network alone and, when the counter has one, of the VAD-gated counter."""
    network = counter.count_probabilities(windows)
    result = {"network": score(network.argmax(1), counts, counter.classes)}
    if counter.vad:
        speech = ~counter.gate_rule.silent(counter.speech_probability(windows), windows)
        gated = np.where(speech, network.argmax(1), 0)
        result["counter"] = score(gated, counts, counter.classes)
        silent = counts == 0
        result["vad"] = {
            "rule": dataclasses.asdict(counter.gate_rule),
            "speech_rate_on_non_speech": float(speech[silent].mean()) if silent.any() else None,
            "speech_rate_on_speech": float(speech[~silent].mean()) if (~silent).any() else None,
        }
    else:
        result["counter"] = result["network"]
    return result


def evaluate_sex(counter: Counter, windows: np.ndarray, counts: np.ndarray, sexes: np.ndarray) -> dict:
    """How often the sex-composition head gets the women and men right, on windows where someone speaks.

    Scored on the counter's own count (so a wrong count makes a wrong composition) and, separately,
    on the windows whose count it got right (the head's own share of the errors).
    """
    probs, composition = counter.predict_with_sex(windows)
    predicted = probs.argmax(axis=1)
    speech = counts > 0
    right = (composition == sexes).all(axis=1)
    count_right = speech & (predicted == counts)
    return {
        "n": int(speech.sum()),
        "composition_accuracy": float(right[speech].mean()) if speech.any() else None,
        "composition_accuracy_when_count_right": float(right[count_right].mean()) if count_right.any() else None,
        "women_accuracy": float((composition[speech, 0] == sexes[speech, 0]).mean()) if speech.any() else None,
        "men_accuracy": float((composition[speech, 1] == sexes[speech, 1]).mean()) if speech.any() else None,
    }


def throughput(counter: Counter, windows: np.ndarray, batch: int, seconds: float = 3.0) -> dict:
    """Windows per second in calls of `batch` windows (classify's), for the network alone and for the
    whole counter (VAD included)."""
    windows = windows[:batch]
    rates = {}
    stages = {"network": counter.count_probabilities, "counter": counter.predict}
    for stage, fn in stages.items():
        fn(windows[:8])  # warm-up
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            fn(windows)
            done += len(windows)
        rates[stage] = round(done / (time.perf_counter() - started), 1)
    rates.update(batch=len(windows), threads=torch.get_num_threads())
    return rates


def peer_scores(peer, config: Config, name: str, windows: np.ndarray, counts: np.ndarray, classes: list[int]) -> dict:
    """The peer's scores on a real set: recordings labelled by a truth.csv heard with their context
    (the peer's 10-s chunks), every other set's windows heard alone, as our counter hears them."""
    from .real_sound import truth_recordings

    folder = next((Path(f) for f in config.data.recordings if name == f"real: {Path(f).name}"
                   and (Path(f) / "truth.csv").is_file()), None)
    if folder is None:
        return score(np.minimum(peer.count(windows), classes[-1]), counts, classes)
    recordings = truth_recordings(folder)
    predicted = np.concatenate([peer.count_in(samples, starts) for samples, starts, _ in recordings])
    return score(np.minimum(predicted, classes[-1]), np.concatenate([c for _, _, c in recordings]), classes)


def evaluate_model(counter: Counter, config: Config, *, split: str = "test", length: int = 2000, seed: int = 1234,
                   data: str | Path | None = None, peer=None) -> tuple[dict[str, dict], dict]:
    """Each test set's scores (a dataset folder's, with `data`; with the test split also the real
    recordings, and on those the `peer`'s too when one is given) and the counter's throughput on the
    last set's windows."""
    results = {}
    if data:
        windows, counts = folder_windows(data)
        results[Path(data).name] = evaluate_windows(counter, windows, counts)
    else:
        for set_name, kwargs in TEST_SETS.items():
            log.info("scoring %s on %d %s mixtures", set_name, length, split)
            windows, counts, sexes = mixture_set(config, length=length, seed=seed, max_speakers=counter.classes[-1],
                                                 split=split, **kwargs)
            results[set_name] = evaluate_windows(counter, windows, counts)
            if counter.has_sex_head:
                results[set_name]["sex"] = evaluate_sex(counter, windows, counts, sexes)
        for set_name, kwargs in SCENE_SETS.items():
            scenes = max(1, length // 12)  # about 12 labelled seconds a scene: as many windows as a mixture set
            log.info("scoring %s on %d %s scenes", set_name, scenes, split)
            windows, counts = scene_set(config, scenes=scenes, seed=seed, max_speakers=counter.classes[-1],
                                        split=split, **kwargs)
            results[set_name] = evaluate_windows(counter, windows, counts)
        for set_name, (recorded, counts) in (recording_sets(config) if split == "test" else {}).items():
            log.info("scoring %s (%d windows of real recordings)", set_name, len(recorded))
            results[set_name] = evaluate_windows(counter, recorded, counts)
            if peer is not None:
                results[set_name]["peer"] = peer_scores(peer, config, set_name, recorded, counts, counter.classes)
    return results, throughput(counter, windows, config.model.batch_size)


def record_metrics(counter: Counter, results: dict, speed: dict) -> Path:
    """Store each set's accuracies in the model's JSON (the 'metrics' the README table quotes)."""
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
    return meta_file


def _pct(value) -> str:
    return "   -  " if value is None else f"{100 * value:5.1f}%"


def _verdict(set_name: str, scores: dict, bars: dict[str, float], ceilings: dict[str, float]) -> str:
    """PASS/FAIL against the set's accuracy bar or its ceiling on reading 2+; "" for a set with neither."""
    if set_name in bars:
        return f"{'PASS' if scores['accuracy'] >= bars[set_name] else 'FAIL'} (>= {100 * bars[set_name]:.0f}%)"
    if set_name in ceilings and scores.get("read_2plus") is not None:
        ceiling = ceilings[set_name]
        return f"{'PASS' if scores['read_2plus'] <= ceiling else 'FAIL'} (2+ <= {100 * ceiling:.0f}%)"
    return ""


def format_report(name: str, results: dict[str, dict], classes: list[int], bars: dict[str, float] = BARS,
                  ceilings: dict[str, float] = CEILINGS_2PLUS) -> str:
    """The table `occupancy evaluate` prints: one line per test set (verdicts against `bars`), then each
    confusion matrix."""
    heads = " ".join(f"{'n=' + str(c) + ('+' if c == classes[-1] else ''):>6}" for c in classes)
    lines = [f"model {name}",
             f"{'test set':<34}{'n':>6} {'counter':>7} {'network':>7} {'peer':>7} {'MAE':>5}  {heads}  {'read 2+':>7}  "
             f"{'VAD 0->sp':>9} {'VAD sp':>6}  bar"]
    for set_name, r in results.items():
        c, vad = r["counter"], r.get("vad", {})
        per = " ".join(f"{_pct(c['per_count'][str(k)]):>6}" for k in classes)
        peer = r.get("peer", {}).get("accuracy")
        lines.append(f"{set_name:<34}{c['n']:>6} {_pct(c['accuracy']):>7} {_pct(r['network']['accuracy']):>7} "
                     f"{_pct(peer):>7} "
                     f"{c['mae']:5.3f}  {per}  {_pct(c.get('read_2plus')):>7}  "
                     f"{_pct(vad.get('speech_rate_on_non_speech')):>9} {_pct(vad.get('speech_rate_on_speech')):>6}  "
                     f"{_verdict(set_name, c, bars, ceilings)}")
    sexed = {name: r["sex"] for name, r in results.items() if "sex" in r}
    if sexed:
        lines.append(f"\nsex composition (windows with speech)            {'women+men':>9} {'if count right':>14} "
                     f"{'women':>6} {'men':>6}")
        for set_name, x in sexed.items():
            lines.append(f"{set_name:<34}{x['n']:>6}    {_pct(x['composition_accuracy']):>9} "
                         f"{_pct(x['composition_accuracy_when_count_right']):>14} {_pct(x['women_accuracy']):>6} "
                         f"{_pct(x['men_accuracy']):>6}")
    for set_name, r in results.items():
        for who in ("counter", "peer"):
            if who not in r:
                continue
            lines.append(f"\nconfusion, {set_name}{', peer' if who == 'peer' else ''} (rows: true count, columns: predicted)")
            lines.append("      " + "".join(f"{c:>7}" for c in classes))
            for c, row in zip(classes, r[who]["confusion"]):
                lines.append(f"{c:>6}" + "".join(f"{v:>7}" for v in row))
    return "\n".join(lines)
