"""How loud must speech reach the microphone for the counter to stay accurate? The thresholds of
`occupancy check` come from this table.

Each real recording of ../shared/data is scaled as a microphone's gain would scale it (one gain for
the whole recording, clipped at full scale) so that its speech sits at a given level (the median
RMS level of its labelled speech seconds), and counted by the shipped counter (ONNX Runtime, as a
venue counts). Printed per level: the share of seconds counted right on the real meetings (AMI
excerpts, per-second truth) and the 4-person conversation, the share of real single-voice seconds
(Picovoice's crowd-sourced commands, every 4th file) read as 1 voice, and, with the non-speech
recordings scaled to the same level as their own median, the share of their seconds read as 0.

    python scripts/level_sweep.py [--data ../shared/data] [--json docs/level-sweep.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

from occupancy.engine.audio import read_audio
from occupancy.models import load_counter
from occupancy.models.counter import rms_dbfs
from occupancy.paths import SAMPLE_RATE

LEVELS_DBFS = (-70, -65, -60, -55, -50, -45, -40, -35, -30, -25, -20, -15, -10, -6)
WINDOW = SAMPLE_RATE


def labelled(audio: Path, truth_rows: list[tuple[float, int]]) -> tuple[np.ndarray, np.ndarray]:
    samples = read_audio(audio)
    spans = [(round(s * SAMPLE_RATE), c) for s, c in truth_rows if round(s * SAMPLE_RATE) + WINDOW <= len(samples)]
    return np.stack([samples[a:a + WINDOW] for a, _ in spans]), np.array([c for _, c in spans])


def whole_seconds(paths: list[Path]) -> list[np.ndarray]:
    per_file = []
    for path in paths:
        samples = read_audio(path)
        if len(samples) >= WINDOW:
            per_file.append(samples[: len(samples) // WINDOW * WINDOW].reshape(-1, WINDOW))
    return per_file


def recordings(data: Path) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """Set name -> recordings, each (windows [n, 16000], counts [n]) at the level it was recorded."""
    ami = data / "real-dev/ami"
    rows: dict[str, list[tuple[float, int]]] = {}
    with open(ami / "truth.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            rows.setdefault(row["uri"], []).append((float(row["start_s"]), int(row["count"])))
    conv = data / "real/conversation-4-speakers"
    with open(conv.with_suffix(".csv"), newline="") as fh:
        conv_rows = [(float(r["start_s"]), int(r["count"])) for r in csv.DictReader(fh)]
    commands = sorted((data / "picovoice-commands").glob("*.flac"))[::4]
    noise = sorted((data / "noise").rglob("*.flac")) + sorted((data / "noise").rglob("*.wav"))
    return {
        "AMI meetings": [labelled(ami / f"{uri}.flac", r) for uri, r in sorted(rows.items())],
        "4-person conversation": [labelled(conv.with_suffix(".wav"), conv_rows)],
        "single voices (Picovoice)": [(w, np.ones(len(w), int)) for w in whole_seconds(commands)],
        "non-speech": [(w, np.zeros(len(w), int)) for w in whole_seconds(noise)],
    }


def at_level(windows: np.ndarray, counts: np.ndarray, level: float) -> np.ndarray:
    """The recording with one gain putting its speech seconds' median level (all seconds' for
    non-speech) at `level` dBFS, clipped at full scale as a sound card would."""
    reference = counts > 0 if (counts > 0).any() else np.ones(len(counts), bool)
    gain = 10 ** ((level - np.median(rms_dbfs(windows[reference]))) / 20)
    return np.clip(windows * gain, -1.0, 1.0).astype(np.float32)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[1].parent / "shared/data"))
    parser.add_argument("--json", help="also write the table as JSON")
    args = parser.parse_args()
    counter = load_counter(runtime="onnx")
    sets = recordings(Path(args.data))
    table = {}
    print("level dBFS | " + " | ".join(sets))
    for level in LEVELS_DBFS:
        row = {}
        for name, recs in sets.items():
            right = total = 0
            for windows, counts in recs:
                predicted = counter.predict(at_level(windows, counts, level)).argmax(1)
                right += int((np.minimum(predicted, 3) == np.minimum(counts, 3)).sum())
                total += len(counts)
            row[name] = right / total
        table[level] = row
        print(f"{level:>10} | " + " | ".join(f"{row[n]:6.1%}" for n in sets), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"levels_dbfs": table, "sets": {
            n: sum(len(c) for _, c in recs) for n, recs in sets.items()}}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
