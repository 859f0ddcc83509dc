"""Conversation scenes: turn-taking over one room and background, labelled per second by activity."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("torch", reason="needs PyTorch: the train extra (pip install .[train])")

from occupancy.cli import main  # noqa: E402
from occupancy.lab.data import MixtureDataset, load_splits  # noqa: E402
from occupancy.lab.data.corpus import FRAME, WINDOW  # noqa: E402
from occupancy.lab.data.mixing import Mixer  # noqa: E402
from occupancy.lab.data.rooms import rir_bank  # noqa: E402
from occupancy.lab.data.scenes import AMBIGUOUS, make_scene, scene_windows, window_counts  # noqa: E402
from tests.lab.test_data import tiny  # noqa: E402, F401  (the made-up corpus fixture)

PER_WINDOW = WINDOW // FRAME


def test_a_second_counts_talkers_heard_in_most_of_it_and_leaves_partial_ones_out():
    active = np.zeros((3, 4 * PER_WINDOW), dtype=bool)
    active[0, :] = True  # talks throughout
    active[1, PER_WINDOW: PER_WINDOW + 35] = True  # 70 % of second 1: counted
    active[1, 2 * PER_WINDOW: 2 * PER_WINDOW + 20] = True  # 40 % of second 2: unclear
    active[2, 3 * PER_WINDOW: 3 * PER_WINDOW + 3] = True  # 6 % of second 3: a breath, absent
    counts, present = window_counts(active)
    assert counts.tolist() == [1, 2, AMBIGUOUS, 1]
    assert present[:, 1].tolist() == [True, True, False]


@pytest.fixture(scope="module")
def mixer(tiny):  # noqa: F811
    mixer = Mixer(load_splits(tiny), "test", max_speakers=3, reverb_share=0.5)
    mixer.bank = rir_bank(tiny.rir_rooms)
    return mixer


def test_a_scene_is_fixed_by_its_seed_and_labels_each_of_its_seconds(mixer):
    one = make_scene(mixer, np.random.default_rng(7), seconds=12, talkers=3)
    two = make_scene(mixer, np.random.default_rng(7), seconds=12, talkers=3)
    assert np.array_equal(one.audio, two.audio) and np.array_equal(one.counts, two.counts)
    assert one.audio.shape == (12 * WINDOW,) and one.audio.dtype == np.float32 and np.abs(one.audio).max() <= 1
    assert len(one.counts) == 12 and set(one.counts) <= {AMBIGUOUS, 0, 1, 2, 3}
    labelled = one.counts != AMBIGUOUS
    assert np.array_equal(one.present.sum(axis=0)[labelled], one.counts[labelled])
    assert len({t.id for t in one.talkers}) == 3


def test_a_single_talker_is_never_counted_twice(mixer):
    for seed in range(4):
        scene = make_scene(mixer, np.random.default_rng(seed), seconds=10, talkers=1)
        assert set(scene.counts) <= {AMBIGUOUS, 0, 1} and (scene.counts == 1).any()


def test_the_test_set_keeps_only_labelled_seconds(mixer):
    windows, counts = scene_windows(mixer, seed=3, scenes=4, max_talkers=4)
    assert windows.shape == (len(counts), WINDOW) and (counts >= 0).all() and len(counts) >= 4 * 5


def test_scenes_are_a_training_recipe_whose_examples_are_one_second(tiny):  # noqa: F811
    dataset = MixtureDataset(load_splits(tiny), "train", recipe="scenes", length=8, seed=1, fresh=False)
    items = [dataset[i] for i in range(8)]
    assert all(item["audio"].shape == (WINDOW,) for item in items)
    assert {int(item["count"]) for item in items} >= {1}
    meta = dataset.metadata(2)
    assert meta["recipe"] == "scenes" and meta["Speakers"] == len(meta["speaker_ids"])


def test_dataset_make_writes_scene_seconds(tiny, tmp_path):  # noqa: F811
    config = tmp_path / "config.yaml"
    config.write_text(f"data:\n  corpora: {json.dumps(tiny.corpora)}\n  noise: {json.dumps(tiny.noise)}\n"
                      "  rir_rooms: 4\n")
    out = tmp_path / "ds"
    assert main(["--config", str(config), "dataset", "make", "--recipe", "scenes", "--out", str(out),
                 "--train", "4", "--val", "2", "--test", "2"]) == 0
    audio, rate = sf.read(out / "Audio_Train3.wav")
    assert rate == 16000 and len(audio) == WINDOW
    assert json.loads((out / "dataset.json").read_text())["recipe"] == "scenes"
