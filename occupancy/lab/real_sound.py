"""Test sets of real sound: real single voices as recorded and over strong real noise, and real meetings.

Why: figures on our own mixtures hid the counter's worst failure. Tried on real recordings it was
never trained for (one talker in strong noise, a far-field meeting) it read one voice as two in a
quarter of the seconds, confidently, while our clean "test voices alone" read 96 %. These sets show
that failure with what `../shared/data` holds:

- the held-out files of each real-voices folder (`data.voices`: the Picovoice sets, one voice through
  many microphones and rooms) as recorded: every second holds one voice or none, so a count of 2 or
  more is always wrong;
- real single voices (those held-out files and the test speakers' utterances) laid over held-out real
  noise at 0-10 dB SNR, dry and in simulated rooms: a voice that speaks >= 0.6 s of a window must read 1;
- folders of real recordings whose `truth.csv` (uri, start_s, count) labels seconds of `<uri>.flac`
  (the AMI meeting excerpts of `real-dev/ami`).
A window is labelled by the training crops' rule: one voice when it speaks in >= 60 % of the window's
20-ms frames, nobody when in < 10 %; windows in between are left out.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import scipy.signal

from ..engine.audio import read_audio
from ..errors import OccupancyError
from ..paths import SAMPLE_RATE, WINDOW
from .data.corpus import FRAME, MIN_ACTIVE, active_frames
from .data.mixing import rms, set_loudness
from .data.rooms import SOURCES, RirBank
from .data.scenes import MIN_PRESENT
from .data.splits import Splits

NOISY_SNR_DB = (0.0, 10.0)
NOISY_LOUDNESS_DBFS = (-45.0, -15.0)
NOISY_WINDOWS = 1500  # per noisy set: enough for a 95 % bar to be read to about +-1 point
_FRAMES = WINDOW // FRAME


def voice_seconds(paths: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Every whole second of one-voice recordings labelled 1 (the voice speaks >= 60 % of it) or 0
    (< 10 %), the rest left out: windows [N, WINDOW] and counts [N]."""
    windows, counts = [], []
    for path in paths:
        samples = read_audio(path)
        seconds = len(samples) // WINDOW
        if not seconds:
            continue
        share = active_frames(samples)[: seconds * _FRAMES].reshape(seconds, _FRAMES).mean(axis=1)
        for k in np.flatnonzero((share >= MIN_ACTIVE) | (share < MIN_PRESENT)):
            windows.append(samples[k * WINDOW:(k + 1) * WINDOW])
            counts.append(int(share[k] >= MIN_ACTIVE))
    if not windows:
        return np.zeros((0, WINDOW), np.float32), np.zeros(0, np.int64)
    return np.stack(windows).astype(np.float32), np.array(counts, dtype=np.int64)


def held_out_voices(splits: Splits) -> dict[str, list[str]]:
    """The test split's files of each real-voices folder, by folder name."""
    groups: dict[str, list[str]] = {}
    for voice in splits.voices["test"]:
        groups.setdefault(voice.id.split("/", 1)[0], []).extend(voice.files())
    return groups


def noisy_voices(splits: Splits, bank: RirBank | None, seed: int, windows: int = NOISY_WINDOWS) -> tuple[np.ndarray, np.ndarray]:
    """`windows` one-voice seconds of real voices (held-out real-voice files and test speakers, half
    each) over held-out empty-room noise at 0-10 dB SNR, at -45..-15 dBFS; in a simulated room (a
    random room and talker position of `bank`) when a bank is given. Counts are all 1."""
    rng = np.random.default_rng(seed)
    sources = [[f for files in held_out_voices(splits).values() for f in files],
               [f for speaker in splits.speakers["test"] for f in speaker.files()]]
    noise = [n.path for n in splits.test_noise if n.empty_room]
    if not all(sources) or not noise:
        raise OccupancyError("the noisy real-voice test needs held-out real voices (data.voices), test speakers "
                             "and held-out empty-room noise")
    pool = [_speaking(voice_seconds(list(rng.choice(files, size=min(len(files), 400), replace=False))))
            for files in sources]  # a sample of the files keeps decoding short
    noise_audio = [read_audio(path) for path in noise]
    out = np.zeros((windows, WINDOW), dtype=np.float32)
    for i in range(windows):
        speech = pool[i % 2][rng.integers(len(pool[i % 2]))]
        if bank is not None:
            rir = bank.rirs[rng.integers(bank.rooms), rng.integers(SOURCES)]
            speech = scipy.signal.fftconvolve(speech, rir)[:WINDOW].astype(np.float32)
        background = noise_audio[rng.integers(len(noise_audio))]
        start = int(rng.integers(max(len(background) - WINDOW, 0) + 1))
        crop = np.resize(background[start:start + WINDOW], WINDOW)
        snr = rng.uniform(*NOISY_SNR_DB)
        mix = speech + crop * np.float32(rms(speech) / max(rms(crop), 1e-9) / 10 ** (snr / 20))
        out[i], _ = set_loudness(mix, rng.uniform(*NOISY_LOUDNESS_DBFS))
    return out, np.ones(windows, dtype=np.int64)


def _speaking(labelled: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """The windows of voice_seconds' output in which the voice speaks."""
    windows, counts = labelled
    return windows[counts == 1]


def truth_recordings(folder: Path) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """What `folder/truth.csv` (uri, start_s, count) labels: per recording `<uri>.flac` (or .wav) its
    samples, the labelled windows' first samples and their counts (windows past the end left out)."""
    table = folder / "truth.csv"
    with open(table, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    labelled: dict[str, list[tuple[int, int]]] = {}
    for number, row in enumerate(rows, 2):
        try:
            start, count = round(float(row["start_s"]) * SAMPLE_RATE), int(row["count"])
            labelled.setdefault(row["uri"], []).append((start, count))
        except (KeyError, TypeError, ValueError) as exc:
            raise OccupancyError(f"{table}:{number}: needs columns uri, start_s, count ({exc})") from None
    out = []
    for uri, spans in labelled.items():
        path = next((p for p in (folder / f"{uri}.flac", folder / f"{uri}.wav") if p.is_file()), None)
        if path is None:
            raise OccupancyError(f"{table}: no recording {uri}.flac or {uri}.wav beside it")
        samples = read_audio(path)
        kept = [(start, count) for start, count in spans if start + WINDOW <= len(samples)]
        out.append((samples, np.array([s for s, _ in kept], dtype=np.int64), np.array([c for _, c in kept], dtype=np.int64)))
    return out


def truth_folder(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """The windows `folder/truth.csv` labels and their counts, all recordings together."""
    recordings = truth_recordings(folder)
    windows = [samples[start:start + WINDOW] for samples, starts, _ in recordings for start in starts]
    if not windows:
        return np.zeros((0, WINDOW), np.float32), np.zeros(0, np.int64)
    return np.stack(windows).astype(np.float32), np.concatenate([counts for _, _, counts in recordings])
