"""`occupancy evaluate --voices`: the counter, the voices stage and the scoring, end to end on tiny scenes."""

from __future__ import annotations

import json

import pytest
import yaml

pytest.importorskip("torch", reason="needs PyTorch: the train extra (pip install .[train])")

from occupancy.cli import main  # noqa: E402
from occupancy.lab.voices.evaluate import score_readings, verdicts  # noqa: E402
from occupancy.models.voices import VOICES_MODEL  # noqa: E402
from tests.lab.test_data import tiny  # noqa: E402, F401  (the made-up corpus fixture)


def test_scores_count_multi_talker_scenes_apart_from_single_talkers():
    scores = score_readings([1, 1, 2, 5, 5, 12], [1, 2, 2, 4, 7, 9])
    assert scores["scenes"] == 4 and scores["singles"] == 2
    assert scores["within_1"] == 0.5 and scores["mae"] == 1.5 and scores["single_reads_1"] == 0.5
    assert scores["per_k"]["5"] == {"n": 2, "mean_reading": 5.5, "within_1": 0.5}
    marks = verdicts("dry", scores)
    assert {k: v["met"] for k, v in marks.items()} == {"within_1": False, "mae": False, "single_reads_1": False}
    assert verdicts("noisy", scores) == {}


@pytest.mark.skipif(not VOICES_MODEL.is_file(), reason="needs the shipped voices model")
def test_evaluate_voices_runs_the_whole_stage_and_writes_json(tiny, tmp_path, capsys):  # noqa: F811
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"data": {"corpora": list(tiny.corpora), "noise": list(tiny.noise),
                                               "rir_rooms": tiny.rir_rooms, "cache_mb": 64}}))
    out = tmp_path / "voices.json"
    assert main(["--config", str(config), "evaluate", "--voices", "--scenes", "1", "--singles", "1",
                 "--condition", "dry", "--condition", "rooms", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "distinct voices, test speakers" in printed and f"written: {out}" in printed
    report = json.loads(out.read_text())
    assert set(report["conditions"]) == {"dry", "rooms"}
    for scores in report["conditions"].values():
        assert scores["scenes"] == 1 and scores["singles"] == 1
        assert set(scores["per_k"]) == {"1", "2"} and scores["cpu_ms_per_voice_s"] >= 0
        assert set(scores["verdicts"]) == {"within_1", "mae", "single_reads_1"}
    assert 0 < report["threshold"] < 1 and report["projection"]["threshold"] == report["threshold"]


def test_voices_flags_that_do_not_apply_are_one_line_errors(capsys):
    assert main(["evaluate", "--voices", "--record"]) == 2
    assert "--record and --data do not apply" in capsys.readouterr().err
