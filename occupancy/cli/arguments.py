"""argparse value types shared by more than one command family."""

from __future__ import annotations

import argparse
import math


def minutes_or_seconds(text: str) -> float:
    """argparse type for --min-coverage, --alert-seconds and sync --every: a finite number, 0 or more (NaN would pass
    every comparison and flag or alert nothing)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number, 0 or more, got {text!r}")
    return value
