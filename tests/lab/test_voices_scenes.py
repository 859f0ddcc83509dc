"""Voices scenes: K distinct talkers who each speak long enough in the horizon that the truth is K."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch", reason="needs PyTorch: the train extra (pip install .[train])")

from occupancy.lab.data import load_splits  # noqa: E402
from occupancy.lab.data.mixing import Mixer  # noqa: E402
from occupancy.lab.data.rooms import RirBank, rir_bank  # noqa: E402
from occupancy.lab.voices.scenes import (HORIZON_S, MIN_SPOKEN_S, SINGLE_SECONDS, make_voice_scene,  # noqa: E402
                                         rooms_for, scene_plan)
from tests.lab.test_data import tiny  # noqa: E402, F401  (the made-up corpus fixture)


@pytest.fixture(scope="module")
def mixer(tiny):  # noqa: F811
    mixer = Mixer(load_splits(tiny), "train", max_speakers=1, reverb_share=1.0)
    mixer.bank = rir_bank(tiny.rir_rooms)
    return mixer


@pytest.mark.parametrize("condition", ["dry", "rooms", "noisy"])
def test_every_talker_speaks_long_enough_in_the_horizon_so_the_truth_is_the_talker_count(mixer, condition):
    rooms = rooms_for("train", mixer.bank)
    scene = make_voice_scene(mixer, np.random.default_rng(3), 5, condition, rooms)
    assert scene.truth == 5 and len({t.id for t in scene.talkers}) == 5
    assert 300 <= scene.seconds <= 600 and scene.audio.dtype == np.float32 and np.abs(scene.audio).max() <= 1
    assert scene.spoken_s.min() >= MIN_SPOKEN_S
    assert (condition == "rooms") == ("room" in scene.meta) and scene.meta.get("room", rooms[0]) in rooms


def test_a_scene_is_fixed_by_its_seed_and_a_single_talker_speaks_five_minutes(mixer):
    one = make_voice_scene(mixer, np.random.default_rng([1, 7]), 1, "dry")
    two = make_voice_scene(mixer, np.random.default_rng([1, 7]), 1, "dry")
    assert np.array_equal(one.audio, two.audio) and one.seconds == SINGLE_SECONDS == HORIZON_S
    assert one.truth == 1 and one.spoken_s[0] > 60


def test_the_plan_covers_two_to_twelve_talkers_then_singles_and_test_rooms_are_never_tuned_on():
    plan = scene_plan(13, 2)
    assert [k for _, k in plan] == [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 2, 3, 1, 1]
    assert len({i for i, _ in plan}) == len(plan)
    bank = RirBank(np.zeros((10, 4, 8)), np.ones(10))
    assert set(rooms_for("test", bank)).isdisjoint(rooms_for("train", bank))
    assert list(rooms_for("validation", bank)) == list(rooms_for("train", bank)) == [0, 1, 2, 3, 4]

