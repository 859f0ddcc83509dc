"""Lazy indexes of speech corpora and noise recordings, and a bounded cache of decoded audio.

A full LibriSpeech download (1,000 h, 2,400 speakers) must be usable without reading it: the index
holds only speaker ids, sexes and folders; a speaker's files are listed the first time one of them
is needed, and decoded audio lives in a least-recently-used cache of fixed size.
"""

from __future__ import annotations

import functools
import logging
import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...engine.audio import read_audio
from ...errors import OccupancyError
from ...paths import SAMPLE_RATE, WINDOW

log = logging.getLogger(__name__)

FRAME = SAMPLE_RATE // 50  # 20-ms frames for the activity check
MIN_ACTIVE = 0.6  # share of a crop's frames in which its speaker must be speaking
_AUDIO_SUFFIXES = (".flac", ".wav")
TONE_MARGIN = 10  # 20-ms frames kept between a voice and the room tone taken from its recording (room_tone)
TONE_MIN_RUN = 10  # 20-ms frames: shorter pauses are not room tone
_CROSSFADE = SAMPLE_RATE // 200


class DataError(OccupancyError):
    """A corpus or noise folder is missing or not in a known layout, or a dataset folder conflicts."""


@dataclass(frozen=True)
class Speaker:
    """One talker: `id` is '<corpus folder>/<speaker>', unique across corpora; sex is 'F' or 'M', or '?'
    for a real voice of unknown sex (read_voices)."""

    id: str
    sex: str
    folder: str
    pattern: str  # glob for the speaker's files below `folder`

    def files(self) -> tuple[str, ...]:
        return _list_files(self.folder, self.pattern)


@functools.lru_cache(maxsize=None)
def _list_files(folder: str, pattern: str) -> tuple[str, ...]:
    """A speaker's audio files, globbed once per process when first needed."""
    return tuple(sorted(str(p) for p in Path(folder).glob(pattern)))


def read_corpus(root: str | Path) -> list[Speaker]:
    """Speakers of one corpus folder: LibriSpeech (holds LibriSpeech/SPEAKERS.TXT) or speechocean762."""
    root = Path(root)
    if (root / "LibriSpeech" / "SPEAKERS.TXT").is_file():
        return _read_librispeech(root / "LibriSpeech", root.name)
    if root.name == "LibriSpeech" and (root / "SPEAKERS.TXT").is_file():
        return _read_librispeech(root, root.name)
    if (root / "spk2gender").is_file():
        return _read_speechocean(root)
    if not root.is_dir():
        raise DataError(f"{root}: corpus folder not found")
    raise DataError(
        f"{root}: not a known corpus layout (expected LibriSpeech/SPEAKERS.TXT or spk2gender + WAVE/)"
    )


def _sex(value: str, where: str) -> str:
    sex = value.strip().upper()
    if sex not in ("F", "M"):
        raise DataError(f"{where}: sex must be F or M, got {value.strip()!r}")
    return sex


def _read_librispeech(folder: Path, name: str) -> list[Speaker]:
    """SPEAKERS.TXT gives sexes; every subset folder present on disk contributes its speakers."""
    table = folder / "SPEAKERS.TXT"
    sexes = {}
    for number, line in enumerate(table.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith(";"):
            continue
        fields = line.split("|", 4)  # names may themselves contain '|'
        if len(fields) < 3:
            raise DataError(f"{table}:{number}: expected 'id | sex | subset | minutes | name'")
        sexes[fields[0].strip()] = _sex(fields[1], f"{table}:{number}")
    speakers = []
    for subset in sorted(p for p in folder.iterdir() if p.is_dir()):
        for spk in sorted(p for p in subset.iterdir() if p.is_dir()):
            if spk.name not in sexes:
                log.warning("%s: speaker %s not in SPEAKERS.TXT, skipped", subset, spk.name)
                continue
            speakers.append(Speaker(f"{name}/{spk.name}", sexes[spk.name], str(spk), "*/*.flac"))
    if not speakers:
        raise DataError(f"{folder}: no speaker folders (<subset>/<speaker>/<chapter>/*.flac)")
    return speakers


def _read_speechocean(root: Path) -> list[Speaker]:
    table = root / "spk2gender"
    speakers = []
    for number, line in enumerate(table.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2:
            raise DataError(f"{table}:{number}: expected '<speaker> <m|f>'")
        folder = root / "WAVE" / f"SPEAKER{parts[0]}"
        if folder.is_dir():
            speakers.append(Speaker(f"{root.name}/{parts[0]}", _sex(parts[1], f"{table}:{number}"), str(folder), "*.flac"))
        else:
            log.warning("%s: no folder for speaker %s, skipped", root, parts[0])
    if not speakers:
        raise DataError(f"{root}: no speaker folders WAVE/SPEAKER<id>/")
    return speakers


def read_voices(folders: list[str]) -> list[Speaker]:
    """Recordings of one real voice each, without speaker labels (the Picovoice sets): every file is
    its own talker of unknown sex ('?'), id '<folder>/<path below it>'. Two files may hold one person,
    so mixtures never put two of them together (Mixer). A folder that is not there is left out with
    a warning: the voices widen training and testing, the corpora alone can train."""
    found = []
    for folder in map(Path, folders):
        if not folder.is_dir():
            log.warning("%s: voices folder not found (data.voices): left out", folder)
            continue
        for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in _AUDIO_SUFFIXES):
            below = path.relative_to(folder).with_suffix("").as_posix()
            found.append(Speaker(f"{folder.name}/{below}", "?", str(path.parent), path.name))
        if not found or not found[-1].id.startswith(f"{folder.name}/"):
            raise DataError(f"{folder}: no recordings (*.flac, *.wav) in this voices folder")
    return found


@dataclass(frozen=True)
class NoiseFile:
    path: str
    empty_room: bool  # may stand for "nobody speaks" (no voices at all, not even distant ones)


def read_noise(folders: list[str]) -> list[NoiseFile]:
    """Non-speech recordings. SOURCES.md flags (HUMAN-VOCAL, MAYBE-VOICES) keep voices out of class 0.

    HUMAN-VOCAL files (snoring, a person miaowing) are dropped entirely: a human voice under speech
    would make the label wrong. MAYBE-VOICES files serve only as background under speech.
    """
    found = []
    for folder in map(Path, folders):
        if not folder.is_dir():
            raise DataError(f"{folder}: noise folder not found")
        flags = _read_flags(folder / "SOURCES.md")
        for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in _AUDIO_SUFFIXES):
            flag = flags.get(path.name, set())
            if "HUMAN-VOCAL" in flag:
                continue
            found.append(NoiseFile(str(path), "MAYBE-VOICES" not in flag))
    if not any(n.empty_room for n in found):
        raise DataError(f"{', '.join(folders)}: no noise recordings (*.flac, *.wav) for the empty-room class")
    return found


def _read_flags(sources: Path) -> dict[str, set[str]]:
    """File name -> flags, from the markdown tables of a SOURCES.md (absent: no flags)."""
    if not sources.is_file():
        return {}
    flags = {}
    for line in sources.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.lstrip().startswith("|") and cells and re.search(r"\.(flac|wav)$", cells[0]):
            flags[cells[0]] = {c for c in cells[1:] if c in ("HUMAN-VOCAL", "MAYBE-VOICES", "MUSIC")}
    return flags


def active_frames(samples: np.ndarray) -> np.ndarray:
    """Which 20-ms frames of an utterance hold speech: bool [len // FRAME].

    A frame is active when it is within 30 dB of the utterance's loud frames (95th percentile) and
    6 dB above its quietest frames: relative to the recording, so any level or microphone works.
    """
    frames = len(samples) // FRAME
    if frames == 0:
        return np.zeros(0, dtype=bool)
    power = np.square(samples[: frames * FRAME].reshape(frames, FRAME).astype(np.float32)).mean(axis=1)
    db = 10.0 * np.log10(power + 1e-12)
    loud, floor = np.percentile(db, [95, 5])
    return db > max(loud - 30.0, min(floor + 6.0, loud - 12.0))


def room_tone(samples: np.ndarray) -> np.ndarray:
    """The sound of a one-voice recording's room where its voice is silent: the stretches of at least
    TONE_MIN_RUN frames that are TONE_MARGIN frames or more from any active frame (breaths, onsets and
    room tails stay out), joined with 5-ms cross-fades. Empty when the voice never pauses that long.

    Why: the count network called real rooms' silence speech (44 % of AMI's silent seconds, 3 s and more
    from any talk; the Picovoice files' pauses) while reading our noise folders' held-out recordings as
    0: the pauses of the training speech are the rooms and microphones of more than a thousand readers.
    """
    active = active_frames(samples)
    near_voice = np.convolve(active.astype(np.float32), np.ones(2 * TONE_MARGIN + 1, np.float32), "same") > 0
    edges = np.flatnonzero(np.diff(np.concatenate([[False], ~near_voice, [False]]).astype(np.int8)))
    pieces = [samples[a * FRAME:b * FRAME] for a, b in zip(edges[::2], edges[1::2]) if b - a >= TONE_MIN_RUN]
    if not pieces:
        return np.zeros(0, dtype=samples.dtype)
    fade = np.linspace(0.0, 1.0, _CROSSFADE, dtype=np.float32)
    out = pieces[0]
    for piece in pieces[1:]:
        joint = out[-_CROSSFADE:] * fade[::-1] + piece[:_CROSSFADE] * fade
        out = np.concatenate([out[:-_CROSSFADE], joint.astype(samples.dtype), piece[_CROSSFADE:]])
    return out


def active_starts(active: np.ndarray) -> np.ndarray:
    """Frame indexes where a 1-s crop may start so that >= 60 % of its 20-ms frames hold speech."""
    per_window = WINDOW // FRAME
    if len(active) < per_window:
        return np.zeros(0, dtype=np.int64)
    running = np.concatenate([[0], np.cumsum(active)])
    in_window = running[per_window:] - running[:-per_window]
    return np.flatnonzero(in_window >= MIN_ACTIVE * per_window)


@dataclass(frozen=True)
class Clip:
    """Decoded audio kept as int16 (half the memory of float32, lossless for 16-bit sources)."""

    samples: np.ndarray
    starts: np.ndarray | None  # valid crop starts in frames (speech only)
    active: np.ndarray | None  # which 20-ms frames hold speech (speech only)

    @property
    def nbytes(self) -> int:
        return self.samples.nbytes + sum(a.nbytes for a in (self.starts, self.active) if a is not None)

    def crop(self, offset: int, length: int = WINDOW) -> np.ndarray:
        """`length` float32 samples from `offset`; zeros outside the file."""
        out = np.zeros(length, dtype=np.float32)
        lo, hi = max(offset, 0), min(offset + length, len(self.samples))
        if hi > lo:
            out[lo - offset : hi - offset] = self.samples[lo:hi] * (1.0 / 32768.0)
        return out


class AudioCache:
    """Least-recently-used decoded files, bounded in bytes: a corpus is never held in memory whole."""

    def __init__(self, max_mb: int):
        self.max_bytes = max_mb * 1024 * 1024
        self.bytes = 0
        self._clips: OrderedDict[tuple[str, bool | str], Clip] = OrderedDict()

    def __len__(self) -> int:
        return len(self._clips)

    def get(self, path: str, speech: bool) -> Clip:
        key = (path, speech)
        clip = self._clips.get(key)
        if clip is not None:
            self._clips.move_to_end(key)
            return clip
        samples = read_audio(path)
        active = active_frames(samples) if speech else None
        clip = Clip(
            np.clip(np.round(samples * 32768.0), -32768, 32767).astype(np.int16),
            active_starts(active) if speech else None,
            active,
        )
        self._keep(key, clip)
        return clip

    def room_tone(self, path: str) -> Clip:
        """The pauses of a one-voice recording (`room_tone`), cached like a whole file."""
        key = (path, "room tone")
        clip = self._clips.get(key)
        if clip is None:
            whole = self.get(path, speech=False).samples
            clip = Clip(room_tone(whole), None, None)
            self._keep(key, clip)
        else:
            self._clips.move_to_end(key)
        return clip

    def _keep(self, key: tuple[str, bool | str], clip: Clip) -> None:
        self._clips[key] = clip
        self.bytes += clip.nbytes
        while self.bytes > self.max_bytes and len(self._clips) > 1:
            _, old = self._clips.popitem(last=False)
            self.bytes -= old.nbytes


_PROCESS_CACHE: AudioCache | None = None


def process_cache(max_mb: int) -> AudioCache:
    """The one cache of this process, shared by all its datasets; a forked worker starts from a copy."""
    global _PROCESS_CACHE
    if _PROCESS_CACHE is None:
        _PROCESS_CACHE = AudioCache(max_mb)
    _PROCESS_CACHE.max_bytes = max_mb * 1024 * 1024
    return _PROCESS_CACHE
