"""What a command prints for the user to keep (a report, counts): written out in full, or one line saying why not."""

from __future__ import annotations

import os
import sys

from ..errors import OccupancyError


def write_stdout(text: str) -> None:
    """`text` on standard output, flushed now: a full disk or a failing pipe (`>/dev/full`) is an
    OccupancyError, and what could not be written is dropped, so Python's exit does not fail on it again
    with a traceback. A closed pipe (`| head`) is left to the caller (BrokenPipeError)."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as exc:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the unwritten rest goes nowhere
        raise OccupancyError(f"cannot write to standard output ({exc.strerror or exc})") from None
