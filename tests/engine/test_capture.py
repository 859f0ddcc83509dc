"""Capture: file replay and the microphone source feeding one queue and one slicer, with true times,
drops and overflows counted, a lost stream reopened, and PortAudio's absence explained."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from occupancy.engine.audio import read_audio
from occupancy.engine.capture import Block, Capture, FileSource, MicSource, as_float
from occupancy.sample import SAMPLE_AUDIO
from tests.alsa_device import DEVICE, alsa_file_device

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 25, 18, 0, 0, tzinfo=UTC)


def capture_all(source, **kwargs) -> list:
    """Run a source through the capture thread; return the TimedWindows."""
    blocks, windows = queue.Queue(maxsize=50), queue.Queue()
    capture = Capture(source, blocks, windows, **kwargs)
    source.start(blocks)
    capture.start()
    capture.join(60)
    assert capture.error is None
    out = []
    while (w := windows.get_nowait()) is not None:
        out.append(w)
    return out


def test_replay_gives_the_files_windows_at_true_times():
    audio = read_audio(SAMPLE_AUDIO)
    windows = capture_all(FileSource([SAMPLE_AUDIO], start=T0))
    assert len(windows) == len(audio) // 16000
    assert [w.start for w in windows] == [T0 + timedelta(seconds=i) for i in range(len(windows))]
    assert all(np.array_equal(w.samples, audio[i * 16000 : (i + 1) * 16000]) for i, w in enumerate(windows))
    assert all(w.seconds == 1.0 for w in windows)


def test_half_second_hop_and_consecutive_files(tmp_path):
    first, second = tmp_path / "a.wav", tmp_path / "b.wav"
    sf.write(first, np.full(16000 * 3, 0.1, np.float32), 16000)
    sf.write(second, np.full(16000 * 2, 0.2, np.float32), 16000)
    windows = capture_all(FileSource([first, second], start=T0), hop_s=0.5)
    starts = [(w.start - T0).total_seconds() for w in windows]
    assert starts == [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 3.5, 4.0]  # no window straddles the two files
    assert all(w.seconds == 0.5 for w in windows)
    assert [round(float(w.samples.mean()), 3) for w in windows] == [0.1] * 5 + [0.2] * 3


def test_without_start_a_file_ends_at_its_modification_time(tmp_path):
    path = tmp_path / "rec.flac"
    sf.write(path, np.zeros(16000 * 4, np.float32), 16000)
    end = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    os.utime(path, (end.timestamp(), end.timestamp()))
    windows = capture_all(FileSource([path]))
    assert windows[0].start == end - timedelta(seconds=4)
    assert windows[-1].end == end


def test_max_seconds_stops_the_source():
    source = FileSource([SAMPLE_AUDIO], start=T0, block_size=1000)
    windows = capture_all(source, max_seconds=10.5)
    assert len(windows) == 10
    assert source.status == "finished"


def test_blocks_at_another_rate_are_resampled_and_gaps_restart_the_windows():
    blocks, windows = queue.Queue(), queue.Queue()
    tone = (0.5 * np.sin(2 * np.pi * 440 * np.arange(48000 * 3) / 48000)).astype(np.float32)
    later = T0 + timedelta(minutes=5)
    for i in range(0, len(tone), 4800):
        blocks.put(Block(tone[i : i + 4800], 48000, T0 if i == 0 else None, 0.0))
    blocks.put(Block((tone[:48000] * 32767).astype(np.int16), 48000, later, 0.0))  # after a gap, as int16
    blocks.put(None)
    capture = Capture(FileSource([SAMPLE_AUDIO]), blocks, windows)
    capture.start()
    capture.join(60)
    got = []
    while (w := windows.get_nowait()) is not None:
        got.append(w)
    assert [w.start for w in got] == [T0, T0 + timedelta(seconds=1), T0 + timedelta(seconds=2), later]
    for w in got:
        assert len(w.samples) == 16000
        spectrum = np.abs(np.fft.rfft(w.samples))
        assert np.argmax(spectrum) == 440  # 1-s window: bin = Hz
        assert np.sqrt(np.mean(w.samples**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.02)


def test_callback_counts_overflows_and_drops_and_marks_the_gaps():
    sd = pytest.importorskip("sounddevice")
    mic = MicSource(None, block_size=160)
    mic._queue, mic._rate, mic._sd = queue.Queue(maxsize=2), 16000, sd
    ok, overflow = sd.CallbackFlags(), sd.CallbackFlags()
    overflow.input_overflow = True
    block = np.arange(160, dtype=np.int16).reshape(-1, 1)
    for status in (ok, ok, ok, ok):  # the third and fourth find the queue full
        mic._callback(block, 160, None, status)
    first, second = mic._queue.get_nowait(), mic._queue.get_nowait()
    assert first.start is not None and second.start is None  # a stream's first block starts a stretch
    assert np.array_equal(first.samples, block[:, 0]) and first.samples.dtype == np.int16
    time.sleep(0.05)  # these blocks came faster than real time: a new stretch waits for the clock to pass them
    mic._callback(block, 160, None, ok)  # after drops: a new stretch
    time.sleep(0.05)
    mic._callback(block, 160, None, overflow)  # PortAudio lost samples: a new stretch too
    assert [b.start is not None for b in (mic._queue.get_nowait(), mic._queue.get_nowait())] == [True, True]
    assert mic.input_stats() == {"overflows": 1, "dropped": 2, "restarts": 0}
    assert as_float(block[:, 0])[1] == pytest.approx(1 / 32768)


def test_callback_holds_the_sample_count_to_the_wall_clock():
    sd = pytest.importorskip("sounddevice")
    mic = MicSource(None, block_size=1600)
    mic._queue, mic._rate, mic._sd = queue.Queue(), 16000, sd
    block, ok = np.zeros((1600, 1), dtype=np.int16), sd.CallbackFlags()
    for _ in range(15):  # 1.5 s of audio at once: a card whose clock runs fast
        mic._callback(block, 1600, None, ok)
    kept = [mic._queue.get_nowait() for _ in range(mic._queue.qsize())]
    assert len(kept) == 11 and mic.dropped == 4  # up to one window ahead of the clock, then dropped
    time.sleep(0.3)
    mic._callback(block, 1600, None, ok)  # still ahead of the clock: dropped
    time.sleep(1.0)
    mic._callback(block, 1600, None, ok)  # the clock has passed what was kept: a new stretch, after it
    restart = mic._queue.get_nowait()
    assert restart.start >= kept[0].start + timedelta(seconds=1.1) and mic.dropped == 5
    time.sleep(1.2)
    mic._callback(block, 1600, None, ok)  # no audio for 1.2 s (a slow clock, a stall): a new stretch at the clock
    later = mic._queue.get_nowait()
    assert later.start is not None and later.start >= restart.start + timedelta(seconds=1.2)


LOST_STREAM_SCRIPT = textwrap.dedent(
    """
    import json, queue, time
    import sounddevice as sd
    from occupancy.engine.capture import MicSource

    class FailingMic(MicSource):
        fail_at = None  # monotonic time when the stream dies, as PortAudio ends it when a device goes

        def _callback(self, indata, frames, time_info, status):
            if self.fail_at and time.monotonic() >= self.fail_at:
                self.fail_at = None
                raise sd.CallbackAbort
            super()._callback(indata, frames, time_info, status)

    mic = FailingMic("occfile", block_size=1600)
    blocks = queue.Queue(maxsize=1000)
    mic.start(blocks)
    died = mic.fail_at = time.monotonic() + 0.3
    statuses = set()
    while mic.restarts == 0 and time.monotonic() < died + 20:
        statuses.add(mic.status)
        time.sleep(0.05)
    block = blocks.get(timeout=5)
    while block.captured_at < died:  # skip what came before the loss
        block = blocks.get(timeout=5)
    mic.stop()
    while blocks.get(timeout=5) is not None:
        pass
    print(json.dumps({"restarts": mic.restarts, "statuses": sorted(statuses),
                      "new_stretch_after_restart": block.start is not None}))
    """
)


def test_a_lost_stream_is_reported_and_reopened(tmp_path):
    env = alsa_file_device(tmp_path, np.zeros(16000 * 5, np.float32))
    result = subprocess.run(
        [sys.executable, "-c", LOST_STREAM_SCRIPT], env=env, cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["restarts"] == 1 and report["new_stretch_after_restart"]
    assert any(s.startswith(f"input error: input stream from '{DEVICE}' stopped") for s in report["statuses"])
    assert "retrying in 1 s" in result.stderr  # logged too, not only shown


def test_missing_portaudio_is_one_line_with_the_fix(tmp_path):
    hide_portaudio = "import ctypes.util; ctypes.util.find_library = lambda name: None\n"
    code = hide_portaudio + "import sys; from occupancy.cli import main; sys.exit(main(sys.argv[1:]))"
    result = subprocess.run(
        [sys.executable, "-c", code, "devices"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("occupancy: error: PortAudio is not installed: run `apt-get install libportaudio2`")
