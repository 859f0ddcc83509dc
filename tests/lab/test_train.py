"""Training and evaluation on real mixtures from ../shared/data: tiny runs, resume, DDP, seed folders."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("torch", reason="needs PyTorch: the train extra (pip install .[train])")

from occupancy.cli import main  # noqa: E402
from occupancy.config import config_from_dict  # noqa: E402
from occupancy.lab.data import MixtureDataset, load_splits  # noqa: E402
from occupancy.lab.evaluate import SCENE_SETS, TEST_SETS, folder_windows, mixture_set, score  # noqa: E402
from occupancy.models.io import load_model  # noqa: E402
from occupancy.config import DataConfig  # noqa: E402
from occupancy.lab.train import TrainSettings, train, train_settings  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
TINY = dict(arch="M3", epochs=1, batch_size=16, train_length=48, val_length=32, workers=0, paper_share=0.25,
            reverb_share=0.5)


@pytest.fixture(scope="module")
def config_file(shared_data, tmp_path_factory) -> Path:
    """A config.yaml pointing at the shared corpora (absolute paths), as a user would write it."""
    path = tmp_path_factory.mktemp("cfg") / "config.yaml"
    path.write_text(
        "data:\n  corpora:\n"
        f"    - {shared_data / 'librispeech-mini'}\n    - {shared_data / 'speechocean762-train'}\n"
        f"  noise:\n    - {shared_data / 'noise'}\n  cache_mb: 64\n"
    )
    return path


@pytest.fixture(scope="module")
def config(config_file):
    import yaml

    return config_from_dict(yaml.safe_load(config_file.read_text()), config_file)


def _rows(run: Path) -> list[dict]:
    with open(run / "metrics.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_tiny_run_writes_curves_checkpoint_and_model_then_resumes(config, tmp_path):
    run = tmp_path / "run"
    # A 2-epoch run cut short by its time budget after epoch 1, as if interrupted.
    best = train(config, TrainSettings(**{**TINY, "epochs": 2, "max_minutes": 1e-4}), run, "tiny", threads=2)
    assert best == run / "tiny.safetensors"
    for name in ("metrics.csv", "curves.png", "checkpoint.pt", "tiny.json"):
        assert (run / name).stat().st_size > 0, name
    assert (run / "curves.png").read_bytes()[:4] == b"\x89PNG"
    rows = _rows(run)
    assert [r["epoch"] for r in rows] == ["0"]
    assert 0.0 <= float(rows[0]["val_acc"]) <= 1.0 and float(rows[0]["train_loss"]) > 0
    model, meta = load_model(best)
    assert meta["architecture"] == "M3" and meta["classes"] == [0, 1, 2, 3]
    assert meta["recipe"]["paper_share"] == 0.25 and meta["metrics"]["best_epoch"] == 1

    # Resume: the second epoch continues from the checkpoint (same schedule) and the CSV keeps the first.
    train(config, TrainSettings(**{**TINY, "epochs": 2}), run, "tiny", resume=True, threads=2)
    assert [r["epoch"] for r in _rows(run)] == ["0", "1"]
    assert _rows(run)[0] == rows[0]


def test_resume_without_checkpoint_is_a_clear_error(config, tmp_path):
    from occupancy.errors import OccupancyError

    with pytest.raises(OccupancyError, match="no checkpoint"):
        train(config, TrainSettings(**TINY), tmp_path, "x", resume=True)


def test_same_seed_same_first_epoch(config, tmp_path):
    """Fixed seeds: two runs of the same settings give the same losses."""
    a = train(config, TrainSettings(**TINY), tmp_path / "a", "m", threads=1)
    b = train(config, TrainSettings(**TINY), tmp_path / "b", "m", threads=1)
    assert _rows(a.parent)[0]["train_loss"] == _rows(b.parent)[0]["train_loss"]


@pytest.mark.slow  # about 30 s on 2 busy CPU cores: two interpreters, gloo rendezvous
def test_ddp_two_cpu_processes_train_together(config_file, tmp_path):
    """The same command under torchrun: 2 gloo processes, rank 0 writes the run folder."""
    run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone",
           "-m", "occupancy.cli", "--config", str(config_file), "train", "--model", "M3", "--name", "ddp",
           "--out", str(run), "--epochs", "1", "--batch-size", "16", "--train-length", "64",
           "--val-length", "32", "--workers", "0", "--threads", "1"]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-6000:]
    assert "2 process(es)" in done.stderr
    assert (run / "ddp.safetensors").is_file() and len(_rows(run)) == 1


def test_score_counts_top_class_as_that_many_or_more():
    result = score(np.array([0, 1, 3, 3]), np.array([0, 2, 3, 5]), [0, 1, 2, 3])
    assert result["accuracy"] == 0.75 and result["mae"] == 0.25
    assert result["confusion"][3][3] == 2 and result["per_count"]["2"] == 0.0


@pytest.fixture
def dataset_folder(config, tmp_path) -> Path:
    """A small dataset in the dataset format, written from real test-split mixtures."""
    folder = tmp_path / "seedset"
    folder.mkdir()
    dataset = MixtureDataset(load_splits(config.data), split="test", recipe="paper", length=9, seed=5, fresh=False)
    with open(folder / "Test.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["Speakers", "Speakers Sex", "F", "M"])
        for k in range(len(dataset)):
            audio, meta = dataset.example(k)
            sf.write(folder / f"Audio_Test{k}.wav", audio, 16000, subtype="PCM_16")
            writer.writerow([meta["Speakers"], "", meta["F"], meta["M"]])
    return folder


def test_evaluate_on_a_dataset_folder(config, config_file, dataset_folder, tmp_path, capsys):
    windows, counts = folder_windows(dataset_folder)
    assert windows.shape == (9, 16000) and sorted(set(counts)) == [1, 2, 3]
    best = train(config, TrainSettings(**TINY), tmp_path / "run", "tiny", threads=2)
    out = tmp_path / "eval.json"
    code = main(["--config", str(config_file), "evaluate", "--model", str(best), "--data", str(dataset_folder),
                 "--output", str(out), "--record"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "seedset" in printed and "confusion" in printed
    report = json.loads(out.read_text())
    result = report["results"]["seedset"]
    assert result["counter"]["n"] == 9 and sum(map(sum, result["counter"]["confusion"])) == 9
    assert 0 <= result["counter"]["mae"] <= 3
    assert "seedset" in json.loads(best.with_suffix(".json").read_text())["metrics"]


def _whole_seconds(paths: list[str]) -> int:
    return sum(sf.info(p).frames // 16000 for p in paths)


def test_evaluate_scores_real_recordings_as_they_are(config, config_file, shared_data, tmp_path, capsys):
    """The shipped counter on the real sets: whole seconds of the files only, and honest counts there."""
    splits = load_splits(config.data)
    out = tmp_path / "eval.json"
    conf = tmp_path / "config.yaml"  # the shared config plus the real conversation with its truth
    conf.write_text(config_file.read_text() + f"  recordings:\n    - {shared_data / 'real'}\n")
    code = main(["--config", str(conf), "evaluate", "--length", "8", "--output", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "held-out non-speech" in printed and "test voices alone" in printed
    results = json.loads(out.read_text())["results"]
    silence, voices = results["held-out non-speech"]["counter"], results["test voices alone"]["counter"]
    quiet = results["held-out non-speech, -70..-40 dBFS"]["counter"]
    conversation = results["real: conversation-4-speakers"]["counter"]
    held_out = [n.path for n in splits.test_noise if n.empty_room]
    assert not set(held_out) & {n.path for n in splits.noise}  # never a training background
    assert silence["n"] == quiet["n"] == _whole_seconds(held_out) > 100
    assert voices["n"] == _whole_seconds([f for s in splits.speakers["test"] for f in s.files()]) > 500
    assert conversation["n"] == 35 and sum(conversation["confusion"][1]) == 35  # the CSV's labelled windows
    assert sum(silence["confusion"][0]) == silence["n"] and sum(voices["confusion"][1]) == voices["n"]
    # a counter that hears voices in an empty room, or two in one real voice, fails here
    assert silence["accuracy"] >= 0.98 and quiet["accuracy"] >= 0.98 and voices["accuracy"] >= 0.9


def test_evaluate_scores_the_train_speakers_without_bars(config, config_file, tmp_path, capsys):
    """--split train: the same recipes over the train speakers' voices, no bar verdicts, nothing recorded."""
    out = tmp_path / "eval.json"
    code = main(["--config", str(config_file), "evaluate", "--split", "train", "--length", "8", "--output", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["split"] == "train" and set(report["results"]) == set(TEST_SETS) | set(SCENE_SETS)
    assert "realistic dry" in printed and "FAIL" not in printed and "PASS" not in printed
    test_windows = mixture_set(config, length=8, seed=1234, max_speakers=3, **TEST_SETS["realistic dry"])[0]
    train_windows = mixture_set(config, length=8, seed=1234, max_speakers=3, split="train",
                                **TEST_SETS["realistic dry"])[0]
    assert not np.allclose(test_windows, train_windows)
    shipped = (REPO / "models" / "counter.json").read_text()
    code = main(["--config", str(config_file), "evaluate", "--split", "train", "--record", "--length", "8"])
    assert code == 2 and "--record stores test-split figures only" in capsys.readouterr().err
    assert (REPO / "models" / "counter.json").read_text() == shipped


def test_evaluate_with_a_missing_model_is_a_one_line_error(tmp_path, capsys):
    code = main(["evaluate", "--model", str(tmp_path / "none.safetensors"), "--data", str(tmp_path)])
    assert code == 2
    assert "model file not found" in capsys.readouterr().err


def test_training_can_start_from_a_narrower_trained_melconv(config, config_file, tmp_path, caplog, capsys):
    """--init widens a trained melconv into a wider one and trains on; the recipe names the start."""
    small = dict(arch="melconv", arch_kwargs={"width": 8, "dilations": [1, 2]})
    narrow = train(config, TrainSettings(**{**TINY, **small}), tmp_path / "narrow", "narrow", threads=2)
    caplog.set_level("INFO", logger="occupancy.lab.train")
    wide = train(config, TrainSettings(**{**TINY, **small, "arch_kwargs": {"width": 12, "dilations": [1, 2]},
                                          "init": str(narrow)}), tmp_path / "wide", "wide", threads=2)
    assert "widened" in caplog.text
    model, meta = load_model(wide)
    assert model.head.in_features == 24 and meta["recipe"]["init"] == str(narrow)
    # an M3 cannot start a melconv: one line, exit 2, nothing trained
    code = main(["--config", str(config_file), "train", "--model", "melconv", "--init", str(narrow.parent.parent /
                 "m3" / "m3.safetensors"), "--out", str(tmp_path / "x"), "--epochs", "1"])
    assert code == 2 and "model file not found" in capsys.readouterr().err
    m3 = train(config, TrainSettings(**TINY), tmp_path / "m3", "m3", threads=2)
    capsys.readouterr()
    code = main(["--config", str(config_file), "train", "--model", "melconv", "--init", str(m3),
                 "--out", str(tmp_path / "y"), "--epochs", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "--init" in err and "other layers" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "y" / "melconv.safetensors").exists()


def test_settings_come_from_the_config_then_the_preset_then_the_flags():
    data = DataConfig(recipe="paper", reverb_share=0.1, max_speakers=5)
    s = train_settings(data)
    assert (s.recipe, s.reverb_share, s.max_speakers) == ("paper", 0.1, 5)
    s = train_settings(DataConfig(reverb_share=0.3), "paper")  # the seed paper's preset: no rooms
    assert (s.recipe, s.reverb_share, s.batch_size, s.optimizer) == ("paper", 0.0, 32, "adam")
    s = train_settings(data, "paper", reverb_share=0.7, lr=None)  # a flag given wins; None means not given
    assert s.reverb_share == 0.7 and s.lr == 1e-4


def test_old_preset_and_recipe_names_are_accepted_with_a_notice(capsys):
    from occupancy.cli import build_parser

    args = build_parser("train").parse_args(["train", "--preset", "report", "--recipe", "seed"])
    assert (args.preset, args.recipe) == ("paper", "paper")
    err = capsys.readouterr().err
    assert "preset 'report' is now called 'paper'" in err and "recipe 'seed' is now called 'paper'" in err


def test_a_negative_number_of_table_rooms_is_a_one_line_error(tmp_path, capsys):
    """Checked before any data is read, so it needs none."""
    assert main(["train", "--table-rooms", "-1", "--epochs", "1", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "occupancy: error: --table-rooms: must be at least 0, got -1"
