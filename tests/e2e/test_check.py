"""`occupancy check`: real speech (the bundled sample's voices) at several levels, and silence, heard
through a real PortAudio device (the ALSA file device, paced like a microphone) or read from a file."""

from __future__ import annotations

import numpy as np
import soundfile as sf

from occupancy.engine.audio import level_dbfs, read_audio
from occupancy.engine.commissioning import SPEECH_MIN_DBFS, SPEECH_TARGET_DBFS
from occupancy.sample import SAMPLE_AUDIO, load_truth
from tests.alsa_device import DEVICE, alsa_paced_device
from tests.e2e.test_engine import occupancy

SECONDS = 9  # three seconds per third


def check_audio(near_dbfs: float, far_dbfs: float, seconds: int = SECONDS) -> np.ndarray:
    """What an installer's check sounds like: the sample's voices with their speech at `near_dbfs`, the
    sample's room tone (its seconds nobody speaks in, at the same gain), then voices at `far_dbfs`."""
    windows = read_audio(SAMPLE_AUDIO)[: 90 * 16000].reshape(90, 16000)
    truth = np.array(load_truth()[:90])
    speech, quiet = windows[truth >= 1], windows[truth == 0]
    speech_level = float(np.median([level_dbfs(w) for w in speech]))
    third = seconds // 3

    def at(level: float, part: np.ndarray) -> np.ndarray:
        return np.clip(part[:third].reshape(-1) * 10 ** ((level - speech_level) / 20), -1, 1)

    return np.concatenate([at(near_dbfs, speech), at(near_dbfs, quiet), at(far_dbfs, speech[third:])]).astype(np.float32)


def check_device(tmp_path, audio: np.ndarray):
    with alsa_paced_device(tmp_path, audio) as env:
        return occupancy("check", "--device", DEVICE, "--seconds", SECONDS, folder=tmp_path, env=env)


def test_speech_at_the_measured_level_through_a_device_is_ready(tmp_path):
    result = check_device(tmp_path, check_audio(SPEECH_TARGET_DBFS, SPEECH_TARGET_DBFS - 6))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "verdict: ready" in result.stdout
    assert f"listening to {DEVICE} for {SECONDS} s" in result.stdout
    assert "talk from the far end of the room" in result.stdout  # the installer was told what to do when
    assert "dropouts:       none" in result.stdout
    assert "(still heard)" in result.stdout
    assert not list(tmp_path.glob("*.wav")) and not list(tmp_path.glob("*.flac"))  # nothing recorded


def test_quiet_speech_through_a_device_says_move_closer_or_raise_the_gain(tmp_path):
    result = check_device(tmp_path, check_audio(SPEECH_MIN_DBFS - 15, SPEECH_MIN_DBFS - 20))
    assert result.returncode == 1, result.stdout + result.stderr
    verdict = result.stdout.splitlines()[-1]
    assert verdict.startswith("verdict: too quiet: move the microphone closer or raise its gain by about"), verdict


def test_silence_through_a_device_says_no_speech_was_heard(tmp_path):
    result = check_device(tmp_path, np.zeros(SECONDS * 16000, np.float32))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "speech, near:   none heard" in result.stdout
    assert result.stdout.splitlines()[-1].startswith("verdict: no speech heard in the first third")


def test_a_recording_at_each_level_gets_its_verdict(tmp_path):
    cases = {  # speech near, speech far -> the verdict's start and the exit code
        (SPEECH_TARGET_DBFS, SPEECH_TARGET_DBFS - 5): ("ready", 0),
        (-3.0, -8.0): ("too loud", 1),  # clipping and far above the range
        (-20.0, -25.0): ("too loud: lower the microphone's gain by about", 1),
        (SPEECH_MIN_DBFS - 10, SPEECH_MIN_DBFS - 15): ("too quiet", 1),
        (SPEECH_TARGET_DBFS, -90.0): ("far end not heard well enough", 1),
    }
    for (near, far), (verdict, code) in cases.items():
        path = tmp_path / f"check{near:+.0f}{far:+.0f}.wav"
        sf.write(path, check_audio(near, far, seconds=30), 16000)
        result = occupancy("check", path, folder=tmp_path)
        assert result.returncode == code, (near, far, result.stdout, result.stderr)
        assert result.stdout.splitlines()[-1].startswith(f"verdict: {verdict}"), (near, far, result.stdout)


def test_user_mistakes_are_one_line_and_exit_2(tmp_path):
    bad = tmp_path / "not-audio.wav"
    bad.write_text("hello")
    short = tmp_path / "short.wav"
    sf.write(short, np.zeros(16000 * 2, np.float32), 16000)
    for args, says in [
        (["check", bad], "not-audio.wav"),
        (["check", short], "at least 3 s"),
        (["check", "--seconds", "2"], "must be 6-3600 seconds"),
        (["check", "--device", "no such microphone"], "input device"),
    ]:
        result = occupancy(*args, folder=tmp_path)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert says in result.stderr and "Traceback" not in result.stderr, (args, result.stderr)
