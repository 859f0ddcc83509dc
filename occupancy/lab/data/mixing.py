"""Mixture recipes: how one labelled 1-s example is made from voices, rooms and background sound.

`paper` is the seed paper's recipe (1-3 random crops averaged). `realistic` is what a ceiling microphone
hears: 0..N voices, each really speaking in its crop, at unequal gains, often in a reverberant room,
over real background sound, the whole window at a random loudness so that loudness says nothing
about the count. Every random choice is drawn from the generator passed in, so an example is fixed
by its seed whatever was decoded or cached before.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.fft

from .corpus import FRAME, WINDOW, AudioCache, Clip, DataError, NoiseFile, Speaker, process_cache
from .rooms import RIR_LENGTH, SOURCES, RirBank
from .splits import Splits

RECIPES = ("realistic", "paper", "scenes")  # scenes: see scenes.py
VOICE_GAIN_DB = 9.0  # each voice within +-9 dB of the others
SPEECH_LOUDNESS_DBFS = (-55.0, -12.0)
EMPTY_LOUDNESS_DBFS = (-65.0, -15.0)  # as loud as speech, and further down to near-silent room tone
SNR_DB = (3.0, 30.0)
REAL_NOISE_SHARE = 0.8  # backgrounds under speech: real recordings, else coloured noise
PEAK = 0.99
_MIN_TONE = WINDOW // 4  # samples: room tone shorter than this is not drawn (it would loop too often)
_TRIES = 100  # random draws (a taken or silent speaker costs one) before giving up
_FFT = 24576  # >= WINDOW + RIR_LENGTH - 1, and a fast FFT size (3 * 2**13)
_LOG_FREQS = np.log(np.arange(1, WINDOW // 2 + 2, dtype=np.float32))


def rms(x: np.ndarray) -> float:
    return max(float(np.sqrt(np.dot(x, x) / len(x))), 1e-7)


def _db(value: float) -> float:
    return float(20.0 * np.log10(max(value, 1e-7)))


def coloured_noise(rng: np.random.Generator, alpha: float) -> np.ndarray:
    """Unit-RMS noise with a 1/f**alpha power spectrum (0 white, 1 pink, 2 brown)."""
    spectrum = scipy.fft.rfft(rng.standard_normal(WINDOW, dtype=np.float32))
    x = scipy.fft.irfft(spectrum * np.exp(_LOG_FREQS * np.float32(-alpha / 2)), WINDOW).astype(np.float32)
    return x / rms(x)


class Mixer:
    """Makes examples for one split; uses the process's audio cache and keeps room spectra."""

    def __init__(self, splits: Splits, split: str, max_speakers: int, reverb_share: float,
                 real_voice_share: float = 0.0, snr_db: tuple[float, float] = SNR_DB, pause_tone_share: float = 0.0):
        self.speakers = splits.speakers[split]
        self.real_voices = splits.voices[split] if real_voice_share > 0 else []
        self.real_voice_share = real_voice_share
        self.snr_db = snr_db
        self.by_sex = {sex: splits.by_sex(split, sex) for sex in ("F", "M")}
        self.noise = _by_folder(splits.noise_of(split))
        self.empty_room = _by_folder([n for n in splits.noise_of(split) if n.empty_room])
        # the pauses of this split's speech recordings (corpora and real voices): rooms where nobody speaks,
        # through the microphones of more than a thousand readers and recordists
        self.pause_tone = ([f for talker in (*self.speakers, *splits.voices[split]) for f in talker.files()]
                           if pause_tone_share > 0 else [])
        self.pause_tone_share = pause_tone_share
        self.max_speakers = max_speakers
        self.reverb_share = reverb_share
        self.cache_mb = splits.config.cache_mb
        self.cache: AudioCache | None = None
        self.bank: RirBank | None = None
        self._rir_spectra: dict[tuple[int, int], np.ndarray] = {}

    def __getstate__(self):
        """A spawned worker uses its own process cache, not a pickled copy of this one."""
        return {**self.__dict__, "cache": None, "_rir_spectra": {}}

    def preload(self) -> int:
        """Decode every file this split can draw from into the process cache; returns the clips held.

        Why: DataLoader workers are forked afresh each epoch from the parent, so without this each
        of them decodes the corpus again every epoch; with it they all start from the parent's copy.
        """
        self.open_cache()
        for speaker in (*self.speakers, *self.real_voices):
            for path in speaker.files():
                self.cache.get(path, speech=True)
        for group in self.noise:
            for noise in group:
                self.cache.get(noise.path, speech=False)
        for path in self.pause_tone:
            self.cache.room_tone(path)
        return len(self.cache)

    def open_cache(self) -> AudioCache:
        """The process's audio cache (made on first use, so a forked worker starts from its parent's)."""
        if self.cache is None:
            self.cache = process_cache(self.cache_mb)
        return self.cache

    def make(self, recipe: str, rng: np.random.Generator, count: int) -> tuple[np.ndarray, dict]:
        self.open_cache()
        if recipe == "paper":
            return self._paper(rng, count)
        if count == 0:
            return self._empty_room(rng)
        return self._realistic(rng, count)

    def _paper(self, rng: np.random.Generator, count: int) -> tuple[np.ndarray, dict]:
        """The seed paper's recipe: `count` random speakers, random 1-s crops, plain average."""
        if count > len(self.speakers):
            raise DataError(f"this split has {len(self.speakers)} speakers, too few for {count} voices")
        speakers = [self.speakers[p] for p in rng.choice(len(self.speakers), size=count, replace=False)]
        files, offsets, crops = [], [], []
        for speaker in speakers:
            names = speaker.files()
            if not names:
                raise DataError(f"{speaker.folder}: speaker has no audio files")
            files.append(names[rng.integers(len(names))])
            clip = self.cache.get(files[-1], speech=True)
            offsets.append(int(rng.integers(max(len(clip.samples) - WINDOW, 0) + 1)))
            crops.append(clip.crop(offsets[-1]))
        audio = np.mean(crops, axis=0, dtype=np.float32)
        gains = [round(_db(1 / count), 2)] * count
        return audio, meta_row(
            speakers, "paper", files=files, offsets=offsets, gains_db=gains, loudness_dbfs=round(_db(rms(audio)), 2)
        )

    def uses_real_voice(self, rng: np.random.Generator) -> bool:
        """Whether the next mixture or scene puts one real voice (data.voices) among its talkers: in
        `real_voice_share` of them (no draw at all when the share is 0, so other recipes stay as they were)."""
        return bool(self.real_voices) and rng.random() < self.real_voice_share

    def _realistic(self, rng: np.random.Generator, count: int) -> tuple[np.ndarray, dict]:
        # One voice may be a real recording from many microphones (at most one: its speaker is unknown).
        voices = [self._real_voice(rng)] if self.uses_real_voice(rng) else []
        sexed = count - len(voices)
        # Every sex composition equally likely, among those a small split can provide.
        low, high = max(0, sexed - len(self.by_sex["M"])), min(sexed, len(self.by_sex["F"]))
        if low > high:
            raise DataError(f"this split has {len(self.speakers)} speakers, too few for {count} voices")
        females = int(rng.integers(low, high + 1))
        sexes = rng.permutation(["F"] * females + ["M"] * (sexed - females))
        for sex in sexes:
            voices.append(self._voice(rng, sex, [v[0] for v in voices]))
        speakers, files, offsets, clips = (list(column) for column in zip(*voices))
        gains_db = rng.uniform(-VOICE_GAIN_DB, VOICE_GAIN_DB, count)
        room, sources = -1, []
        if self.bank is not None and rng.random() < self.reverb_share:
            room = int(rng.integers(self.bank.rooms))
            # distinct talker positions while the room has enough of them
            chosen = rng.permutation(SOURCES)[:count] if count <= SOURCES else rng.integers(SOURCES, size=count)
            sources = [int(s) for s in chosen]
            speech = self._reverberate(clips, offsets, gains_db, room, sources)
        else:
            speech = np.zeros(WINDOW, dtype=np.float32)
            for clip, offset, gain in zip(clips, offsets, gains_db):
                crop = clip.crop(offset)
                speech += crop * np.float32(10 ** (gain / 20) / rms(crop))
        background, noise_meta = self._background(rng, real=rng.random() < REAL_NOISE_SHARE)
        snr = float(rng.uniform(*self.snr_db))
        mix = speech + background * np.float32(rms(speech) / 10 ** (snr / 20))
        audio, loudness = set_loudness(mix, rng.uniform(*SPEECH_LOUDNESS_DBFS))
        return audio, meta_row(
            speakers,
            "realistic",
            files=files,
            offsets=offsets,
            gains_db=[round(float(g), 2) for g in gains_db],
            room=room,
            rt60=round(float(self.bank.rt60[room]), 3) if room >= 0 else "",
            rir_ids=[f"{room}/{s}" for s in sources],
            **noise_meta,
            snr_db=round(snr, 2),
            loudness_dbfs=round(loudness, 2),
        )

    def _real_voice(self, rng: np.random.Generator):
        """A real single-voice recording (data.voices) and a 1-s crop in which it speaks."""
        return self._voice(rng, "?", [], self.real_voices)

    def _voice(self, rng: np.random.Generator, sex: str, taken: list[Speaker], candidates: list[Speaker] | None = None):
        """A speaker of this sex (or of `candidates`) not yet in the mixture and a 1-s crop in which they speak."""
        candidates = self.by_sex[sex] if candidates is None else candidates
        for _ in range(_TRIES):
            speaker = candidates[rng.integers(len(candidates))]
            names = speaker.files()
            if speaker in taken or not names:
                continue
            path = names[rng.integers(len(names))]
            clip = self.cache.get(path, speech=True)
            if len(clip.starts):
                return speaker, path, int(clip.starts[rng.integers(len(clip.starts))]) * FRAME, clip
        raise DataError(f"no 1-s stretch of clear speech found in {_TRIES} tries among {len(candidates)} speakers")

    def _reverberate(self, clips, offsets, gains_db, room: int, sources: list[int]) -> np.ndarray:
        """Each voice through its own impulse response; one inverse FFT for the sum (convolution is linear).

        The voice's audio before the crop is convolved too, so the window opens with the room's tail.
        """
        total = 0
        for clip, offset, gain, src in zip(clips, offsets, gains_db, sources):
            x = clip.crop(offset - (RIR_LENGTH - 1), WINDOW + RIR_LENGTH - 1)
            x *= np.float32(10 ** (gain / 20) / rms(x[RIR_LENGTH - 1 :]))
            total = total + scipy.fft.rfft(x, _FFT) * self._rir_spectrum(room, src)
        return scipy.fft.irfft(total, _FFT)[RIR_LENGTH - 1 : RIR_LENGTH - 1 + WINDOW].astype(np.float32)

    def _rir_spectrum(self, room: int, source: int) -> np.ndarray:
        key = (room, source)
        if key not in self._rir_spectra:
            self._rir_spectra[key] = scipy.fft.rfft(self.bank.rirs[room, source], _FFT)
        return self._rir_spectra[key]

    def _background(self, rng: np.random.Generator, real: bool) -> tuple[np.ndarray, dict]:
        """Unit-RMS background: a real recording, or coloured noise (white to brown)."""
        if real:
            path, clip = self.room_sound(rng, self.noise)
            x, offset = _crop(rng, clip)
            return x / rms(x), {"noise_file": path, "noise_offset": offset}
        alpha = float(rng.uniform(0.0, 2.0))
        return coloured_noise(rng, alpha), {"noise_colour": round(alpha, 3)}

    def room_sound(self, rng: np.random.Generator, groups: list[list[NoiseFile]]) -> tuple[str, Clip]:
        """A recording of sound without speech from `groups` (one of the noise folders), or, in
        `pause_tone_share` of the draws, the pauses of a speech recording (corpus.room_tone): its path
        and audio."""
        if self.pause_tone and rng.random() < self.pause_tone_share:
            for _ in range(_TRIES):
                path = self.pause_tone[rng.integers(len(self.pause_tone))]
                clip = self.cache.room_tone(path)
                if len(clip.samples) >= _MIN_TONE:
                    return path, clip
        noise = pick_noise(rng, groups)
        return noise.path, self.cache.get(noise.path, speech=False)

    def _empty_room(self, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
        """Nobody speaks: real room sound, sometimes two sources or a faint microphone hiss beneath.

        Never synthetic noise alone: a model must not learn that 'empty' means 'white noise'.
        """
        path, clip = self.room_sound(rng, self.empty_room)
        x, offset = _crop(rng, clip)
        meta = {"noise_file": path, "noise_offset": offset}
        if rng.random() < 0.4:
            other, other_clip = self.room_sound(rng, self.empty_room)
            y, other_offset = _crop(rng, other_clip)
            x = x + y * np.float32(rms(x) / rms(y) * 10 ** (rng.uniform(-25, -5) / 20))
            meta.update(second_noise_file=other, second_noise_offset=other_offset)
        if rng.random() < 0.3:
            alpha = float(rng.uniform(0.0, 2.0))
            x = x + coloured_noise(rng, alpha) * np.float32(rms(x) * 10 ** (rng.uniform(-40, -20) / 20))
            meta.update(noise_colour=round(alpha, 3))
        audio, loudness = set_loudness(x, rng.uniform(*EMPTY_LOUDNESS_DBFS))
        return audio, meta_row([], "realistic", **meta, loudness_dbfs=round(loudness, 2))


def _crop(rng: np.random.Generator, clip: Clip) -> tuple[np.ndarray, int]:
    """A random 1-s stretch of a sound recording and its first sample; short pieces (room tone) are looped."""
    if len(clip.samples) <= WINDOW:
        return np.resize(clip.samples, WINDOW) * np.float32(1 / 32768), 0
    offset = int(rng.integers(len(clip.samples) - WINDOW + 1))
    return clip.crop(offset), offset


def _by_folder(noise: list[NoiseFile]) -> list[list[NoiseFile]]:
    """Noise grouped by folder: 82 short room-tone pieces must not outweigh one long kitchen recording."""
    groups: dict[str, list[NoiseFile]] = {}
    for n in noise:
        groups.setdefault(str(Path(n.path).parent), []).append(n)
    return [groups[k] for k in sorted(groups)]


def pick_noise(rng: np.random.Generator, groups: list[list[NoiseFile]]) -> NoiseFile:
    group = groups[rng.integers(len(groups))]
    return group[rng.integers(len(group))]


def set_loudness(x: np.ndarray, target_dbfs: float) -> tuple[np.ndarray, float]:
    """Scale to the target RMS level, then down if needed so no sample clips; returns the level reached."""
    x = x * np.float32(10 ** (target_dbfs / 20) / rms(x))
    peak = float(np.max(np.abs(x)))
    if peak > PEAK:
        x *= np.float32(PEAK / peak)
    return x.astype(np.float32, copy=False), _db(rms(x))


COLUMNS = (
    "Speakers", "Speakers Sex", "F", "M",  # the seed paper's columns
    "recipe", "speaker_ids", "files", "offsets", "gains_db", "room", "rt60", "rir_ids",
    "noise_file", "noise_offset", "second_noise_file", "second_noise_offset", "noise_colour",
    "snr_db", "loudness_dbfs", "microphone",  # microphone: "random" where dataset.py coloured the window
    "split", "index", "seed", "epoch",  # MixtureDataset(split, seed).example(index) at this epoch rebuilds it
)


def meta_row(speakers: list[Speaker], recipe: str, **fields) -> dict:
    """One example's metadata, always with every column: the seed paper's first, then what rebuilds it."""
    sexes = "".join(s.sex for s in speakers)
    meta = dict.fromkeys(COLUMNS, "")
    meta.update({"Speakers": len(speakers), "Speakers Sex": sexes, "F": sexes.count("F"), "M": sexes.count("M")})
    meta.update(recipe=recipe, speaker_ids=[s.id for s in speakers], files=[], offsets=[], gains_db=[], room=-1, rir_ids=[])
    unknown = set(fields) - set(COLUMNS)
    if unknown:
        raise KeyError(f"not metadata columns: {sorted(unknown)}")
    meta.update(fields)
    return meta
