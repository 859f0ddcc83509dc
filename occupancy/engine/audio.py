"""Audio in: read WAV/FLAC files as 16 kHz mono float32 and slice any stream into 1-s windows.

Files of any common rate, bit depth and channel count are accepted: channels are averaged,
rates are converted with soxr's streaming resampler (one stream per file or stretch of live audio,
so block edges leave no trace: the result equals resampling the whole stream at once). Every way a file can be unusable (missing, empty,
truncated, corrupt, not audio) becomes an AudioError with one line naming the file.
The WindowSlicer is the single place where a stream of samples becomes overlapping windows; files,
replays and the live microphone all go through it.
"""

from __future__ import annotations

import logging
import os
import stat
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from ..errors import AudioError
from ..paths import SAMPLE_RATE

log = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".wav", ".flac")
_CHUNK_SECONDS = 30.0
# The most samples (frames x channels) read from a file at once: 4 MB of float32, whatever its rate
# and channel count (30 s of a 255-channel file took 3.6 GB).
_BLOCK_SAMPLES = 1 << 20
# Rates a recording can really have (telephone band to studio); outside them the header is wrong, and
# believing it would stretch 5 s of samples into hours of made-up windows.
RATE_RANGE = (4_000, 384_000)
# What a path that is not a regular file is, by its stat mode.
_NOT_FILES = {stat.S_ISFIFO: "a FIFO", stat.S_ISSOCK: "a socket", stat.S_ISCHR: "a character device",
              stat.S_ISBLK: "a block device"}


# Wave64 names its chunks by GUID: a four-letter tag, then these 12 bytes.
_W64_GUID = b"\xf3\xac\xd3\x11\x8c\xd1\x00\xc0\x4f\x8e\xdb\x8a"
_W64_RIFF = b"riff\x2e\x91\xcf\x11\xa5\xd6\x28\xdb\x04\xc1\x00\x00"


def check_wav_complete(path: Path) -> None:
    """Refuse a WAV (RIFF, RF64/BW64 or Wave64) whose data chunk is shorter than its header says:
    libsndfile would read it silently, and a replay would take its time from the header."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(16)
        if head[:4] in (b"RIFF", b"RF64", b"BW64") and head[8:12] == b"WAVE":
            fh.seek(12)
            data = _riff_data(fh)
        elif head == _W64_RIFF:
            fh.seek(40)  # past the riff GUID, the file size and the wave GUID
            data = _wave64_data(fh, size)
        else:
            return  # another format: left to libsndfile
    if data is not None:
        begins, length = data
        missing = begins + length - size
        if missing > 0:
            raise AudioError(f"{path}: truncated WAV file ({missing} bytes of audio missing)")


def _riff_data(fh) -> tuple[int, int] | None:
    """Where a RIFF or RF64 file's audio begins and how many bytes its header says it holds; None when
    the header leaves it open (a recording still being written) or there is no data chunk."""
    long_size = None  # RF64: the data chunk's real size, from the ds64 chunk
    while len(chunk := fh.read(8)) == 8:
        tag, length = chunk[:4], struct.unpack("<I", chunk[4:])[0]
        if tag == b"ds64":
            body = fh.read(length)
            long_size = struct.unpack("<Q", body[8:16])[0] if len(body) >= 16 else None
            fh.seek(length & 1, 1)
        elif tag == b"data":
            if length == 0xFFFFFFFF:
                length = long_size or 0
            return (fh.tell(), length) if length else None
        else:
            fh.seek(length + (length & 1), 1)
    return None


def _wave64_data(fh, size: int) -> tuple[int, int] | None:
    """Where a Wave64 file's audio begins and how many bytes its header says it holds (None: no data chunk)."""
    while len(chunk := fh.read(24)) == 24:
        guid, length = chunk[:16], struct.unpack("<Q", chunk[16:])[0]  # a chunk's size counts its 24-byte header
        if guid == b"data" + _W64_GUID:
            return fh.tell(), length - 24
        if not 24 <= length <= size:
            return None  # a broken chunk list: libsndfile says what is wrong
        fh.seek(length - 24 + (-length % 8), 1)  # chunks are aligned to 8 bytes
    return None


def display_name(path: str | Path) -> str:
    """A path as text that can always be printed or stored: bytes of a name that are not UTF-8 are
    shown as \\xNN escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def open_audio(path: str | Path) -> sf.SoundFile:
    """Open an audio file for reading, turning every failure into a one-line AudioError."""
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: file not found")
    if path.is_dir():
        raise AudioError(f"{path}: is a folder, not an audio file")
    info = path.stat()
    if not stat.S_ISREG(info.st_mode):
        kind = next((name for test, name in _NOT_FILES.items() if test(info.st_mode)), "something else")
        raise AudioError(f"{path}: not a regular file ({kind})")
    if info.st_size == 0:
        raise AudioError(f"{path}: empty file (0 bytes)")
    check_wav_complete(path)
    try:
        handle = sf.SoundFile(os.fsencode(path))  # bytes: a name that is not UTF-8 opens too
    except sf.LibsndfileError as exc:
        reason = str(exc).split(":", 1)[-1].strip() or "unreadable"
        raise AudioError(f"{path}: not a readable audio file ({reason})") from None
    except OSError as exc:
        raise AudioError(f"{path}: cannot open ({exc.strerror or exc})") from None
    if handle.frames == 0:
        handle.close()
        raise AudioError(f"{path}: audio file holds no samples")
    low, high = RATE_RANGE
    if not low <= handle.samplerate <= high:
        handle.close()
        raise AudioError(f"{path}: impossible sample rate {handle.samplerate} Hz in its header "
                         f"(recordings are {low:,} to {high:,} Hz)")
    return handle


def to_mono(block: np.ndarray) -> np.ndarray:
    """Average channels into contiguous float32: NaN/inf samples become silence, and samples past full
    scale are clipped to it first (a float file can hold any number: 1e18 overflowed the model's front
    end into NaN probabilities)."""
    if not np.isfinite(block).all():
        block = np.nan_to_num(block, nan=0.0, posinf=0.0, neginf=0.0)
    block = np.clip(block, -1.0, 1.0)
    mono = block.mean(axis=1) if block.ndim == 2 else block
    return np.ascontiguousarray(mono, dtype=np.float32)


class Resampler:
    """One stream of mono float32 audio at `rate`, in blocks of any size, to 16 kHz.

    soxr keeps the filter's state between blocks (so no block edge shows) and holds back the last
    few milliseconds until it has heard what follows them: `flush()` at the end of the stream gives
    them out. At 16 kHz blocks pass through untouched.
    """

    def __init__(self, rate: int):
        self.rate = rate
        self._stream = None if rate == SAMPLE_RATE else soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32")

    def push(self, mono: np.ndarray) -> np.ndarray:
        return mono if self._stream is None else self._stream.resample_chunk(mono)

    def flush(self) -> np.ndarray:
        """The samples held back, once the stream has ended."""
        empty = np.zeros(0, np.float32)
        return empty if self._stream is None else self._stream.resample_chunk(empty, last=True)


def stream_audio(path: str | Path, chunk_seconds: float = _CHUNK_SECONDS) -> Iterator[np.ndarray]:
    """Yield a file as 16 kHz mono float32 chunks, so hours of audio never sit in memory at once (at most
    `chunk_seconds`, and at most _BLOCK_SAMPLES samples over all channels, are read at a time)."""
    path = Path(path)
    with open_audio(path) as handle:
        resampler = Resampler(handle.samplerate)
        frames = max(1, min(int(chunk_seconds * handle.samplerate), _BLOCK_SAMPLES // handle.channels))
        warned = set()
        try:
            while True:
                block = handle.read(frames, dtype="float32", always_2d=True)
                _warn_of_bad_samples(block, path, warned)
                chunk = resampler.push(to_mono(block)) if len(block) else resampler.flush()
                if len(chunk):  # the resampler may hold back a short first block entirely
                    yield chunk
                if not len(block):
                    return
        except sf.LibsndfileError as exc:
            raise AudioError(f"{path}: truncated or corrupt audio ({exc})") from None


def _warn_of_bad_samples(block: np.ndarray, path: Path, warned: set[str]) -> None:
    """Say once per file that samples were replaced by silence (NaN, inf) or clipped (past full scale)."""
    if len(warned) == 2:
        return
    finite = np.isfinite(block)
    if "nan" not in warned and not finite.all():
        log.warning("%s: NaN or infinite samples replaced by silence", path)
        warned.add("nan")
    if "loud" not in warned and (np.abs(block[finite]) > 1.0).any():
        log.warning("%s: samples beyond full scale (up to %.3g) clipped to it", path, float(np.abs(block[finite]).max()))
        warned.add("loud")


def read_audio(path: str | Path) -> np.ndarray:
    """The whole file as one 16 kHz mono float32 array."""
    return np.concatenate(list(stream_audio(path)))


@dataclass(frozen=True)
class Window:
    """One window of audio and where it lies in its stream, in seconds from the stream's start."""

    start_s: float
    samples: np.ndarray

    @property
    def end_s(self) -> float:
        return self.start_s + len(self.samples) / SAMPLE_RATE


class WindowSlicer:
    """Turns blocks of any size into fixed windows every `hop_s` seconds (a small ring of samples)."""

    def __init__(self, window_s: float = 1.0, hop_s: float = 1.0):
        if not 0 < hop_s <= window_s:
            raise ValueError(f"hop must be in (0, window], got hop={hop_s} window={window_s}")
        self.window = int(round(window_s * SAMPLE_RATE))
        self.hop = int(round(hop_s * SAMPLE_RATE))
        self._buffer = np.zeros(0, dtype=np.float32)
        self._consumed = 0  # samples dropped from the front of the buffer so far

    def push(self, block: np.ndarray) -> list[Window]:
        """Add samples; return every window that is now complete."""
        self._buffer = np.concatenate([self._buffer, np.asarray(block, dtype=np.float32)])
        out = []
        while len(self._buffer) >= self.window:
            out.append(Window(self._consumed / SAMPLE_RATE, self._buffer[: self.window].copy()))
            self._buffer = self._buffer[self.hop :]
            self._consumed += self.hop
        return out

    def pending(self) -> int:
        """Samples waiting for the next window."""
        return len(self._buffer)


def slice_windows(
    chunks: Iterable[np.ndarray], window_s: float = 1.0, hop_s: float = 1.0, name: str = "audio"
) -> Iterator[Window]:
    """Windows of a finite stream; a stream shorter than one window is zero-padded, with a warning."""
    slicer = WindowSlicer(window_s, hop_s)
    produced = False
    for chunk in chunks:
        for window in slicer.push(chunk):
            produced = True
            yield window
    if not produced:
        have = slicer.pending()
        log.warning(
            "%s: only %.2f s of audio, shorter than one %.1f s window: padded with silence",
            name, have / SAMPLE_RATE, window_s,
        )
        yield from slicer.push(np.zeros(slicer.window - have, dtype=np.float32))


def file_windows(path: str | Path, window_s: float = 1.0, hop_s: float = 1.0) -> Iterator[Window]:
    """The 1-s windows of one audio file."""
    return slice_windows(stream_audio(path), window_s, hop_s, name=str(path))


def find_audio_files(paths: Iterable[str | Path]) -> list[Path]:
    """Expand files and folders (recursively, *.wav and *.flac) into a sorted list of files;
    an AudioError when there is none at all."""
    paths = [Path(p) for p in paths]
    found: list[Path] = []
    for item in paths:
        if item.is_dir():
            found.extend(
                sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
            )
        else:
            found.append(item)  # missing or odd files are reported when opened
    if not found:
        raise AudioError(f"{', '.join(map(str, paths))}: no .wav or .flac files found")
    return found


def level_dbfs(samples: np.ndarray) -> float:
    """RMS level in dB relative to full scale (-120 for digital silence)."""
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if len(samples) else 0.0
    return 20.0 * np.log10(max(rms, 1e-6))
