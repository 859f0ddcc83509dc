"""`occupancy classify`: count speakers in each 1-s window of recorded files.

The `--json` output is one object per line and is read by outside evaluation scripts, so its keys
are a stable contract: {"path", "start_s", "end_s", "count", "probabilities"}, plus {"women", "men"}
with --sex (a model trained with a sex-composition head; see docs/counter.md for how far to trust it), and
{"voices"} with --voices (distinct voices heard in the file within the horizon up to that window; each
file starts from none). A path's bytes that are not UTF-8 are written as \\xNN escapes, so every line is
valid JSON text.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import islice

from ..config import Config, override
from ..errors import AudioError, OccupancyError
from .engine import add_voices_flags, with_voices_flags

log = logging.getLogger(__name__)


def batched(windows: Iterator, size: int) -> Iterator[list]:
    while batch := list(islice(windows, size)):
        yield batch


def add_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "classify",
        help="count speakers in each 1-s window of WAV/FLAC files",
        description="Print one line per 1-s window with the number of people speaking at once.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="audio files or folders (searched for *.wav, *.flac)")
    p.add_argument("--json", action="store_true", help="one JSON object per line (stable format)")
    p.add_argument("--model", metavar="M", help="model file (default: the shipped counter)")
    p.add_argument("--hop", type=float, metavar="S", help="seconds between window starts (default: audio.hop_s)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="compute device (default: model.device)")
    p.add_argument("--no-vad", action="store_true", help="skip the voice-activity stage")
    p.add_argument("--sex", action="store_true",
                   help="also estimate how many women and men speak: counts then come from "
                        "models/counter-sex.safetensors unless --model names another model with that head")
    add_voices_flags(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace, config: Config) -> int:
    import numpy as np

    from ..engine.audio import display_name, file_windows, find_audio_files
    from ..engine.loading import load_counter_from_config, load_voices_from_config

    if sys.stdout is None:  # started with stdout closed (`>&-`): the counts would go nowhere
        raise OccupancyError("standard output is closed: nowhere to print the counts (redirect it to a file)")
    config = override(config, "audio", hop_s=args.hop)
    config = override(config, "model", path=args.model, device=args.device, vad=False if args.no_vad else None,
                      sex=args.sex or None)
    config = with_voices_flags(config, args)
    files = find_audio_files(args.paths)
    voices = load_voices_from_config(config.monitor)
    counter = None  # loaded on the first window, so unreadable files are reported without waiting for it
    failures = 0
    with output_checked():
        for stream, path in enumerate(files):
            try:
                windows = file_windows(path, config.audio.window_s, config.audio.hop_s)
                for batch in batched(windows, config.model.batch_size):
                    counter = counter or load_counter_from_config(config.model)
                    samples = np.stack([w.samples for w in batch])
                    if config.model.sex:
                        probs, sexes = counter.predict_with_sex(samples)
                    else:
                        probs, sexes = counter.predict(samples), [None] * len(batch)
                    for window, p, sex in zip(batch, probs, sexes):
                        count = counter.classes[int(p.argmax())]
                        figure = None if voices is None else voices.figure(stream, window.start_s, window.samples, count)
                        print_window(display_name(path), window, p, counter.classes, args.json, sex, figure)
            except AudioError as exc:
                print(f"occupancy: error: {exc}", file=sys.stderr)
                failures += 1
        sys.stdout.flush()  # inside the check: the last lines can fail to be written too
    return 2 if failures else 0


@contextmanager
def output_checked() -> Iterator[None]:
    """Turn a failure to write the counts (a full disk, an I/O error) into a one-line error. What is still
    buffered is sent to /dev/null, so that Python's own flush at exit does not fail again with a traceback.
    A closed pipe (`| head`) is left to the CLI, which ends quietly."""
    try:
        yield
    except BrokenPipeError:
        raise
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EIO, errno.EFBIG, errno.EDQUOT, errno.EBADF):
            raise
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)
        raise OccupancyError(f"standard output: cannot write the counts ({exc.strerror})") from None


def print_window(path: str, window, probs, classes: list[int], as_json: bool, sex=None, voices=None) -> None:
    """One line for `window` (an engine.audio.Window) given its count probabilities, women/men and
    distinct-voices figure."""
    from ..engine.events import count_label

    count = classes[int(probs.argmax())]
    if as_json:
        row = {
            "path": path,
            "start_s": round(window.start_s, 3),
            "end_s": round(window.end_s, 3),
            "count": count,
            "probabilities": [round(float(x), 4) for x in probs],
        }
        if sex is not None:
            row.update(women=int(sex[0]), men=int(sex[1]))
        if voices is not None:
            row.update(voices=voices)
        print(json.dumps(row))
    else:
        bars = " ".join(f"{c}:{float(x):.2f}" for c, x in zip(classes, probs))
        women_men = "" if sex is None else f"  women {sex[0]}, men {sex[1]}"
        distinct = "" if voices is None else f"  voices {voices}"
        print(f"{path}  {window.start_s:7.2f}-{window.end_s:7.2f} s  count {count_label(count, classes[-1]):>2}  "
              f"({bars}){women_men}{distinct}")
