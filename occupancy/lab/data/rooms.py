"""A bank of simulated room impulse responses, computed once and kept on disk.

Simulating a room takes about half a second, far too slow per example, so a fixed bank of rooms
(varied size, RT60 0.2-1.0 s, several talker positions and one microphone each) is built once per
machine and reused: `~/.cache/occupancy/rirs-<hash>.npz`, the hash naming every parameter.
Two layouts: "anywhere" (talkers and microphone anywhere in the room, 2-6 m apart as a rule: the
test sets' rooms) and "table" (a meeting: the microphone on a table, seated talkers 0.6-2 m from it,
as AMI's distant microphone hears them; for training only).
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

    def joined(self, other: "RirBank") -> "RirBank":
        """Both banks' rooms in one (this one's first, so its room numbers stay)."""
        return RirBank(np.concatenate([self.rirs, other.rirs]), np.concatenate([self.rt60, other.rt60]))


LAYOUTS = ("anywhere", "table")


def cache_path(rooms: int, seed: int, layout: str = "anywhere") -> Path:
    fields = {"rooms": rooms, "seed": seed, "sources": SOURCES, "length": RIR_LENGTH, "v": _VERSION}
    key = json.dumps(fields if layout == "anywhere" else {**fields, "layout": layout})
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "occupancy" / f"rirs-{digest}.npz"


_LOADED: dict[tuple[int, int, str], RirBank] = {}


TABLE_SEED = 1  # the table layout's bank is its own draw, not the test rooms'


def training_bank(rooms: int, table_rooms: int = 0) -> RirBank:
    """The rooms training hears: the test sets' bank, and `table_rooms` meeting rooms besides."""
    bank = rir_bank(rooms)
    return bank.joined(rir_bank(table_rooms, TABLE_SEED, "table")) if table_rooms > 0 else bank


def rir_bank(rooms: int, seed: int = 0, layout: str = "anywhere") -> RirBank:
    """The bank for these parameters: from this process, else from disk, else simulated and saved."""
    key = (rooms, seed, layout)
    if key not in _LOADED:
        path = cache_path(rooms, seed, layout)
        if path.is_file():
            with np.load(path) as data:
                _LOADED[key] = RirBank(data["rirs"], data["rt60"])
        else:
            log.info("simulating %d rooms for reverberation (once; saved to %s)", rooms, path)
            bank = simulate_bank(rooms, seed, layout)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
            np.savez(tmp, rirs=bank.rirs, rt60=bank.rt60)
            os.replace(tmp, path)  # atomic: a parallel process never reads half a file
            _LOADED[key] = bank
    return _LOADED[key]


def simulate_bank(rooms: int, seed: int, layout: str = "anywhere") -> RirBank:
    """Shoebox rooms from a small office to a hall (or meeting rooms, for "table"); image sources for
    early echoes, rays for the tail."""
    import pyroomacoustics as pra  # slow to import; only needed when a bank is built

    if layout not in LAYOUTS:
        raise ValueError(f"unknown room layout {layout!r} (choose {', '.join(LAYOUTS)})")
    pra.random.seed(seed)  # the ray tracer's generators (numpy's and C++'s): the same rays everywhere
    rng = np.random.default_rng(seed)
    rirs = np.zeros((rooms, SOURCES, RIR_LENGTH), dtype=np.float32)
    rt60 = rng.uniform(0.2, 1.0, rooms) if layout == "anywhere" else rng.uniform(0.25, 0.8, rooms)
    for r in range(rooms):
        dims, talkers, microphone = _positions(rng, layout)
        absorption, _ = pra.inverse_sabine(rt60[r], dims)
        room = pra.ShoeBox(
            dims, fs=SAMPLE_RATE, materials=pra.Material(absorption), max_order=3, ray_tracing=True
        )
        room.set_ray_tracing(n_rays=3000)
        for talker in talkers:
            room.add_source(talker)
        room.add_microphone(microphone)
        room.compute_rir()
        for s in range(SOURCES):
            h = np.asarray(room.rir[0][s][:RIR_LENGTH], dtype=np.float32)
            rirs[r, s, : len(h)] = h / max(float(np.sqrt(np.sum(h**2))), 1e-9)
    return RirBank(rirs, rt60.astype(np.float32))


def _positions(rng: np.random.Generator, layout: str) -> tuple[np.ndarray, list[list[float]], list[float]]:
    """A room's size, its SOURCES talkers' mouths and its microphone, for the layout."""
    if layout == "anywhere":
        dims = np.array([rng.uniform(3, 15), rng.uniform(3, 12), rng.uniform(2.4, 4.5)])
        talkers = [_inside(rng, dims, heights=(1.0, 1.9)) for _ in range(SOURCES)]
        return dims, talkers, _inside(rng, dims, heights=(0.8, dims[2] - 0.1))
    dims = np.array([rng.uniform(4.5, 10), rng.uniform(3.5, 8), rng.uniform(2.4, 3.5)])
    table = np.array([rng.uniform(1.5, dims[0] - 1.5), rng.uniform(1.5, dims[1] - 1.5), rng.uniform(0.72, 0.8)])
    return dims, [_seated(rng, dims, table) for _ in range(SOURCES)], list(table)


def _seated(rng: np.random.Generator, dims: np.ndarray, table: np.ndarray) -> list[float]:
    """A seated talker's mouth 0.6-2 m (across the floor) from the table's microphone, inside the room."""
    distance, angle = rng.uniform(0.6, 2.0), rng.uniform(0, 2 * np.pi)
    x = np.clip(table[0] + distance * np.cos(angle), 0.3, dims[0] - 0.3)
    y = np.clip(table[1] + distance * np.sin(angle), 0.3, dims[1] - 0.3)
    return [float(x), float(y), rng.uniform(1.1, 1.3)]


def _inside(rng: np.random.Generator, dims: np.ndarray, heights: tuple[float, float]) -> list[float]:
    """A point at least 0.5 m from the walls at a height in `heights`."""
    return [rng.uniform(0.5, dims[0] - 0.5), rng.uniform(0.5, dims[1] - 0.5), rng.uniform(*heights)]
