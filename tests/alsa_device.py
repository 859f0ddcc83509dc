"""A real PortAudio input device that plays a file: the ALSA `file` plugin reading raw s16le samples.

As a plain file, PortAudio reads it at 16 kHz int16 mono and gets exactly the file's samples, far
faster than real time (a sound card whose clock runs fast); past the file's end it repeats leftovers,
so a run must stop after the file's length (--duration). Through a FIFO fed on the clock
(`alsa_paced_device`) it plays in real time, as a microphone does.
The device itself is made by occupancy.lab.alsa (the benchmark measures the monitor through it too).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from occupancy.lab.alsa import ALSA_CONF
from occupancy.lab.alsa import ALSA_DEVICE as DEVICE
from occupancy.lab.alsa import alsa_file_device as _device_environment

__all__ = ["DEVICE", "alsa_file_device", "alsa_paced_device"]

BLOCK = 1600 * 2  # bytes the device is read by: 0.1 s of 16 kHz s16le, as the monitor's blocks


def alsa_file_device(folder: Path, samples: np.ndarray) -> dict[str, str]:
    """Write `samples` (float in [-1, 1]) as the device's input; return the environment that shows it."""
    if not ALSA_CONF.is_file():
        pytest.skip("needs ALSA's configuration (/usr/share/alsa/alsa.conf)")
    return _device_environment(folder, samples)


@contextmanager
def alsa_paced_device(folder: Path, samples: np.ndarray) -> Iterator[dict[str, str]]:
    """The device playing `samples` in real time: its input is a FIFO that a thread feeds 0.1 s at a
    time on the clock. Yields the environment that shows it."""
    env = alsa_file_device(folder, samples)
    fifo = folder / "in.raw"
    data = fifo.read_bytes()
    fifo.unlink()
    os.mkfifo(fifo)
    done = threading.Event()
    feeder = threading.Thread(target=_feed, args=(fifo, data, done), daemon=True)
    feeder.start()
    try:
        yield env
    finally:
        done.set()
        os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))  # frees a feeder waiting for a reader
        feeder.join(timeout=10)


def _feed(fifo: Path, data: bytes, done: threading.Event) -> None:
    """Write `data` into the FIFO at 16 kHz from the moment a reader opens it. A reader that closes it
    early was PortAudio looking at the device, not capturing: start again for the next one."""
    while not done.is_set():
        try:
            with open(fifo, "wb", buffering=0) as out:
                started = time.monotonic()
                for i in range(0, len(data), BLOCK):
                    if done.is_set():
                        return
                    out.write(data[i : i + BLOCK])
                    time.sleep(max(0.0, started + (i + BLOCK) / 32000 - time.monotonic()))
            return
        except BrokenPipeError:
            continue
