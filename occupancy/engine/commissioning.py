"""`occupancy check`: is the microphone placed and set so that the counter's accuracy holds?

The installer talks near where people will sit for the first third of the check, stays quiet for the
second, and talks from the far end of the room for the last. Each second is measured (RMS level in
dBFS, samples at full scale) and counted by the counter itself, so "speech" means what the monitor
will hear as speech. The verdict compares the levels with the range in which the shipped counter's
accuracy was measured to hold on real recordings (scripts/level_sweep.py; docs/microphone.md has the
table the thresholds below come from).
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..paths import SAMPLE_RATE, WINDOW
from .audio import Resampler, level_dbfs, to_mono
from .capture import MicSource, as_float

# From docs/microphone.md ("How loud speech must be"): the speech levels (median RMS of its seconds) at
# which each real set stays within 3 points of its best accuracy (scripts/level_sweep.py; -45, not -50,
# because one voice in a reverberant room needs it: models/RESULTS.md, "Counter v7"), and the smallest
# margin of speech over the room's noise among the real meetings that accuracy was measured on (5-32 dB;
# real non-speech alone was counted 0 in >= 98.6 % of seconds at every level, -70 to -6 dBFS).
SPEECH_MIN_DBFS = -45.0
SPEECH_MAX_DBFS = -30.0  # -25 until counter v7: louder, a quiet room's tone rises over the gate's level
SPEECH_TARGET_DBFS = -35.0  # what "raise the gain" aims at: meetings are best quieter, rooms louder
SNR_MIN_DB = 5.0
CLIPPED = 0.999  # |sample| at or above this is at full scale
CLIPPING_SHARE = 1e-4  # more samples than this at full scale clip audibly
SPEECH_SHARE_MIN = 0.25  # a third spent talking should be heard as speech in at least this share of its seconds
PHASES = ("talk near where people will sit", "stay quiet", "talk from the far end of the room")


@dataclass(frozen=True)
class CheckResult:
    """What the check heard, and its verdict (`ready` or what to change)."""

    seconds: int
    noise_floor_dbfs: float
    speech_dbfs: float | None  # median level of the near third's speech seconds; None: none heard
    far_speech_dbfs: float | None
    speech_share: float  # share of all seconds counted as speech
    near_share: float
    far_share: float
    clipped_share: float
    dropouts: dict[str, int]
    verdict: str

    @property
    def ready(self) -> bool:
        return self.verdict == "ready"

    def lines(self) -> list[str]:
        def db(value: float | None) -> str:
            return "none heard" if value is None else f"{value:.1f} dBFS"

        dropouts = sum(self.dropouts.values())
        return [
            f"seconds heard:  {self.seconds}",
            f"noise floor:    {db(self.noise_floor_dbfs)}" + ("" if self.speech_dbfs is None else
                f" (speech {self.speech_dbfs - self.noise_floor_dbfs:.0f} dB above it; needs {SNR_MIN_DB:.0f})"),
            f"speech, near:   {db(self.speech_dbfs)} (the counter holds from {SPEECH_MIN_DBFS:.0f} to "
            f"{SPEECH_MAX_DBFS:.0f}; best near {SPEECH_TARGET_DBFS:.0f})",
            f"speech, far:    {db(self.far_speech_dbfs)}, heard in {self.far_share:.0%} of the last third "
            f"({'still heard' if far_heard(self.far_share, self.far_speech_dbfs) else 'NOT heard well enough'})",
            f"speech seconds: {self.speech_share:.0%} of all ({self.near_share:.0%} of the first third)",
            f"clipping:       {self.clipped_share:.3%} of samples at full scale",
            "dropouts:       " + (", ".join(f"{k} {v}" for k, v in self.dropouts.items()) if dropouts else "none"),
            f"verdict: {self.verdict}",
        ]


def far_heard(far_share: float, far_speech_dbfs: float | None) -> bool:
    """Speech from the far end was heard often enough, and loud enough for the counter."""
    return far_share >= SPEECH_SHARE_MIN and far_speech_dbfs is not None and far_speech_dbfs >= SPEECH_MIN_DBFS


def record(device: str | int | None, seconds: int, block_size: int,
           on_phase: Callable[[int, str], None] | None = None) -> tuple[np.ndarray, dict[str, int]]:
    """`seconds` of 16 kHz mono audio from the input device, and its overflow/drop/restart counters.
    `on_phase(index, text)` is called as each third begins, to tell the installer what to do."""
    blocks: queue.Queue = queue.Queue(maxsize=max(64, seconds * SAMPLE_RATE // block_size * 2))
    source = MicSource(device, block_size)
    source.start(blocks)
    resampler, got, have = None, [], 0
    wanted, phase = seconds * SAMPLE_RATE, -1
    deadline = time.monotonic() + seconds + 10  # a stalled device must not hang the check
    try:
        while have < wanted and time.monotonic() < deadline:
            if on_phase is not None and have * len(PHASES) // wanted > phase:
                phase = have * len(PHASES) // wanted
                on_phase(phase, PHASES[phase])
            try:
                block = blocks.get(timeout=0.5)
            except queue.Empty:
                continue
            if block is None:
                break
            if resampler is None or resampler.rate != block.rate:
                resampler = Resampler(block.rate)
            samples = resampler.push(to_mono(as_float(block.samples)))
            got.append(samples)
            have += len(samples)
    finally:
        source.stop()
        _until_closed(blocks)
    if source.error is not None:
        raise source.error
    audio = np.concatenate(got)[:wanted] if got else np.zeros(0, np.float32)
    stats = source.input_stats()
    missing = wanted - len(audio)
    if missing >= SAMPLE_RATE // 10:
        stats["missing seconds"] = round(missing / SAMPLE_RATE)
    return audio, stats


def _until_closed(blocks: queue.Queue, timeout_s: float = 5.0) -> None:
    """Wait for the capture thread to close the stream and end the queue (None). Why: it is a daemon
    thread; left closing a PortAudio stream while the interpreter exits, it crashed the process
    (a segmentation fault after the verdict, in 1 of 3 checks through the ALSA file device)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if blocks.get(timeout=0.1) is None:
                return
        except queue.Empty:
            continue


def assess(audio: np.ndarray, counter, dropouts: dict[str, int] | None = None) -> CheckResult:
    """Measure each whole second of `audio` (16 kHz mono float) and give the verdict."""
    dropouts = dict(dropouts or {})
    windows = audio[: len(audio) // WINDOW * WINDOW].reshape(-1, WINDOW)
    if len(windows) < len(PHASES):
        raise ValueError(f"the check needs at least {len(PHASES)} s of audio, got {len(audio) / SAMPLE_RATE:.1f} s")
    levels = np.array([level_dbfs(w) for w in windows])
    speech = counter.predict(windows).argmax(axis=1) > 0
    thirds = np.array_split(np.arange(len(windows)), len(PHASES))
    near, far = thirds[0], thirds[-1]

    def speech_level(seconds: np.ndarray) -> float | None:
        heard = seconds[speech[seconds]]
        return float(np.median(levels[heard])) if len(heard) else None

    quiet = levels[~speech]
    result = dict(
        seconds=len(windows),
        noise_floor_dbfs=float(np.median(quiet) if len(quiet) else levels.min()),
        speech_dbfs=speech_level(near),
        far_speech_dbfs=speech_level(far),
        speech_share=float(speech.mean()),
        near_share=float(speech[near].mean()),
        far_share=float(speech[far].mean()),
        clipped_share=float(np.mean(np.abs(audio) >= CLIPPED)) if len(audio) else 0.0,
        dropouts=dropouts,
    )
    return CheckResult(**result, verdict=verdict(**result))


def verdict(*, noise_floor_dbfs: float, speech_dbfs: float | None, far_speech_dbfs: float | None, near_share: float,
            far_share: float, clipped_share: float, dropouts: dict[str, int], **_) -> str:
    """`ready`, or the first thing to change, in the order an installer can fix them."""
    lost = sum(dropouts.values())
    if lost:
        return (f"audio dropouts ({', '.join(f'{k} {v}' for k, v in dropouts.items() if v)}): "
                "use another USB port or a less busy machine, then check again")
    if clipped_share > CLIPPING_SHARE:
        return "too loud: the input clips; lower the microphone's gain by 10 dB or more and check again"
    if speech_dbfs is None or near_share < SPEECH_SHARE_MIN:
        level = "" if speech_dbfs is None else f" (speech at {speech_dbfs:.0f} dBFS in {near_share:.0%} of it)"
        return ("no speech heard in the first third" + level + ": talk at a normal voice near the microphone "
                "during the first third; if you did, move the microphone closer or raise its gain")
    if speech_dbfs < SPEECH_MIN_DBFS:
        return (f"too quiet: move the microphone closer or raise its gain by about "
                f"{SPEECH_TARGET_DBFS - speech_dbfs:.0f} dB (speech at {speech_dbfs:.0f} dBFS, the counter needs "
                f"{SPEECH_MIN_DBFS:.0f} or more; about {SPEECH_TARGET_DBFS:.0f} is best)")
    if speech_dbfs > SPEECH_MAX_DBFS:
        return (f"too loud: lower the microphone's gain by about {speech_dbfs - SPEECH_TARGET_DBFS:.0f} dB "
                f"(speech at {speech_dbfs:.0f} dBFS; above {SPEECH_MAX_DBFS:.0f} the counter is less accurate)")
    if speech_dbfs - noise_floor_dbfs < SNR_MIN_DB:
        return (f"too noisy: speech is only {speech_dbfs - noise_floor_dbfs:.0f} dB above the room's noise "
                f"({noise_floor_dbfs:.0f} dBFS; the counter was measured with {SNR_MIN_DB:.0f} dB or more): move the "
                "microphone nearer the people and away from fans, loudspeakers and machines")
    if not far_heard(far_share, far_speech_dbfs):
        level = "" if far_speech_dbfs is None else f" at {far_speech_dbfs:.0f} dBFS"
        return ("far end not heard well enough: speech from the far end of the room was heard in "
                f"{far_share:.0%} of the last third{level}; place the microphone nearer the middle of the room, "
                "or use one microphone per room part")
    return "ready"
