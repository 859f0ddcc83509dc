"""Conversation scenes: several seconds of talkers taking turns in one room, labelled per second.

A 1-s mixture of crops never shows what a venue hears most: one voice handing over to another, a
pause, two people starting at once, a short "mm-hm" under someone else's sentence, the same few
people at their own distance and level throughout, over one continuous background. A scene is
made of that, and each of its seconds is labelled by the voices' activity with the rule the 1-s
recipes use for a crop: a talker counts in a window when they speak in at least 60 % of its
20-ms frames. A window in which someone speaks for only part of it (10-60 % of the frames) has no
single right answer; it is marked AMBIGUOUS and left out of training and scoring.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.signal

from .corpus import FRAME, MIN_ACTIVE, WINDOW, DataError, Speaker
from .mixing import (REAL_NOISE_SHARE, SPEECH_LOUDNESS_DBFS, VOICE_GAIN_DB, Mixer, coloured_noise, meta_row,
                     rms, set_loudness)
from .rooms import SOURCES

AMBIGUOUS = -1
SCENE_SECONDS = (10, 30)  # a scene's length, for test scenes and `dataset make`
TRAINING_SCENE_SECONDS = 5  # a training example is one labelled second of a scene this long
TURN_SECONDS = (1.0, 6.0)
BACKCHANNEL_SECONDS = (0.4, 1.5)
BACKCHANNEL_SHARE = 0.5  # turns during which another talker says something short (or starts to)
NEW_TALKER_SHARE = 0.85  # turns taken by someone other than the last talker
MIN_PRESENT = 0.1  # below this share of a window's frames a talker is absent (a breath, a word's tail)
FRAMES_PER_WINDOW = WINDOW // FRAME


@dataclass
class Scene:
    audio: np.ndarray  # float32 [seconds * WINDOW]
    counts: np.ndarray  # int64 [seconds]: talkers speaking in each second, AMBIGUOUS where unclear
    present: np.ndarray  # bool [talkers, seconds]: who is counted in each second
    talkers: list[Speaker]
    meta: dict

    def window(self, second: int) -> tuple[np.ndarray, dict]:
        """One second of the scene as a labelled example, with the metadata of the 1-s recipes."""
        speakers = [p for p, here in zip(self.talkers, self.present[:, second]) if here]
        audio = self.audio[second * WINDOW:(second + 1) * WINDOW]
        return audio, meta_row(speakers, "scenes", **self.meta, offsets=[second * WINDOW],
                               loudness_dbfs=round(float(20 * np.log10(max(rms(audio), 1e-12))), 2))


def scene_example(mixer: Mixer, rng: np.random.Generator, count: int) -> tuple[np.ndarray, dict]:
    """A training example: the second of a short scene whose count is nearest `count` (scenes rarely
    hold three voices at once; the 1-s recipes supply those)."""
    talkers = max(1, count) + int(rng.integers(0, 2))
    scene = make_scene(mixer, rng, TRAINING_SCENE_SECONDS, talkers)
    labelled = np.flatnonzero(scene.counts != AMBIGUOUS)
    if not len(labelled):  # every second unclear (rare): another scene
        return scene_example(mixer, rng, count)
    best = labelled[np.abs(scene.counts[labelled] - count) == np.abs(scene.counts[labelled] - count).min()]
    return scene.window(int(best[rng.integers(len(best))]))


def scene_windows(mixer: Mixer, seed: int, scenes: int, max_talkers: int) -> tuple[np.ndarray, np.ndarray]:
    """Every labelled second of `scenes` fixed scenes of 10-30 s with 1..`max_talkers` talkers: a test set."""
    windows, counts = [], []
    for index in range(scenes):
        rng = np.random.default_rng([seed, index])
        scene = make_scene(mixer, rng, int(rng.integers(SCENE_SECONDS[0], SCENE_SECONDS[1] + 1)),
                           1 + index % max_talkers)
        keep = np.flatnonzero(scene.counts != AMBIGUOUS)
        windows += [scene.audio[k * WINDOW:(k + 1) * WINDOW] for k in keep]
        counts += [int(scene.counts[k]) for k in keep]
    return np.stack(windows).astype(np.float32), np.array(counts, dtype=np.int64)


def make_scene(mixer: Mixer, rng: np.random.Generator, seconds: int, talkers: int) -> Scene:
    """`talkers` distinct speakers of the mixer's split in one conversation of `seconds` seconds."""
    mixer.open_cache()
    n = seconds * WINDOW
    people = _talkers(mixer, rng, talkers)
    gains_db = rng.uniform(-VOICE_GAIN_DB, VOICE_GAIN_DB, talkers)
    tracks = np.zeros((talkers, n), dtype=np.float32)
    active = np.zeros((talkers, n // FRAME), dtype=bool)
    start, last = int(rng.integers(0, WINDOW // FRAME)) * FRAME, -1  # up to a second of room before anyone speaks
    while start < n:
        who = _next_talker(rng, talkers, last)
        length = say(mixer, rng, people[who], gains_db[who], tracks[who], active[who], start, TURN_SECONDS)
        if talkers > 1 and rng.random() < BACKCHANNEL_SHARE and length > WINDOW:
            other = _next_talker(rng, talkers, who)
            at = start + int(rng.integers(0, length - WINDOW // 2)) // FRAME * FRAME
            say(mixer, rng, people[other], gains_db[other], tracks[other], active[other], at, BACKCHANNEL_SECONDS)
        start += length + _gap(rng, length)
        last = who
    room = -1
    if mixer.bank is not None and rng.random() < mixer.reverb_share:
        room = int(rng.integers(mixer.bank.rooms))
        sources = rng.permutation(SOURCES)[:talkers] if talkers <= SOURCES else rng.integers(SOURCES, size=talkers)
        speech = sum(scipy.signal.fftconvolve(track, mixer.bank.rirs[room, s])[:n] for track, s in zip(tracks, sources))
    else:
        speech = tracks.sum(axis=0)
    spoken = np.repeat(active.any(axis=0), FRAME)
    background, noise_meta = _background(mixer, rng, n)
    snr = float(rng.uniform(*mixer.snr_db))
    level = rms(speech[spoken[: len(speech)]]) if spoken.any() else 1.0
    audio, _ = set_loudness(speech + background * np.float32(level / 10 ** (snr / 20)),
                                    rng.uniform(*SPEECH_LOUDNESS_DBFS))
    meta = {"gains_db": [round(float(g), 2) for g in gains_db], "room": room, "snr_db": round(snr, 2),
            "rt60": round(float(mixer.bank.rt60[room]), 3) if room >= 0 else "", **noise_meta}
    counts, present = window_counts(active)
    return Scene(audio.astype(np.float32), counts, present, people, meta)


def window_counts(active: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per 1-s window: how many talkers speak in >= 60 % of its frames, or AMBIGUOUS when a talker
    speaks in more than 10 % but less than 60 % of them; and who is counted [talkers, windows].
    `active` is bool [talkers, frames]."""
    windows = active.shape[1] // FRAMES_PER_WINDOW
    share = active[:, : windows * FRAMES_PER_WINDOW].reshape(len(active), windows, FRAMES_PER_WINDOW).mean(axis=2)
    present = share >= MIN_ACTIVE
    unclear = ((share >= MIN_PRESENT) & (share < MIN_ACTIVE)).any(axis=0)
    return np.where(unclear, AMBIGUOUS, present.sum(axis=0)).astype(np.int64), present


def _talkers(mixer: Mixer, rng: np.random.Generator, talkers: int) -> list[Speaker]:
    """Distinct speakers with something to say, any mix of sexes; in the mixer's real-voice share of
    scenes one of them is a real recording (data.voices) instead."""
    usable = [s for s in mixer.speakers if s.files()]
    if talkers > len(usable):
        raise DataError(f"this split has {len(usable)} speakers, too few for a scene of {talkers}")
    people = [usable[i] for i in rng.choice(len(usable), size=talkers, replace=False)]
    if mixer.uses_real_voice(rng):
        people[0] = mixer.real_voices[rng.integers(len(mixer.real_voices))]
    return people


def _next_talker(rng: np.random.Generator, talkers: int, last: int) -> int:
    if talkers == 1:
        return 0
    if last >= 0 and rng.random() >= NEW_TALKER_SHARE:
        return last
    others = [t for t in range(talkers) if t != last]
    return int(others[rng.integers(len(others))])


def say(mixer: Mixer, rng: np.random.Generator, speaker: Speaker, gain_db: float, track: np.ndarray,
         active: np.ndarray, start: int, seconds: tuple[float, float]) -> int:
    """Add a stretch of `speaker`'s speech to `track` at `start` (a frame boundary); returns its length.

    The stretch starts where the speaker speaks, lasts up to the drawn length (a short recording ends
    it sooner) and is brought to the talker's level; its frames of speech are marked in `active`.
    """
    names = speaker.files()
    clip = mixer.cache.get(names[rng.integers(len(names))], speech=True)
    speaking = np.flatnonzero(clip.active)
    if not len(speaking):
        return WINDOW // 2
    first = int(speaking[rng.integers(max(1, len(speaking) // 2))])  # somewhere in its first half
    frames = min(int(rng.uniform(*seconds) * WINDOW) // FRAME, len(clip.active) - first, (len(track) - start) // FRAME)
    if frames <= 0:
        return WINDOW // 2
    piece = clip.crop(first * FRAME, frames * FRAME)
    voiced = np.repeat(clip.active[first:first + frames], FRAME)
    loud = rms(piece[voiced]) if voiced.any() else rms(piece)
    track[start:start + len(piece)] += piece * np.float32(10 ** (gain_db / 20) / max(loud, 1e-6))
    active[start // FRAME:start // FRAME + frames] |= clip.active[first:first + frames]
    return frames * FRAME


def _gap(rng: np.random.Generator, length: int) -> int:
    """Samples between the end of a turn and the next one's start: a pause, none, or an overlap."""
    draw = rng.random()
    if draw < 0.4:
        seconds = rng.uniform(0.2, 1.5)
    elif draw < 0.65:
        seconds = rng.uniform(0.0, 0.2)
    else:
        seconds = -rng.uniform(0.3, max(0.3, min(2.0, 0.6 * length / WINDOW)))
    return int(seconds * WINDOW) // FRAME * FRAME


def _background(mixer: Mixer, rng: np.random.Generator, n: int) -> tuple[np.ndarray, dict]:
    """One continuous unit-RMS background for the whole scene: a real empty-room recording (looped when
    short; never one with distant voices, as it goes on through the seconds labelled 0) or coloured noise."""
    if rng.random() < REAL_NOISE_SHARE:
        path, clip = mixer.room_sound(rng, mixer.empty_room)
        offset = int(rng.integers(len(clip.samples)))
        x = np.resize(np.roll(clip.samples, -offset), n).astype(np.float32)
        return x / max(rms(x), 1e-9), {"noise_file": path, "noise_offset": offset}
    alpha = float(rng.uniform(0.0, 2.0))
    x = np.concatenate([coloured_noise(rng, alpha) for _ in range(-(-n // WINDOW))])[:n]
    return x / rms(x), {"noise_colour": round(alpha, 3)}
