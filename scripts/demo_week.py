"""Replay a synthetic week of venue traffic through the real engine, for `occupancy report` to show.

Why: a real week takes a week. For each open hour this builds a clip out of the bundled sample's
seconds (its per-second truth says how many voices each second holds), with more 2- and 3-voice
seconds in busy hours (lunch, evenings, the weekend), dates the clip by its file modification time
(the replay's default start: mtime minus duration) and replays each day's clips in one
`occupancy replay --speed max` run: the real capture, model and log.

The week (local time of this machine): closed on Mondays; Tue-Thu 11-22 h, Fri 11-23 h, Sat 10-23 h,
Sun 10-18 h; `--minutes` of audio per open hour. Wednesday 15 h has only 5 minutes (the monitor was
off: a LOW-coverage hour) and Thursday 17 h nothing at all (a gap).

    .venv/bin/python scripts/demo_week.py --db week.db
    .venv/bin/occupancy report --db week.db --plot week.png
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import soundfile as sf

from occupancy.sample import SAMPLE_AUDIO, load_truth

OPEN_HOURS = {  # weekday (0 = Monday) -> open hours, local time
    1: range(11, 22), 2: range(11, 22), 3: range(11, 22), 4: range(11, 23), 5: range(10, 23), 6: range(10, 18),
}
SHORT_HOURS = {(2, 15): 5.0}  # (weekday, hour) -> minutes monitored
OFF_HOURS = {(3, 17)}  # (weekday, hour) not monitored at all


def busyness(weekday: int, hour: int) -> float:
    """Chance that each of three tables is talking: lunch and evening peaks, busier at the weekend."""
    lunch = np.exp(-((hour - 12.5) ** 2) / 2)
    evening = np.exp(-((hour - 20) ** 2) / 3)
    weekend = 1.3 if weekday >= 4 else 1.0
    return float(np.clip(0.08 + weekend * (0.35 * lunch + 0.5 * evening), 0.0, 0.95))


def hour_clip(rng: np.random.Generator, pools: dict[int, list[np.ndarray]], minutes: float, busy: float) -> np.ndarray:
    """`minutes` of audio in stretches of 5-15 s, each with a count drawn from Binomial(3, busy)."""
    seconds: list[np.ndarray] = []
    while len(seconds) < minutes * 60:
        pool = pools[int(rng.binomial(3, busy))]
        first = int(rng.integers(len(pool)))
        seconds += [pool[(first + i) % len(pool)] for i in range(int(rng.integers(5, 16)))]
    return np.concatenate(seconds[: int(minutes * 60)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="week.db", help="SQLite log to fill (default: %(default)s)")
    parser.add_argument("--start", type=date.fromisoformat, default=date(2026, 11, 16), help="a Monday (default: %(default)s)")
    parser.add_argument("--minutes", type=float, default=20.0, help="minutes of audio per open hour (default: %(default)g)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    audio, rate = sf.read(SAMPLE_AUDIO, dtype="float32")
    pools: dict[int, list[np.ndarray]] = {}
    for second, count in enumerate(load_truth()):
        pools.setdefault(count, []).append(audio[second * rate:(second + 1) * rate])
    rng = np.random.default_rng(args.seed)
    exe = Path(sys.executable).parent / "occupancy"
    for offset in range(7):
        day = args.start + timedelta(days=offset)
        hours = [h for h in OPEN_HOURS.get(day.weekday(), []) if (day.weekday(), h) not in OFF_HOURS]
        if not hours:
            print(f"{day:%a %Y-%m-%d}: closed")
            continue
        with tempfile.TemporaryDirectory() as folder:
            files = []
            for hour in hours:
                minutes = SHORT_HOURS.get((day.weekday(), hour), args.minutes)
                clip = hour_clip(rng, pools, minutes, busyness(day.weekday(), hour))
                start = datetime(day.year, day.month, day.day, hour).astimezone()  # local time
                start += timedelta(minutes=float(rng.uniform(0, 60 - minutes)))
                path = Path(folder) / f"{start:%Y%m%d-%H%M}.flac"
                sf.write(path, clip, rate)
                end = (start + timedelta(seconds=len(clip) / rate)).timestamp()
                os.utime(path, (end, end))
                files.append(str(path))
            print(f"{day:%a %Y-%m-%d}: replaying {len(files)} open hours", flush=True)
            subprocess.run([str(exe), "replay", *files, "--speed", "max", "--db", args.db],
                           check=True, stdout=subprocess.DEVNULL)
    print(f"done: occupancy report --db {args.db} --plot week.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
