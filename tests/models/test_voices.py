"""The distinct-voices runtime: its front end and clustering against the libraries they mirror, its
encoder on real voices, and the stream object's memory (support, horizon, clearing)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from occupancy.errors import ModelError
from occupancy.models.voices import (MIN_SUPPORT, RECOUNT_EVERY_S, VOICES_MODEL, DistinctVoices, VoiceEncoder,
                                     cluster_labels, count_voices, merge_interleaved, voice_features)
from occupancy.sample import load_truth, sample_windows


@pytest.fixture(scope="module")
def encoder() -> VoiceEncoder:
    return VoiceEncoder()


@pytest.mark.skipif(importlib.util.find_spec("scipy") is None, reason="the reference clustering is scipy's")
def test_clustering_equals_scipys_average_linkage_cut_at_the_threshold():
    from scipy.cluster.hierarchy import fcluster, linkage

    rng = np.random.default_rng(0)
    for _ in range(100):
        groups, n = int(rng.integers(1, 10)), int(rng.integers(2, 200))
        centres = rng.standard_normal((groups, 16))
        x = centres[rng.integers(groups, size=n)] + rng.standard_normal((n, 16)) * rng.uniform(0.2, 1.5)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        threshold = float(rng.uniform(0.3, 0.9))
        theirs = fcluster(linkage(x, "average", metric="cosine"), threshold, "distance")
        ours = cluster_labels(x, threshold)
        assert len(set(zip(ours, theirs))) == len(set(ours)) == len(set(theirs))  # the same partition
    assert len(cluster_labels(np.zeros((0, 16)), 0.8)) == 0
    assert list(cluster_labels(np.ones((1, 16)) / 4, 0.8)) == [0]


def test_groups_that_alternate_within_turns_are_one_voice_and_turn_takers_are_two():
    """A voice whose seconds fall into two groups in turn is joined; two people who hand over to each
    other a few times are not."""
    scattered = np.array([0, 1] * 10)  # one talker, 20 seconds in a row, alternating between two groups
    assert len(set(merge_interleaved(scattered, np.arange(20.0), 0.25))) == 1
    turns = np.repeat([0, 1] * 4, 5)  # two talkers, turns of 5 s: 7 of each one's 39 neighbours are the other's
    assert len(set(merge_interleaved(turns, np.arange(40.0), 0.25))) == 2
    assert len(set(merge_interleaved(turns, np.arange(40.0), 0.15))) == 1  # a lower bar joins them
    apart = np.array([0, 1] * 10)  # the same alternation, but seconds 3 s apart: never next to each other
    assert len(set(merge_interleaved(apart, np.arange(20.0) * 3, 0.25))) == 2
    x = np.repeat(np.eye(3), 6, axis=0)  # three orthogonal voices of 6 seconds, heard far apart
    assert count_voices(x, np.arange(18.0) * 5, 0.5, 0.25) == 3
    assert count_voices(x[:MIN_SUPPORT - 1], np.arange(MIN_SUPPORT - 1.0), 0.5, 0.25) == 0  # too few seconds


def test_a_scattered_group_is_judged_by_the_neighbours_it_has():
    """In a reverberant room most of a scattered group's seconds have no one-voice neighbour (the counter
    heard the seconds around them as two voices); the few that do sit next to the main voice's seconds.
    A second talker's seconds, isolated ones aside, have their own seconds as neighbours."""
    def heard(second_talker_run: int) -> tuple[np.ndarray, np.ndarray]:
        times, labels = [], []
        for turn in range(10):  # 5 s of the main group, then `second_talker_run` seconds of the other
            times += [20.0 * turn + k for k in range(5 + second_talker_run)]
            labels += [0] * 5 + [1] * second_talker_run
        times += [200.0 + 3 * k for k in range(40)]  # forty seconds of the other alone, between miscounted ones
        labels += [1] * 40
        return np.array(labels), np.array(times)

    assert len(set(merge_interleaved(*heard(1), 0.25))) == 1  # 50 stray seconds: all their 10 neighbours are main's
    assert len(set(merge_interleaved(*heard(5), 0.25))) == 2  # 10 of the second talker's 90 neighbours


@pytest.mark.skipif(importlib.util.find_spec("torchaudio") is None, reason="the reference front end is torchaudio's")
def test_front_end_is_resemblyzers_power_mel_on_the_slaney_scale():
    import torch
    import torchaudio

    window = sample_windows()[40:41] * 0.01  # quiet: raised to -30 dBFS first
    gain = 10 ** (-30 / 20) / np.sqrt(np.mean(window.astype(np.float64) ** 2))
    spectrum = torch.stft(torch.from_numpy(window * np.float32(gain)), 400, 160, window=torch.hann_window(400),
                          center=True, pad_mode="constant", return_complex=True).abs() ** 2
    banks = torchaudio.functional.melscale_fbanks(201, 0.0, 8000.0, 40, 16000, norm="slaney", mel_scale="slaney")
    expected = (spectrum.transpose(1, 2) @ banks).numpy()
    got = voice_features(window)
    assert got.shape == (1, 101, 40)
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-6 * expected.max())


def test_voiceprints_are_unit_vectors_whatever_the_batch(encoder):
    windows = sample_windows()[:8]
    together = encoder.embed(windows)
    apart = np.concatenate([encoder.embed(w[None]) for w in windows])
    assert together.shape == (8, encoder.settings["dimensions"])
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    assert (together * apart).sum(axis=1).min() > 0.99  # int8 activations are scaled per call: near, not equal
    assert encoder.embed(np.zeros((0, 16000), np.float32)).shape == (0, encoder.settings["dimensions"])


def test_a_missing_or_foreign_voices_model_is_one_line(tmp_path):
    with pytest.raises(ModelError, match="voices model is missing"):
        VoiceEncoder(tmp_path / "none.onnx")
    from occupancy.paths import GATE_MODEL

    with pytest.raises(ModelError, match="not a voices model"):
        VoiceEncoder(GATE_MODEL)


def test_two_real_voices_are_told_apart_and_one_voice_is_one(encoder, shared_data):
    """A man and a woman of the test split (voices the projection's fit never heard), 12 one-voice
    seconds each, in turns of 6 s."""
    import soundfile as sf

    readers = [shared_data / "speechocean762-train" / "WAVE" / name for name in ("SPEAKER1309", "SPEAKER1362")]
    voices = []
    for reader in readers:
        audio = np.concatenate([sf.read(f, dtype="float32")[0] for f in sorted(reader.glob("*.flac"))[:12]])
        seconds = audio[: len(audio) // 16000 * 16000].reshape(-1, 16000)
        loud = seconds[np.sqrt((seconds ** 2).mean(axis=1)) > 0.01]
        assert len(loud) >= 12, f"{reader}: too little speech for the test"
        voices.append(loud[:12])
    alone, both = DistinctVoices(encoder), DistinctVoices(encoder)
    for second in range(12):
        alone.hear(second, voices[0][second])
    for second in range(24):
        turn, within = divmod(second, 6)
        both.hear(second, voices[turn % 2][turn // 2 * 6 + within])
    assert alone.figure(12) == 1
    assert both.figure(24) == 2


def test_support_horizon_and_clear(encoder):
    """Fewer windows than MIN_SUPPORT make no voice; what is older than the horizon is forgotten."""
    truth = np.array(load_truth())
    one_voice = sample_windows()[truth == 1]
    voices = DistinctVoices(encoder, horizon_s=60)
    for t in range(MIN_SUPPORT - 1):
        voices.hear(t, one_voice[t])
    assert voices.figure(MIN_SUPPORT - 1) == 0
    for t in range(MIN_SUPPORT - 1, 12):
        voices.hear(t, one_voice[t])
    assert voices.figure(12 + RECOUNT_EVERY_S) >= 1
    assert voices.figure(12 + RECOUNT_EVERY_S + 1) == voices.figure(12 + RECOUNT_EVERY_S)  # not reclustered yet
    assert voices.figure(12 + 60 + 2 * RECOUNT_EVERY_S) == 0 and voices.held == 0
    voices.hear(200, one_voice[0])
    voices.clear()
    assert voices.held == 0 and voices.figure(201) == 0


def test_the_voices_stage_never_imports_torch():
    script = textwrap.dedent("""
        import sys
        from occupancy.models.voices import DistinctVoices, VoiceEncoder
        from occupancy.sample import sample_windows
        voices = DistinctVoices(VoiceEncoder())
        for t, window in enumerate(sample_windows()[:8]):
            voices.hear(t, window)
        voices.figure(8)
        assert "torch" not in sys.modules, "the voices stage imported torch"
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_the_shipped_voices_model_was_built_from_the_committed_projection(encoder):
    """`occupancy export --voices` was run after the last fit: the file names the projection's sha256 and
    carries its clustering settings."""
    import hashlib
    import json
    from pathlib import Path

    from safetensors import safe_open

    projection = Path(__file__).resolve().parents[2] / "models" / "voices-projection.safetensors"
    assert encoder.settings["projection_sha256"] == hashlib.sha256(projection.read_bytes()).hexdigest(), \
        "run `occupancy export --voices`"
    with safe_open(str(projection), framework="numpy") as fh:
        fit = json.loads(fh.metadata()["fit"])
    assert (encoder.threshold, encoder.interleave) == (fit["threshold"], fit["interleave"])
    assert "Apache License" in (VOICES_MODEL.parent / "RESEMBLYZER_LICENSE").read_text()
