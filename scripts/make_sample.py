"""Build the bundled demo recording occupancy/sample/sample.flac and its per-second truth CSV.

90 s in which 0, 1, 2 and 3 LibriSpeech readers speak in turn, at varied levels, over quiet room
tone, with two stretches of non-speech sound (typing, dishes) where the true count is 0.
Each voice is made continuous by dropping its pauses (20-ms frames more than 35 dB under the
utterance's peak), so every second labelled n really holds n active voices.

    python scripts/make_sample.py [--data ../shared/data] [--seed 7]
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
OUT_AUDIO = REPO / "occupancy" / "sample" / "sample.flac"
OUT_TRUTH = REPO / "occupancy" / "sample" / "sample.csv"
RATE = 16000
FRAME = 320  # 20 ms

# (seconds, voices, level of the mix in dBFS, background file or None). Order tells the story of a
# shop morning: empty, one customer, a conversation, a clatter, a group, and the room empty again.
SCRIPT = [
    (8, 0, None, None),
    (12, 1, -26, None),
    (12, 2, -24, None),
    (6, 0, -38, "max_audio_classifier/typing.flac"),
    (10, 3, -22, None),
    (10, 1, -40, None),
    (6, 0, -34, "speech_commands/doing_the_dishes.flac"),
    (10, 2, -34, None),
    (10, 3, -30, None),
    (6, 0, None, None),
]
ROOM_TONE_DBFS = -62.0


def rms_db(x: np.ndarray) -> float:
    return 20 * np.log10(max(float(np.sqrt(np.mean(x.astype(np.float64) ** 2))), 1e-9))


def active_speech(x: np.ndarray) -> np.ndarray:
    """The utterance with its pauses cut out: only frames within 35 dB of its loudest frame."""
    frames = x[: len(x) // FRAME * FRAME].reshape(-1, FRAME)
    energy = 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)
    return frames[energy > energy.max() - 35].reshape(-1)


def speakers(root: Path) -> list[tuple[str, str, Path]]:
    """(speaker id, sex, longest utterance) for each LibriSpeech-mini reader."""
    sexes = {}
    for line in (root / "LibriSpeech" / "SPEAKERS.TXT").read_text().splitlines():
        if line.startswith(";") or "|" not in line:
            continue
        parts = [p.strip() for p in line.split("|")]
        sexes[parts[0]] = parts[1]
    result = []
    for spk_dir in sorted((root / "LibriSpeech" / "train-clean-100").iterdir()):
        files = sorted(spk_dir.rglob("*.flac"), key=lambda p: sf.info(p).frames, reverse=True)
        result.append((spk_dir.name, sexes[spk_dir.name], files[0]))
    return result


def build(data: Path, seed: int) -> tuple[np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    pool = [s for s in speakers(data / "librispeech-mini") if sf.info(s[2]).frames > 14 * RATE]
    rng.shuffle(pool)
    tone = sf.read(data / "noise" / "speechocean762_roomtone" / "7001_070010015_tail.flac", dtype="float32")[0]
    total = sum(seconds for seconds, *_ in SCRIPT) * RATE
    room = np.resize(tone, total)
    room *= 10 ** ((ROOM_TONE_DBFS - rms_db(room)) / 20)
    mix = room.copy()
    truth: list[int] = []
    cursor = 0
    for seconds, voices, level, background in SCRIPT:
        n = seconds * RATE
        segment = np.zeros(n, dtype=np.float32)
        for _ in range(voices):
            _, _, path = pool.pop()
            speech = active_speech(sf.read(path, dtype="float32")[0])
            speech = np.resize(speech, n) if len(speech) >= n else np.pad(speech, (0, n - len(speech)), mode="wrap")
            gain_db = rng.uniform(-6, 6)  # voices at different distances
            segment += speech / 10 ** (rms_db(speech) / 20) * 10 ** (gain_db / 20)
        if background:
            noise = sf.read(data / "noise" / background, dtype="float32")[0]
            start = int(rng.integers(0, max(1, len(noise) - n)))
            segment += np.resize(noise[start:], n)
        if level is not None:
            segment *= 10 ** ((level - rms_db(segment)) / 20)
        mix[cursor : cursor + n] += segment
        truth += [voices] * seconds
        cursor += n
    peak = np.abs(mix).max()
    if peak > 0.99:
        mix *= 0.99 / peak
    return mix, truth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    mix, truth = build(args.data, args.seed)
    sf.write(OUT_AUDIO, mix, RATE, subtype="PCM_16")
    with open(OUT_TRUTH, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["start_s", "end_s", "count"])
        for second, count in enumerate(truth):
            writer.writerow([second, second + 1, count])
    print(f"wrote {OUT_AUDIO} ({len(mix) / RATE:.0f} s) and {OUT_TRUTH}")


if __name__ == "__main__":
    main()
