"""Audio input: any common WAV/FLAC becomes 16 kHz mono windows; bad files give one-line errors."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import soundfile as sf
import soxr

from occupancy.engine.audio import (
    SAMPLE_RATE,
    Resampler,
    WindowSlicer,
    file_windows,
    find_audio_files,
    level_dbfs,
    read_audio,
    stream_audio,
)
from occupancy.errors import AudioError
from occupancy.sample import SAMPLE_AUDIO, SAMPLE_TRUTH, load_truth


def tone(freq: float, seconds: float, rate: int, channels: int = 1, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    x = amp * np.sin(2 * np.pi * freq * t)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


def dominant_frequency(x: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * SAMPLE_RATE / len(x))


@pytest.mark.parametrize(
    "rate, subtype, channels, fmt",
    [
        (16000, "PCM_16", 1, "WAV"),
        (8000, "PCM_U8", 1, "WAV"),
        (44100, "PCM_24", 2, "WAV"),
        (48000, "FLOAT", 2, "WAV"),
        (22050, "PCM_32", 6, "WAV"),
        (48000, "PCM_16", 2, "FLAC"),
        (32000, "PCM_24", 1, "FLAC"),
    ],
)
def test_any_common_format_becomes_16k_mono(tmp_path, rate, subtype, channels, fmt):
    path = tmp_path / f"tone_{rate}_{subtype}.{fmt.lower()}"
    sf.write(path, tone(440, 2.0, rate, channels), rate, subtype=subtype, format=fmt)
    x = read_audio(path)
    assert x.dtype == np.float32 and x.ndim == 1
    assert abs(len(x) - 2 * SAMPLE_RATE) <= 2
    assert abs(dominant_frequency(x) - 440) < 5  # pitch preserved by resampling
    assert abs(level_dbfs(x) - level_dbfs(tone(440, 2.0, SAMPLE_RATE))) < 0.6  # level preserved (8-bit is coarse)


def test_resampling_leaves_no_trace_of_block_edges(tmp_path):
    """A file read in chunks, and the same audio arriving in live blocks of uneven sizes, both equal
    the whole recording resampled at once."""
    rate = 48000
    x = (np.random.default_rng(0).standard_normal(5 * rate) * 0.1).astype(np.float32)
    whole = soxr.resample(x, rate, SAMPLE_RATE)
    sf.write(tmp_path / "noise.wav", x, rate, subtype="FLOAT")
    assert np.array_equal(np.concatenate(list(stream_audio(tmp_path / "noise.wav", chunk_seconds=0.37))), whole)
    edges = np.cumsum(np.random.default_rng(1).integers(1, 9000, size=100))
    edges = [0, *edges[edges < len(x)], len(x)]
    resampler = Resampler(rate)
    pieces = [resampler.push(x[a:b]) for a, b in zip(edges, edges[1:])] + [resampler.flush()]
    assert np.array_equal(np.concatenate(pieces), whole)


def test_stereo_is_averaged_not_summed(tmp_path):
    left, right = tone(300, 1.0, 16000), np.zeros(16000)
    sf.write(tmp_path / "lr.wav", np.stack([left, right], axis=1), 16000)
    x = read_audio(tmp_path / "lr.wav")
    np.testing.assert_allclose(x, left / 2, atol=1e-4)


def test_windows_and_hop(tmp_path):
    sf.write(tmp_path / "five.wav", tone(200, 5.0, 16000), 16000)
    full = list(file_windows(tmp_path / "five.wav"))
    assert [w.start_s for w in full] == [0, 1, 2, 3, 4]
    assert all(len(w.samples) == SAMPLE_RATE for w in full) and full[-1].end_s == 5.0
    half = list(file_windows(tmp_path / "five.wav", hop_s=0.5))
    assert [w.start_s for w in half] == [0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5, 4]
    x = read_audio(tmp_path / "five.wav")
    np.testing.assert_array_equal(half[3].samples, x[24000:40000])


def test_slicer_is_independent_of_block_size():
    x = np.random.default_rng(0).standard_normal(50000).astype(np.float32)
    reference = [w.samples for w in WindowSlicer(1.0, 0.5).push(x)]
    slicer = WindowSlicer(1.0, 0.5)
    windows = []
    for start in range(0, len(x), 1234):
        windows += slicer.push(x[start : start + 1234])
    assert len(windows) == len(reference) == 5
    for a, b in zip(windows, reference):
        np.testing.assert_array_equal(a.samples, b)


def test_short_file_is_padded_with_a_warning(tmp_path, caplog):
    sf.write(tmp_path / "short.wav", tone(300, 0.4, 16000), 16000)
    with caplog.at_level(logging.WARNING):
        windows = list(file_windows(tmp_path / "short.wav"))
    assert len(windows) == 1 and len(windows[0].samples) == SAMPLE_RATE
    assert np.all(windows[0].samples[6400:] == 0)
    assert "short.wav: only 0.40 s of audio" in caplog.text


def test_nan_and_infinite_samples_become_silence(tmp_path, caplog):
    x = tone(300, 1.0, 16000).astype(np.float32)
    x[100:200] = np.nan
    x[300] = np.inf
    sf.write(tmp_path / "nan.wav", x, 16000, subtype="FLOAT")
    with caplog.at_level(logging.WARNING):
        y = read_audio(tmp_path / "nan.wav")
    assert np.isfinite(y).all() and np.all(y[100:200] == 0)
    assert "NaN or infinite samples" in caplog.text


def test_long_file_streams_in_chunks(tmp_path):
    sf.write(tmp_path / "long.flac", tone(250, 70.0, 16000, amp=0.1), 16000)
    chunks = list(stream_audio(tmp_path / "long.flac"))
    assert len(chunks) == 3 and sum(map(len, chunks)) == 70 * SAMPLE_RATE


def _wav_bytes(tmp_path) -> bytes:
    sf.write(tmp_path / "ok.wav", tone(300, 2.0, 16000), 16000)
    return (tmp_path / "ok.wav").read_bytes()


@pytest.mark.parametrize(
    "name, make, message",
    [
        ("missing.wav", None, "file not found"),
        ("empty.wav", lambda tmp, ok: b"", "empty file (0 bytes)"),
        ("truncated.wav", lambda tmp, ok: ok[: len(ok) // 2], "truncated WAV file"),
        ("header_only.wav", lambda tmp, ok: ok[:44], "truncated WAV file"),
        ("text.wav", lambda tmp, ok: b"this is not audio\n" * 50, "not a readable audio file"),
        ("notes.flac", lambda tmp, ok: b"fLaC but then garbage" * 10, "not a readable audio file"),
    ],
)
def test_bad_files_give_one_line_errors(tmp_path, name, make, message):
    ok = _wav_bytes(tmp_path)
    path = tmp_path / name
    if make is not None:
        path.write_bytes(make(tmp_path, ok))
    with pytest.raises(AudioError) as err:
        read_audio(path)
    text = str(err.value)
    assert text.startswith(str(path)) and message in text and "\n" not in text


def test_truncated_flac_is_reported(tmp_path):
    sf.write(tmp_path / "ok.flac", np.random.default_rng(1).uniform(-0.5, 0.5, 64000), 16000)
    data = (tmp_path / "ok.flac").read_bytes()
    (tmp_path / "cut.flac").write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioError, match="cut.flac: truncated or corrupt audio"):
        read_audio(tmp_path / "cut.flac")


def test_folder_search_is_recursive_and_sorted(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for rel in ["z.wav", "a/y.flac", "a/b/x.WAV", "a/readme.txt"]:
        (tmp_path / rel).write_bytes(b"")
    found = find_audio_files([tmp_path])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["a/b/x.WAV", "a/y.flac", "z.wav"]


def test_bundled_sample_matches_its_truth():
    x = read_audio(SAMPLE_AUDIO)
    truth = load_truth(SAMPLE_TRUTH)
    assert len(x) == len(truth) * SAMPLE_RATE
    assert set(truth) == {0, 1, 2, 3} and 60 <= len(truth) <= 120
    levels = [level_dbfs(x[s * SAMPLE_RATE : (s + 1) * SAMPLE_RATE]) for s in range(len(truth))]
    speech = [lv for lv, c in zip(levels, truth) if c > 0]
    assert max(speech) - min(speech) > 10  # varied levels, not one loudness
    quiet = [lv for lv, c in zip(levels, truth) if c == 0]
    assert min(quiet) < -55  # real room tone, not digital silence
    assert min(quiet) > -100


def test_no_audio_anywhere_is_one_error(tmp_path):
    (tmp_path / "notes.txt").write_text("no audio here")
    with pytest.raises(AudioError, match="no .wav or .flac files found"):
        find_audio_files([tmp_path])
