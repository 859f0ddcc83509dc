"""Voices scenes: minutes-long conversations of K distinct talkers, the test of the distinct-voices figure.

The counter's scenes (lab/data/scenes.py) last 10-30 s; the voices figure is read over a 5-min
horizon, so these last 5-10 min (a talker alone: 5 min). Turns are lognormal (median 4 s), talk
shares Dirichlet(3) so some talkers say little, and between turns there is a pause, a short gap or an
overlap. Each talker keeps their own level and, in a room, their own position; a turn varies by
+-2 dB. Every talker speaks (by the corpus' activity rule) at least MIN_SPOKEN_S within the last
horizon, so the truth is K. Speech comes from lab/data's speakers, audio cache and `say`.

Silence in a venue is room sound, so even `dry` and `rooms` lie over a real empty-room recording
35-45 dB below the speech; `noisy` puts one 5-20 dB below. The room bank is the project's: test
scenes use its second half of rooms, the projection's fit and tuning its first half. Rooms have
only SOURCES positions, so beyond that many talkers some share a position (they differ in level).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.signal

from ..data.corpus import FRAME, WINDOW, DataError, Speaker
from ..data.mixing import Mixer, pick_noise, rms, set_loudness
from ..data.rooms import SOURCES, RirBank
from ..data.scenes import say

CONDITIONS = ("dry", "rooms", "noisy")
HORIZON_S = 300
MIN_SPOKEN_S = 8.0  # of speech per talker within the last horizon
MAX_TALKERS = 12
MULTI_SECONDS = (300, 600)
SINGLE_SECONDS = 300
TURN_MEDIAN_S, TURN_SIGMA, TURN_SECONDS = 4.0, 0.7, (1.0, 25.0)
PAUSE_SHARE, PAUSE_SECONDS = 0.25, (0.5, 3.0)
OVERLAP_SHARE, OVERLAP_SECONDS = 0.10, (0.3, 1.5)
TALKER_GAIN_DB, TURN_GAIN_DB = 6.0, 2.0
BACKGROUND_SNR_DB = {"dry": (35.0, 45.0), "rooms": (35.0, 45.0), "noisy": (5.0, 20.0)}
LEVEL_DBFS = (-40.0, -20.0)  # the scene's speech level
_PLAN_MARGIN = 1.25  # planned turn time per talker, as a multiple of MIN_SPOKEN_S (turns hold pauses)
_TRIES = 50


@dataclass
class VoiceScene:
    audio: np.ndarray  # float32 [seconds * WINDOW]
    talkers: list[Speaker]
    spoken_s: np.ndarray  # float [talkers]: seconds each speaks within the last HORIZON_S
    condition: str
    meta: dict

    @property
    def truth(self) -> int:
        return len(self.talkers)

    @property
    def seconds(self) -> int:
        return len(self.audio) // WINDOW


def rooms_for(split: str, bank: RirBank) -> np.ndarray:
    """The rooms a split's scenes are placed in: the test split's are never used to fit or tune."""
    half = max(1, bank.rooms // 2)
    return np.arange(half, bank.rooms) if split == "test" and bank.rooms > 1 else np.arange(half)


def scene_plan(scenes: int, singles: int, max_talkers: int = MAX_TALKERS) -> list[tuple[int, int]]:
    """(index, talkers) of each scene: `scenes` of 2..max_talkers talkers in turn, then `singles` alone.
    The index seeds the scene, so one plan gives the same talkers and turns in every condition."""
    multi = [(i, 2 + i % (max_talkers - 1)) for i in range(scenes)]
    return multi + [(1_000_000 + i, 1) for i in range(singles)]


def make_voice_scene(mixer: Mixer, rng: np.random.Generator, talkers: int, condition: str,
                     rooms: np.ndarray | None = None) -> VoiceScene:
    """One conversation of `talkers` distinct speakers of the mixer's split; `rooms` are the bank's rooms
    it may be placed in (condition 'rooms')."""
    if condition not in CONDITIONS:
        raise ValueError(f"condition must be one of {', '.join(CONDITIONS)}, got {condition!r}")
    mixer.open_cache()
    usable = [s for s in mixer.speakers if s.files()]
    if talkers > len(usable):
        raise DataError(f"this split has {len(usable)} speakers, too few for a scene of {talkers}")
    people = [usable[i] for i in rng.choice(len(usable), size=talkers, replace=False)]
    seconds = SINGLE_SECONDS if talkers == 1 else int(rng.integers(MULTI_SECONDS[0], MULTI_SECONDS[1] + 1))
    gains_db = rng.uniform(-TALKER_GAIN_DB, TALKER_GAIN_DB, talkers)
    for _ in range(_TRIES):
        tracks, active, turns = _render(mixer, rng, people, gains_db, seconds)
        spoken = active[:, -HORIZON_S * WINDOW // FRAME:].sum(axis=1) * FRAME / WINDOW
        if spoken.min() >= MIN_SPOKEN_S:
            break
    else:
        raise DataError(f"no plan gave each of {talkers} talkers {MIN_SPOKEN_S} s of speech in {_TRIES} tries")
    meta = {"condition": condition, "gains_db": [round(float(g), 2) for g in gains_db], "turns": turns}
    if condition == "rooms":
        room = int(rng.choice(rooms))
        positions = rng.permutation(SOURCES)[:talkers] if talkers <= SOURCES else rng.integers(SOURCES, size=talkers)
        speech = sum(scipy.signal.oaconvolve(tracks[positions == p].sum(axis=0), mixer.bank.rirs[room, p])[: tracks.shape[1]]
                     for p in np.unique(positions))
        meta.update(room=room, rt60=round(float(mixer.bank.rt60[room]), 3), positions=positions.tolist())
    else:
        speech = tracks.sum(axis=0)
    background, noise = _room_sound(mixer, rng, len(speech))
    snr = float(rng.uniform(*BACKGROUND_SNR_DB[condition]))
    level = rms(speech[np.repeat(active.any(axis=0), FRAME)])
    audio, _ = set_loudness(speech + background * np.float32(level / 10 ** (snr / 20)), rng.uniform(*LEVEL_DBFS))
    meta.update(noise_file=noise, snr_db=round(snr, 2))
    return VoiceScene(audio, people, spoken, condition, meta)


def _render(mixer: Mixer, rng: np.random.Generator, people: list[Speaker], gains_db: np.ndarray,
            seconds: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Each talker's dry track [talkers, samples] and speech frames [talkers, frames] for one plan."""
    n = seconds * WINDOW
    tracks = np.zeros((len(people), n), dtype=np.float32)
    active = np.zeros((len(people), n // FRAME), dtype=bool)
    turns = _plan(rng, len(people), seconds)
    for who, start, end in turns:
        gain = gains_db[who] + rng.uniform(-TURN_GAIN_DB, TURN_GAIN_DB)
        at, stop = int(start * WINDOW) // FRAME * FRAME, int(end * WINDOW) // FRAME * FRAME
        while stop - at >= WINDOW // 4:  # utterances are short: a long turn strings several together
            wanted = (stop - at) / WINDOW
            at += say(mixer, rng, people[who], gain, tracks[who], active[who], at, (wanted, wanted))
    return tracks, active, len(turns)


def _plan(rng: np.random.Generator, talkers: int, seconds: int) -> list[tuple[int, float, float]]:
    """(talker, start s, end s) turns in which each talker gets enough time in the last horizon."""
    for _ in range(_TRIES * 40):  # about 1 ms each; 12 talkers need a few hundred
        shares = rng.dirichlet(np.full(talkers, 3.0))
        who, t, turns = int(rng.choice(talkers, p=shares)), float(rng.uniform(0, 1)), []
        while t < seconds - 0.5:
            length = float(np.clip(rng.lognormal(np.log(TURN_MEDIAN_S), TURN_SIGMA), *TURN_SECONDS))
            turns.append((who, t, min(t + length, float(seconds))))
            draw = rng.random()
            if draw < PAUSE_SHARE:
                t += length + rng.uniform(*PAUSE_SECONDS)
            elif draw < PAUSE_SHARE + OVERLAP_SHARE and talkers > 1:
                t += max(length - rng.uniform(*OVERLAP_SECONDS), 0.5)
            else:
                t += length + rng.uniform(0.0, 0.3)
            if talkers > 1:
                others = shares.copy()
                others[who] = 0
                who = int(rng.choice(talkers, p=others / others.sum()))
        planned = np.zeros(talkers)
        for talker, start, end in turns:
            planned[talker] += max(0.0, end - max(start, seconds - HORIZON_S))
        if planned.min() >= _PLAN_MARGIN * MIN_SPOKEN_S:
            return turns
    raise DataError(f"no turn plan for {talkers} talkers in {seconds} s")


def _room_sound(mixer: Mixer, rng: np.random.Generator, n: int) -> tuple[np.ndarray, str]:
    """A real recording without voices from the split's noise, looped over the scene, unit RMS."""
    noise = pick_noise(rng, mixer.empty_room)
    samples = mixer.cache.get(noise.path, speech=False).samples
    x = np.resize(np.roll(samples, -int(rng.integers(len(samples)))), n).astype(np.float32)
    return x / np.float32(rms(x)), noise.path
