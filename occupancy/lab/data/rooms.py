"""A bank of simulated room impulse responses, computed once and kept on disk.

Simulating a room takes about half a second, far too slow per example, so a fixed bank of rooms
(varied size, RT60 0.2-1.0 s, several talker positions and one microphone each) is built once per
machine and reused: `~/.cache/occupancy/rirs-<hash>.npz`, the hash naming every parameter.
The bank is the same on every machine: pyroomacoustics' ray tracer draws its rays from its own
generators, seeded here (unseeded, two builds differed in every room's tail, and the figures on the
room test sets, which draw from this bank, moved by 2 points between machines).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...paths import SAMPLE_RATE

log = logging.getLogger(__name__)

RIR_LENGTH = 8192  # 0.51 s: later reflections are >= 30 dB down even at RT60 1.0 s
SOURCES = 4  # talker positions per room
_VERSION = 2  # bump when the simulation changes so old banks are not reused (2: ray tracing seeded)


@dataclass(frozen=True)
class RirBank:
    rirs: np.ndarray  # [rooms, SOURCES, RIR_LENGTH] float32, each scaled to unit energy
    rt60: np.ndarray  # [rooms] target RT60 in seconds

    @property
    def rooms(self) -> int:
        return len(self.rirs)


def cache_path(rooms: int, seed: int) -> Path:
    key = json.dumps({"rooms": rooms, "seed": seed, "sources": SOURCES, "length": RIR_LENGTH, "v": _VERSION})
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "occupancy" / f"rirs-{digest}.npz"


_LOADED: dict[tuple[int, int], RirBank] = {}


def rir_bank(rooms: int, seed: int = 0) -> RirBank:
    """The bank for these parameters: from this process, else from disk, else simulated and saved."""
    key = (rooms, seed)
    if key not in _LOADED:
        path = cache_path(rooms, seed)
        if path.is_file():
            with np.load(path) as data:
                _LOADED[key] = RirBank(data["rirs"], data["rt60"])
        else:
            log.info("simulating %d rooms for reverberation (once; saved to %s)", rooms, path)
            bank = simulate_bank(rooms, seed)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
            np.savez(tmp, rirs=bank.rirs, rt60=bank.rt60)
            os.replace(tmp, path)  # atomic: a parallel process never reads half a file
            _LOADED[key] = bank
    return _LOADED[key]


def simulate_bank(rooms: int, seed: int) -> RirBank:
    """Shoebox rooms from a small office to a hall; image sources for early echoes, rays for the tail."""
    import pyroomacoustics as pra  # slow to import; only needed when a bank is built

    pra.random.seed(seed)  # the ray tracer's generators (numpy's and C++'s): the same rays everywhere
    rng = np.random.default_rng(seed)
    rirs = np.zeros((rooms, SOURCES, RIR_LENGTH), dtype=np.float32)
    rt60 = rng.uniform(0.2, 1.0, rooms)
    for r in range(rooms):
        dims = np.array([rng.uniform(3, 15), rng.uniform(3, 12), rng.uniform(2.4, 4.5)])
        absorption, _ = pra.inverse_sabine(rt60[r], dims)
        room = pra.ShoeBox(
            dims, fs=SAMPLE_RATE, materials=pra.Material(absorption), max_order=3, ray_tracing=True
        )
        room.set_ray_tracing(n_rays=3000)
        for _ in range(SOURCES):
            room.add_source(_inside(rng, dims, heights=(1.0, 1.9)))
        room.add_microphone(_inside(rng, dims, heights=(0.8, dims[2] - 0.1)))
        room.compute_rir()
        for s in range(SOURCES):
            h = np.asarray(room.rir[0][s][:RIR_LENGTH], dtype=np.float32)
            rirs[r, s, : len(h)] = h / max(float(np.sqrt(np.sum(h**2))), 1e-9)
    return RirBank(rirs, rt60.astype(np.float32))


def _inside(rng: np.random.Generator, dims: np.ndarray, heights: tuple[float, float]) -> list[float]:
    """A point at least 0.5 m from the walls at a height in `heights`."""
    return [rng.uniform(0.5, dims[0] - 0.5), rng.uniform(0.5, dims[1] - 0.5), rng.uniform(*heights)]
