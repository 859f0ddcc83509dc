"""Audio in, live or recorded: sources put blocks into one bounded queue; a capture thread slices them.

    MicSource (PortAudio callback) --+
                                     +--> block queue --> Capture thread (WindowSlicer) --> windows
    FileSource (replay thread) ------+

The microphone callback only copies the block into the queue: it never blocks, and when the queue
is full the block is dropped and counted. Files go through the very same queue and slicer, so a
replay tests exactly what runs live. A block that starts a new stretch of audio (first block,
after a drop or overflow, a new file, a live stream's sample count straying from the wall clock)
carries its UTC start time; the slicer restarts there, so a gap is never stitched into a window and
timestamps stay true.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Sequence
from itertools import pairwise
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import soundfile as sf

from ..paths import SAMPLE_RATE, WINDOW_S
from .audio import Resampler, WindowSlicer, display_name, open_audio, stream_audio, to_mono
from ..errors import AudioError, DeviceError
from .events import LOG_TIMES, TimedWindow

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 30.0
STALL_S = 5.0  # no block for this long from an open stream counts as a stream error
DRIFT_S = WINDOW_S  # a live stream's timestamps are kept within one window of the wall clock


@dataclass(frozen=True)
class Block:
    """A block of audio from a source; `start` is set only where a new stretch of audio begins."""

    samples: np.ndarray  # float32 in [-1, 1], or int16 as the device delivers it; [frames] or [frames, ch]
    rate: int
    start: datetime | None
    captured_at: float  # time.monotonic() when its last sample arrived
    stream: int = 0  # the source's stream it belongs to: a replay's file (its index), 0 for a microphone


def as_float(samples: np.ndarray) -> np.ndarray:
    """int16 as devices deliver it -> float32 in [-1, 1); float input is passed through."""
    if samples.dtype == np.int16:
        return samples.astype(np.float32) / 32768.0
    return samples


def import_sounddevice():
    """sounddevice, or a one-line DeviceError when the PortAudio library is missing."""
    try:
        import sounddevice
    except OSError as exc:  # sounddevice raises OSError('PortAudio library not found')
        raise DeviceError(
            "PortAudio is not installed: run `apt-get install libportaudio2` "
            f"(or use `occupancy replay FILE`) ({exc})"
        ) from None
    return sounddevice


class NoInputDevice(DeviceError):
    """PortAudio works but there is no input device at all (the demo falls back to the sample)."""


def input_devices() -> list[dict]:
    """Every PortAudio device that can record, as sounddevice describes it."""
    sd = import_sounddevice()
    return [d for d in sd.query_devices() if d["max_input_channels"] > 0]


def find_device(spec: str | int | None) -> dict:
    """The input device named (exactly, else a unique part of the name), numbered, or the default."""
    sd = import_sounddevice()
    devices = input_devices()
    if not devices:
        raise NoInputDevice("no audio input device found")
    if spec is None:
        default = sd.default.device[0]
        return next((d for d in devices if d["index"] == default), devices[0])
    if isinstance(spec, int) or spec.isdigit():
        found = [d for d in devices if d["index"] == int(spec)]
    else:
        found = [d for d in devices if d["name"] == spec] or [
            d for d in devices if spec.lower() in d["name"].lower()
        ]
    if len(found) != 1:
        names = ", ".join(f"{d['index']}: {d['name']}" for d in devices)
        problem = "matches several input devices" if found else "is not an input device"
        raise DeviceError(f"{spec!r} {problem} (available: {names}; see `occupancy devices`)")
    return found[0]


def capture_rate(device: dict) -> int:
    """16 kHz when the device can do it, else its default rate (the capture thread resamples)."""
    sd = import_sounddevice()
    try:
        sd.check_input_settings(device=device["index"], samplerate=SAMPLE_RATE, channels=1, dtype="int16")
        return SAMPLE_RATE
    except sd.PortAudioError:
        return int(device["default_samplerate"])


class MicSource:
    """A live input device. A supervisor thread keeps the stream open: on an error, an unplugged
    device or a stalled stream it logs, sets `status`, and reopens with exponential backoff.

    The stream is opened as int16 mono: every device offers it (float32 would make ALSA's file
    plugin, the test device, read its raw samples as floats).

    Blocks are timed by their sample count from the start of a stretch (so windows are contiguous),
    held to the wall clock (a sound card's clock is not the computer's): when the count falls more than
    DRIFT_S behind the clock (a slow card, a stall), a new stretch starts at the clock; when it runs more
    than DRIFT_S ahead (a fast card), blocks are dropped, and counted in `dropped`, until the clock has
    caught up. No window is then stamped more than a window away from when it was heard, nor overlaps
    another."""

    kind = "microphone"
    spans = ()  # the time it will cover is not known before it is heard

    def __init__(self, device: str | int | None, block_size: int = 1600):
        self.spec = device
        self.block_s = block_size / SAMPLE_RATE
        self.overflows = 0
        self.dropped = 0
        self.restarts = 0
        self.status = "starting"
        self.error: Exception | None = None
        self.name = ""
        self._queue: queue.Queue | None = None
        self._rate = SAMPLE_RATE
        self._gap = True
        # The stretch being captured: its start by the wall clock, its frames so far, and their end.
        self._anchor = self._end = datetime.min.replace(tzinfo=UTC)
        self._frames = 0
        self._last_block = self._opened_at = 0.0
        self._sd = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._supervise, name="occupancy-mic", daemon=True)
        self._stream = None

    def start(self, blocks: queue.Queue) -> None:
        """Open the device now (so a wrong name fails at once), then supervise it in a thread."""
        self._queue = blocks
        self._stream = self._open()
        self._thread.start()

    def stop(self) -> None:
        """Ask to stop; the supervisor closes the stream and ends the queue. Safe from any thread."""
        self._stop.set()

    def input_stats(self) -> dict[str, int]:
        return {"overflows": self.overflows, "dropped": self.dropped, "restarts": self.restarts}

    def _open(self):
        sd = self._sd = import_sounddevice()
        device = find_device(self.spec)
        rate = capture_rate(device)
        # Set before the stream starts: its callback reads them from the first block on.
        self._rate = rate
        self._gap = True
        self._opened_at = self._last_block = time.monotonic()
        try:
            stream = sd.InputStream(
                device=device["index"], samplerate=rate, channels=1, dtype="int16",
                blocksize=round(self.block_s * rate), callback=self._callback,
            )
            stream.start()
        except sd.PortAudioError as exc:
            raise DeviceError(f"cannot open input device {device['name']!r}: {exc}") from None
        self.name = device["name"]
        self.status = f"capturing from {self.name} at {rate} Hz"
        log.info("%s", self.status)
        return stream

    def _callback(self, indata, frames, time_info, status) -> None:
        """PortAudio's thread: time the block, copy it into the queue and return at once."""
        if self._stop.is_set():
            raise self._sd.CallbackStop  # stopping: audio past the end is neither queued nor counted
        now = time.monotonic()
        self._last_block = now
        if status.input_overflow:
            self.overflows += 1
            self._gap = True
        began = datetime.now(UTC) - timedelta(seconds=frames / self._rate)  # by the wall clock
        ahead = (self._end - began).total_seconds()  # where the sample count puts it, against the clock
        if ahead > DRIFT_S or (self._gap and ahead > 0):  # more audio than time: wait for the clock
            self.dropped += 1
            self._gap = True
            return
        if ahead < -DRIFT_S:  # less audio than time
            self._gap = True
        try:
            self._queue.put_nowait(Block(indata[:, 0].copy(), self._rate, began if self._gap else None, now))
        except queue.Full:
            self.dropped += 1
            self._gap = True
            return
        if self._gap:
            self._anchor, self._frames, self._gap = began, 0, False
        self._frames += frames
        self._end = self._anchor + timedelta(seconds=self._frames / self._rate)

    def _supervise(self) -> None:
        sd = import_sounddevice()
        backoff = 1.0
        try:
            while not self._stop.is_set():
                try:
                    if self._stream is None:
                        sd._terminate()  # re-scan devices, so a re-plugged device is found again
                        sd._initialize()
                        self._stream = self._open()
                        self.restarts += 1
                    self._watch(self._stream)  # returns only when asked to stop
                except (DeviceError, sd.PortAudioError) as exc:
                    if time.monotonic() - self._opened_at > MAX_BACKOFF_S:
                        backoff = 1.0  # it had been working: a new failure starts the backoff over
                    self.status = f"input error: {exc}; retrying in {backoff:.0f} s"
                    log.warning("%s", self.status)
                    self._close()
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF_S)
            self.status = "stopped"
        except Exception as exc:  # noqa: BLE001 - an unexpected failure must reach the pipeline, not hang it
            self.error = exc
            self.status = f"input failed: {exc}"
        finally:
            self._close()
            self._queue.put(None)  # always end the stream, so capture and shutdown never wait forever

    def _watch(self, stream) -> None:
        """Return when asked to stop; raise DeviceError when the stream dies or stalls."""
        while not self._stop.wait(0.25):
            if not stream.active:
                raise DeviceError(f"input stream from {self.name!r} stopped (device unplugged?)")
            if time.monotonic() - self._last_block > STALL_S:
                raise DeviceError(f"no audio from {self.name!r} for {STALL_S:.0f} s")

    def _close(self) -> None:
        if self._stream is not None:
            self._stream.close(ignore_errors=True)
            self._stream = None


class FileSource:
    """Recorded audio files fed block by block, paced like a live stream or as fast as possible.

    Each file starts at `start` (the next file where the previous one ended), or without `start`
    at its modification time minus its duration (a recording is last written when it ends).
    `repeat` loops the files forever (the demo, whose runs are recorded with kind 'demo').
    """

    def __init__(
        self,
        paths: Sequence[str | Path],
        *,
        realtime: bool = False,
        start: datetime | None = None,
        block_size: int = 1600,
        repeat: bool = False,
        kind: str = "replay",
    ):
        self.kind = kind
        self.paths = [Path(p) for p in paths]
        self.realtime = realtime
        self.start_time = start
        self.block_s = block_size / SAMPLE_RATE
        self.repeat = repeat
        self.name = ", ".join(display_name(p.name) for p in self.paths)
        self.status = "starting"
        self.error: Exception | None = None
        self._queue: queue.Queue | None = None
        self._durations = [self._duration(p) for p in self.paths]  # opens each file: errors now
        # Where the files lie in time, known before the run starts, so that time already logged is
        # refused before anything is counted; a looping demo covers time as it plays, like a microphone.
        self.spans = () if repeat else self._spans(start)
        ordered = sorted(zip(self.spans, self.paths), key=lambda pair: pair[0])
        for (earlier, first), (later, second) in pairwise(ordered):
            if later[0] < earlier[1]:
                raise AudioError(f"{second}: covers the same time as {first} (by their modification times): "
                                 "give --start to replay them one after the other")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._feed, name="occupancy-replay", daemon=True)

    @staticmethod
    def _duration(path: Path) -> float:
        with open_audio(path) as handle:
            return handle.frames / handle.samplerate

    def _spans(self, begin: datetime | None) -> list[tuple[datetime, datetime]]:
        """(start, end) of each file: end to end from `begin`, or without it each ending at its
        modification time (a recording is last written when it ends)."""
        spans = []
        earliest, latest = LOG_TIMES
        for path, duration in zip(self.paths, self._durations):
            try:
                start = begin or datetime.fromtimestamp(os.path.getmtime(path), UTC) - timedelta(seconds=duration)
                end = start + timedelta(seconds=duration)
                placed = earliest <= start and end <= latest
            except (OverflowError, ValueError, OSError):  # past the calendar's ends
                placed = False
            if not placed:
                raise AudioError(
                    f"{path}: its {duration:.0f} s {'from ' + begin.isoformat() if begin else 'before its modification time'} "
                    f"lie outside the times the log can hold ({earliest.date()} to {latest.date()} UTC): give another --start")
            spans.append((start, end))
            begin = begin and end
        return spans

    def start(self, blocks: queue.Queue) -> None:
        self._queue = blocks
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def input_stats(self) -> dict[str, int]:
        return {}

    def _feed(self) -> None:
        clock = time.monotonic()
        sent = 0  # samples fed so far, for realtime pacing
        spans = self._spans(self.start_time)
        try:
            while not self._stop.is_set():
                for stream, (path, (file_start, _)) in enumerate(zip(self.paths, spans)):
                    self.status = f"replaying {display_name(path.name)}"
                    sent = self._feed_file(path, stream, file_start, clock, sent)
                    if self._stop.is_set():
                        break
                if not self.repeat:
                    break
                spans = self._spans(spans[-1][1] if self.start_time else datetime.now(UTC))
            self.status = "finished"
        except Exception as exc:  # noqa: BLE001 - a failure must reach the pipeline
            self.error = exc
            self.status = f"replay failed: {exc}"
        finally:
            self._queue.put(None)

    def _feed_file(self, path: Path, stream: int, file_start: datetime, clock: float, sent: int) -> int:
        start: datetime | None = file_start
        # Paced like a live stream, blocks are the microphone's size; as fast as possible, 1-s blocks
        # (the block size changes no window, and 0.1-s blocks made feeding the slowest stage).
        for block in stream_audio(path, chunk_seconds=self.block_s if self.realtime else 1.0):
            if self._stop.is_set():
                break
            sent += len(block)
            if self.realtime:
                time.sleep(max(0.0, clock + sent / SAMPLE_RATE - time.monotonic()))
            self._queue.put(Block(block, SAMPLE_RATE, start, time.monotonic(), stream))
            start = None
        return sent


class Recorder:
    """Writes the captured 16 kHz audio to FLAC files in a folder (only with `--record DIR`)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise AudioError(f"{self.folder}: cannot record audio there ({exc.strerror or exc})") from None
        self._file: sf.SoundFile | None = None

    def write(self, samples: np.ndarray, start: datetime | None) -> None:
        """Append samples; a new stretch of audio (start given) begins a new file named by its time."""
        try:
            if start is not None or self._file is None:
                self.close()
                stamp = (start or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S.%fZ")
                path = self.folder / f"occupancy-{stamp}.flac"
                self._file = sf.SoundFile(path, "w", samplerate=SAMPLE_RATE, channels=1, subtype="PCM_16")
                log.info("recording audio to %s", path)
            self._file.write(np.clip(samples, -1.0, 1.0))
        except (OSError, sf.LibsndfileError) as exc:
            raise AudioError(f"{self.folder}: cannot write the recording ({exc})") from None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class Capture(threading.Thread):
    """The capture thread: blocks -> 16 kHz mono -> WindowSlicer -> TimedWindows (None ends them).

    `max_seconds` stops the source after that much audio (a device that never ends, like the ALSA
    file plugin, or a timed session).
    """

    def __init__(
        self,
        source,
        blocks: queue.Queue,
        windows: queue.Queue,
        *,
        window_s: float = 1.0,
        hop_s: float = 1.0,
        max_seconds: float | None = None,
        recorder: Recorder | None = None,
    ):
        super().__init__(name="occupancy-capture", daemon=True)
        self.source = source
        self.blocks = blocks
        self.windows = windows
        self.window_s = window_s
        self.hop_s = hop_s
        self.remaining = None if max_seconds is None else int(round(max_seconds * SAMPLE_RATE))
        self.recorder = recorder
        self.samples_in = 0
        self.error: Exception | None = None

    def run(self) -> None:
        stretch: _Stretch | None = None
        try:
            while (block := self.blocks.get()) is not None:
                if block.start is not None or stretch is None:  # a new stretch of audio starts here
                    if stretch is not None:
                        self._take(stretch, stretch.resampler.flush())
                    stretch = _Stretch(block, self.window_s, self.hop_s)
                stretch.captured_at = block.captured_at
                self._take(stretch, stretch.resampler.push(to_mono(as_float(block.samples))))
            if stretch is not None:
                self._take(stretch, stretch.resampler.flush())
        except Exception as exc:  # noqa: BLE001 - a failure must reach the pipeline, not vanish
            self.error = exc
            self.source.stop()
            while self.blocks.get() is not None:  # let the source finish instead of blocking on a full queue
                pass
        finally:
            if self.recorder:
                self.recorder.close()
            self.windows.put(None)

    def _take(self, stretch: _Stretch, samples: np.ndarray) -> None:
        """A stretch's next 16 kHz samples: recorded, then sliced into windows (none past `max_seconds`)."""
        if self.remaining is not None:
            samples = samples[: self.remaining]
            self.remaining -= len(samples)
            if self.remaining == 0:
                self.source.stop()
        if not len(samples):
            return
        if self.recorder:
            self.recorder.write(samples, stretch.begins)
            stretch.begins = None
        self.samples_in += len(samples)
        for window in stretch.slicer.push(samples):
            start = stretch.anchor + timedelta(seconds=window.start_s)
            self.windows.put(TimedWindow(start, window.samples, self.hop_s, stretch.captured_at, stretch.stream))


class _Stretch:
    """An unbroken run of audio from the source (it ends at a gap): its own resampler, so the audio
    on either side of a gap is never filtered together, and its own windows, timed from its start."""

    def __init__(self, first: Block, window_s: float, hop_s: float):
        self.resampler = Resampler(first.rate)
        self.slicer = WindowSlicer(window_s, hop_s)
        self.anchor = first.start or datetime.now(UTC)
        self.begins: datetime | None = self.anchor  # for the recorder, until its first samples are written
        self.captured_at = first.captured_at  # when the latest block arrived
        self.stream = first.stream
