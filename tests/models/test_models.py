"""Model registry, model files and the PyTorch counter (VAD gate), on real audio where it matters.
The ONNX Runtime counter, what a venue runs, is tested in test_onnx_runtime.py."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the PyTorch runtime needs the train extra (pip install .[train])")

from occupancy.engine.audio import read_audio  # noqa: E402
from occupancy.errors import ModelError  # noqa: E402
from occupancy.models import ARCHITECTURES, GateRule, load_counter  # noqa: E402
from occupancy.models.architectures import _BODIES, PAPER_TABLE, build_model, count_parameters  # noqa: E402
from occupancy.models.counter import rms_dbfs  # noqa: E402
from occupancy.models.io import load_model, save_model  # noqa: E402
from occupancy.sample import SAMPLE_AUDIO  # noqa: E402


def _meta(arch: str = "M3", **extra) -> dict:
    return {"architecture": arch, "arch_kwargs": {}, "classes": [0, 1, 2, 3], "sample_rate": 16000,
            "window_s": 1.0, **extra}


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_every_architecture_counts_a_batch_of_windows(arch):
    model = build_model(arch).eval()
    with torch.inference_mode():
        logits = model(torch.randn(3, 16000) * 0.1)
    assert logits.shape == (3, 4)
    assert torch.isfinite(logits).all()


def test_sex_head_gives_women_and_men_logits():
    model = build_model("M5", sex_head=True, max_speakers=3).eval()
    with torch.inference_mode():
        count, sex = model(torch.randn(2, 16000))
    assert count.shape == (2, 4) and sex.shape == (2, 2, 4)


def test_the_torch_free_list_of_architectures_is_the_registry():
    assert tuple(_BODIES) == ARCHITECTURES


@pytest.mark.parametrize("arch", [a for a, (n, _) in PAPER_TABLE.items() if n])
def test_parameter_counts_match_the_reports_table(arch):
    assert count_parameters(build_model(arch, n_classes=3)) == PAPER_TABLE[arch][0]


def test_unknown_architecture_is_refused():
    with pytest.raises(KeyError, match="unknown architecture"):
        build_model("M6")


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = build_model("M3").eval()
    path = save_model(model, tmp_path / "tiny.safetensors", _meta())
    return model, path


def test_save_and_load_give_the_same_outputs(saved):
    model, path = saved
    loaded, meta = load_model(path)
    x = torch.randn(4, 16000)
    with torch.inference_mode():
        assert torch.allclose(model(x), loaded(x))
    assert meta["architecture"] == "M3" and meta["classes"] == [0, 1, 2, 3] and meta["name"] == "tiny"


def test_truncated_weights_are_refused(saved):
    _, path = saved
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="tiny.safetensors"):
        load_model(path)


def test_pickle_renamed_safetensors_is_refused_without_unpickling(saved, tmp_path):
    model, path = saved
    marker = tmp_path / "unpickled"

    class Trap:
        def __reduce__(self):
            return (marker.touch, ())

    torch.save({"state": model.state_dict(), "trap": Trap()}, path)
    with pytest.raises(ModelError, match="not a readable safetensors file"):
        load_model(path)
    assert not marker.exists()


def test_weights_of_another_architecture_are_refused(saved):
    _, path = saved
    meta = json.loads(path.with_suffix(".json").read_text())
    meta["architecture"] = "M5"
    path.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="do not match architecture 'M5'"):
        load_model(path)


def test_wrong_shapes_are_refused(tmp_path):
    save_model(build_model("M3", n_classes=3), tmp_path / "m.safetensors", _meta())  # json says 4 classes
    with pytest.raises(ModelError, match="has shape"):
        load_model(tmp_path / "m.safetensors")


def test_missing_or_incomplete_metadata_is_refused(saved):
    _, path = saved
    meta_file = path.with_suffix(".json")
    meta = json.loads(meta_file.read_text())
    del meta["classes"]
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="lacks classes"):
        load_model(path)
    meta_file.unlink()
    with pytest.raises(ModelError, match="metadata file not found"):
        load_model(path)


def test_missing_default_model_says_how_to_get_one(monkeypatch, tmp_path):
    monkeypatch.setattr("occupancy.models.runtimes.default_model_path", lambda: tmp_path / "counter.safetensors")
    with pytest.raises(ModelError, match="occupancy train"):
        load_counter()


@pytest.fixture(scope="module")
def real_windows() -> np.ndarray:
    """Ten 1-s windows of the bundled real recording (speech of 0-3 voices and pauses)."""
    audio = read_audio(SAMPLE_AUDIO)
    return audio[: 10 * 16000].reshape(10, 16000)


def test_predict_rows_are_probabilities(saved, real_windows):
    _, path = saved
    counter = load_counter(path, device="cpu", vad=False, runtime="torch")
    probs = counter.predict(real_windows)
    assert probs.dtype == np.float32 and probs.shape == (10, 4)
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert counter.classes == [0, 1, 2, 3] and counter.name == "tiny" and counter.device.type == "cpu"


def test_predict_refuses_wrong_window_length(saved):
    _, path = saved
    with pytest.raises(ValueError, match="16000"):
        load_counter(path, vad=False, runtime="torch").predict(np.zeros((2, 8000), np.float32))


def real_noise(shared_data) -> np.ndarray:
    """Digital silence and five real non-speech recordings (1 s each, as recorded: -54..-35 dBFS)."""
    names = ["ambient_engine/city_traffic_distant.flac", "ambient_engine/wind_metal_squeaks.flac",
             "max_audio_classifier/rain.flac", "max_audio_classifier/typing.flac", "speech_commands/running_tap.flac"]
    noise = [read_audio(shared_data / "noise" / n)[:16000] for n in names]
    noise = np.stack([np.pad(n, (0, 16000 - len(n))) for n in noise])
    return np.concatenate([np.zeros((1, 16000), np.float32), noise])


def test_vad_gates_silence_and_quiet_real_noise_to_zero(saved, shared_data):
    """Below model.vad_quiet_dbfs, silence and real non-speech are count 0 whatever the network says."""
    _, path = saved
    counter = load_counter(path, device="cpu", vad=True, runtime="torch")
    windows = real_noise(shared_data)
    quiet = windows * 10 ** ((counter.gate_rule.quiet_dbfs - 5 - rms_dbfs(windows)) / 20)[:, None]
    probs = counter.predict(quiet.astype(np.float32))
    assert np.array_equal(probs.argmax(axis=1), np.zeros(len(windows)))
    assert np.allclose(probs[:, 0], 1.0)


def test_above_the_quiet_level_the_gate_silences_only_what_silero_is_sure_of(saved, shared_data):
    """Louder windows are silenced only below model.vad_loud_threshold: the rest is the network's to count."""
    _, path = saved
    windows = real_noise(shared_data)[1:]
    assert (rms_dbfs(windows) > GateRule().quiet_dbfs).all()
    network = load_counter(path, device="cpu", vad=False, runtime="torch").count_probabilities(windows)
    assert (network.argmax(axis=1) > 0).all()  # the untrained network hears voices in all of them
    silenced = []
    for loud in (0.05, 0.4):
        counter = load_counter(path, device="cpu", gate_rule=GateRule(loud_threshold=loud), runtime="torch")
        counted = counter.predict(windows).argmax(axis=1)
        assert np.array_equal(counted == 0, counter.speech_probability(windows) < loud)
        silenced.append((counted == 0).sum())
    assert silenced[0] < silenced[1]  # silero scores such noise 0.07-0.26: a real difference


def test_vad_lets_real_speech_through(saved, shared_data):
    _, path = saved
    counter = load_counter(path, device="cpu", vad=True, runtime="torch")
    flac = sorted((shared_data / "librispeech-mini" / "LibriSpeech").rglob("*.flac"))[0]
    speech = read_audio(flac)[16000:48000].reshape(2, 16000)
    assert (counter.speech_probability(speech) >= 0.5).all()
    assert np.allclose(counter.predict(speech), counter.count_probabilities(speech))



class _FrameCounter:
    """Wraps silero-vad's model, counting the 32-ms frames it is asked to score."""

    def __init__(self, model):
        self.model, self.frames = model, 0

    def __call__(self, x, sample_rate):
        self.frames += 1
        return self.model(x, sample_rate)

    def reset_states(self):
        self.model.reset_states()


def test_gate_stops_listening_once_it_has_heard_speech(saved):
    """On the bundled recording, stopping at the threshold gives every window the same verdict as
    scoring all 31 frames, and a speech window needs far fewer frames."""
    _, path = saved
    counter = load_counter(path, device="cpu", vad=True, runtime="torch")
    windows = read_audio(SAMPLE_AUDIO)[: 90 * 16000].reshape(90, 16000)
    full = counter.speech_probability(windows)
    assert 0 < (full >= 0.5).sum() < len(windows)  # the recording has both speech and silence
    early = np.concatenate([counter.speech_probability(w[None], enough=0.5) for w in windows])
    assert np.array_equal(early >= 0.5, full >= 0.5)
    speech = windows[int(np.argmax(full))][None]
    counter.gate.model = spy = _FrameCounter(counter.gate.model)
    counter.speech_probability(speech, enough=0.5)
    assert spy.frames < 31
    spy.frames = 0
    counter.speech_probability(speech)
    assert spy.frames == 31


def test_network_batches_give_the_same_counts_as_single_windows(real_windows):
    """The network takes windows 64 at a time; 130 windows (three batches) match one-by-one results."""
    counter = load_counter(vad=False, device="cpu", runtime="torch")
    windows = np.concatenate([real_windows] * 13)
    together = counter.count_probabilities(windows)
    alone = np.concatenate([counter.count_probabilities(w[None]) for w in windows[:64:7]])
    assert counter.batch_size == 64 and together.shape == (130, 4)
    assert np.allclose(together[:64:7], alone, atol=1e-4)
    assert np.allclose(together[:10], together[120:], atol=1e-5)


def test_freed_memory_is_kept_where_the_c_library_is_glibc():
    import platform

    from occupancy.models.device import keep_freed_memory

    glibc = platform.libc_ver()[0] == "glibc"
    assert keep_freed_memory() is glibc
