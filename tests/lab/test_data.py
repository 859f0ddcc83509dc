"""Training data: corpus layouts, speaker-disjoint splits, true and balanced labels, reproducible export."""

from __future__ import annotations

import csv
import dataclasses
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

torch = pytest.importorskip("torch", reason="needs PyTorch: the train extra (pip install .[train])")

from occupancy.cli import main  # noqa: E402
from occupancy.config import DataConfig  # noqa: E402
from occupancy.lab.data import DataError, MixtureDataset, load_splits  # noqa: E402
from occupancy.lab.data.corpus import FRAME, AudioCache, active_frames, active_starts, read_corpus, read_noise  # noqa: E402
from occupancy.lab.data.writer import FILE_NAMES, make_dataset  # noqa: E402

RATE = 16000


def _speechlike(rng: np.random.Generator, seconds: float, pitch: float) -> np.ndarray:
    """Syllable-like tone bursts (voiced harmonics, 150-300 ms) separated by short pauses."""
    out = np.zeros(int(seconds * RATE), dtype=np.float32)
    pos = 0
    while pos < len(out):
        n = int(rng.uniform(0.15, 0.3) * RATE)
        t = np.arange(n) / RATE
        burst = sum(np.sin(2 * np.pi * pitch * h * t) / h for h in range(1, 5)) * np.hanning(n)
        out[pos : pos + n] = 0.3 * burst[: len(out) - pos]
        pos += n + int(rng.uniform(0.02, 0.08) * RATE)
    return out + 1e-4 * rng.standard_normal(len(out)).astype(np.float32)


def make_librispeech(root: Path, sexes: dict[str, str], subsets=("train-clean-100", "dev-clean")) -> Path:
    """A LibriSpeech-layout folder: SPEAKERS.TXT with comments, two chapters of FLACs per speaker."""
    rng = np.random.default_rng(1)
    lines = [";ID  |SEX| SUBSET | MINUTES | NAME", "; comment line"]
    for k, (spk, sex) in enumerate(sexes.items()):
        subset = subsets[k % len(subsets)]
        lines.append(f"{spk} | {sex} | {subset} | 1.00 | Reader |with| pipes")
        for chapter in ("100", "200"):
            folder = root / "LibriSpeech" / subset / spk / chapter
            folder.mkdir(parents=True)
            pitch = 120.0 if sex == "M" else 220.0
            sf.write(folder / f"{spk}-{chapter}-0000.flac", _speechlike(rng, 2.5, pitch), RATE)
    (root / "LibriSpeech" / "SPEAKERS.TXT").write_text("\n".join(lines) + "\n")
    return root


def make_noise(root: Path) -> Path:
    rng = np.random.default_rng(2)
    root.mkdir(parents=True)
    hum = 0.05 * np.sin(2 * np.pi * 50 * np.arange(3 * RATE) / RATE) + 0.01 * rng.standard_normal(3 * RATE)
    sf.write(root / "hum.flac", hum.astype(np.float32), RATE)
    sf.write(root / "fan.flac", 0.02 * rng.standard_normal(3 * RATE).astype(np.float32), RATE)
    sf.write(root / "snoring.flac", _speechlike(rng, 2.0, 90.0), RATE)
    sf.write(root / "crowd.flac", 0.05 * rng.standard_normal(2 * RATE).astype(np.float32), RATE)
    (root / "SOURCES.md").write_text(
        "| file | dur s | content | flag |\n|---|---|---|---|\n| hum.flac | 3 | hum | |\n| fan.flac | 3 | fan | |\n"
        "| snoring.flac | 2 | snoring | HUMAN-VOCAL |\n| crowd.flac | 2 | crowd | MAYBE-VOICES |\n"
    )
    return root


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> DataConfig:
    """Config over a made-up corpus of 20 women and 20 men, with a four-room reverb bank."""
    base = tmp_path_factory.mktemp("tiny")
    sexes = {str(100 + k): "F" if k % 2 else "M" for k in range(40)}
    corpus = make_librispeech(base / "corpus", sexes)
    noise = make_noise(base / "noise")
    return DataConfig(corpora=[str(corpus)], noise=[str(noise)], rir_rooms=4, cache_mb=64)


def test_librispeech_layout_is_read(tmp_path):
    sexes = {"19": "F", "26": "M", "32": "F"}
    corpus = make_librispeech(tmp_path / "ls", sexes)
    (corpus / "LibriSpeech" / "dev-clean" / "999" / "1").mkdir(parents=True)  # not in SPEAKERS.TXT
    speakers = {s.id: s for s in read_corpus(corpus)}
    assert {k: s.sex for k, s in speakers.items()} == {f"ls/{k}": v for k, v in sexes.items()}
    assert [Path(f).name for f in speakers["ls/26"].files()] == ["26-100-0000.flac", "26-200-0000.flac"]


def test_speechocean_layout_and_noise_flags(tmp_path):
    root = tmp_path / "so"
    for spk in ("0001", "0006"):
        (root / "WAVE" / f"SPEAKER{spk}").mkdir(parents=True)
        sf.write(root / "WAVE" / f"SPEAKER{spk}" / "x.flac", np.zeros(RATE, np.float32), RATE)
    (root / "spk2gender").write_text("0001\tm\n0006\tf\n")
    assert [(s.id, s.sex, len(s.files())) for s in read_corpus(root)] == [("so/0001", "M", 1), ("so/0006", "F", 1)]
    noise = {Path(n.path).name: n.empty_room for n in read_noise([str(make_noise(tmp_path / "noise"))])}
    assert noise == {"hum.flac": True, "fan.flac": True, "crowd.flac": False}  # snoring dropped, crowd only under speech


def test_unknown_layout_is_a_one_line_error(tmp_path):
    with pytest.raises(DataError, match="not a known corpus layout"):
        read_corpus(tmp_path)


def test_crops_start_only_where_speech_fills_most_frames():
    rng = np.random.default_rng(0)
    speech = _speechlike(rng, 1.5, 150.0)
    audio = np.concatenate([speech, 1e-4 * rng.standard_normal(RATE).astype(np.float32)])
    starts = active_starts(active_frames(audio))
    frames_of_speech = len(speech) // FRAME
    # a crop must hold >= 30 of its 50 frames in speech: it starts >= 30 frames before the speech ends
    assert len(starts) and starts.max() <= frames_of_speech - 30 + 1 and starts.min() == 0
    assert len(active_starts(active_frames(audio[: RATE // 2]))) == 0


def test_audio_cache_stays_within_its_bound(tmp_path):
    cache = AudioCache(max_mb=1)  # each 10-s file takes 320 kB as int16
    for k in range(8):
        path = tmp_path / f"{k}.flac"
        sf.write(path, 0.1 * np.sin(np.arange(10 * RATE) * (0.01 + k / 100)).astype(np.float32), RATE)
        cache.get(str(path), speech=True)
        assert cache.bytes <= cache.max_bytes
    assert 2 <= len(cache) < 8


def test_splits_are_speaker_disjoint_balanced_and_deterministic(tiny, tmp_path):
    splits = load_splits(tiny)
    ids = {name: {s.id for s in group} for name, group in splits.speakers.items()}
    assert not ids["train"] & ids["validation"] and not ids["train"] & ids["test"] and not ids["validation"] & ids["test"]
    assert sum(map(len, ids.values())) == 40
    for group in splits.speakers.values():
        assert Counter(s.sex for s in group)["F"] == Counter(s.sex for s in group)["M"]
    assert load_splits(tiny).manifest() == splits.manifest()
    assert load_splits(dataclasses.replace(tiny, seed=1)).manifest() != splits.manifest()
    splits.save(tmp_path / "splits.json")
    assert json.loads((tmp_path / "splits.json").read_text())["splits"]["test"][0]["id"] in ids["test"]


def test_counts_and_sex_compositions_are_balanced(tiny):
    ds = MixtureDataset(load_splits(tiny), "train", length=800, reverb_share=0.5)
    metas = [ds.metadata(i) for i in range(len(ds))]
    assert Counter(m["Speakers"] for m in metas) == {0: 200, 1: 200, 2: 200, 3: 200}
    for n in (1, 2, 3):
        females = Counter(m["F"] for m in metas if m["Speakers"] == n)
        assert set(females) == set(range(n + 1))
        assert min(females.values()) > 0.6 * 200 / (n + 1)
    for m in metas:
        assert len(m["Speakers Sex"]) == m["Speakers"] == m["F"] + m["M"] == len(set(m["speaker_ids"]))
        assert m["Speakers Sex"].count("F") == m["F"]
    assert 0.35 < np.mean([m["room"] >= 0 for m in metas if m["Speakers"]]) < 0.65


def test_loudness_does_not_tell_the_count(tiny):
    ds = MixtureDataset(load_splits(tiny), "validation", length=400, fresh=False)
    levels = {n: [] for n in range(1, 4)}
    for i in range(len(ds)):
        item = ds[i]
        if item["count"]:
            rms = float(item["audio"].pow(2).mean().sqrt())
            levels[item["count"]].append(20 * np.log10(rms))
    means = [np.mean(v) for v in levels.values()]
    assert max(means) - min(means) < 4.0
    assert all(np.min(v) < -45 and np.max(v) > -20 for v in levels.values())


def test_paper_recipe_is_a_plain_average(tiny):
    ds = MixtureDataset(load_splits(tiny), "test", recipe="paper", length=30, fresh=False)
    for i in range(len(ds)):
        audio, meta = ds.example(i)
        crops = []
        for path, offset in zip(meta["files"], meta["offsets"]):
            source = sf.read(path, dtype="float32")[0]
            crops.append(np.pad(source[offset : offset + RATE], (0, max(0, offset + RATE - len(source)))))
        assert 1 <= meta["Speakers"] <= 3
        np.testing.assert_allclose(audio, np.mean(crops, axis=0), atol=1e-4)


def test_fresh_epochs_differ_and_fixed_sets_do_not(tiny):
    splits = load_splits(tiny)
    train = MixtureDataset(splits, "train", length=8, seed=3, fresh=True)
    first = [train[i]["audio"] for i in range(8)]
    train.set_epoch(1)
    assert not any(torch.equal(a, train[i]["audio"]) for i, a in enumerate(first))
    train.set_epoch(0)
    assert all(torch.equal(a, train[i]["audio"]) for i, a in enumerate(first))
    val = MixtureDataset(splits, "validation", length=8, seed=3, fresh=False)
    before = [val[i]["audio"] for i in range(8)]
    val.set_epoch(5)
    assert all(torch.equal(a, val[i]["audio"]) for i, a in enumerate(before))


def test_dataloader_workers_give_the_same_examples(tiny):
    ds = MixtureDataset(load_splits(tiny), "train", length=24, seed=7)
    loader = torch.utils.data.DataLoader(ds, batch_size=8, num_workers=2)
    batches = list(loader)
    audio = torch.cat([b["audio"] for b in batches])
    assert audio.shape == (24, 16000) and audio.dtype == torch.float32
    assert torch.equal(audio, torch.stack([ds[i]["audio"] for i in range(24)]))
    assert torch.cat([b["count"] for b in batches]).tolist() == [ds.count_of(i) for i in range(24)]


def test_preload_decodes_every_recording_the_split_draws_from(tiny):
    ds = MixtureDataset(load_splits(tiny), "train", length=8, seed=3)
    before = [ds[i]["audio"] for i in range(8)]
    held = ds.mixer.preload()
    wanted = {(f, True) for spk in ds.mixer.speakers for f in spk.files()}
    wanted |= {(n.path, False) for group in ds.mixer.noise for n in group}
    assert wanted <= set(ds.mixer.cache._clips) and held == len(ds.mixer.cache)
    assert all(torch.equal(a, ds[i]["audio"]) for i, a in enumerate(before))  # preloading changes no example


def _folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_dataset_make_format_reproducible_refuses_and_resumes(tiny, tmp_path):
    sizes = {"train": 12, "validation": 4, "test": 4}
    make_dataset(tmp_path / "a", tiny, sizes)
    make_dataset(tmp_path / "b", tiny, sizes)
    a = _folder_bytes(tmp_path / "a")
    assert a == _folder_bytes(tmp_path / "b")
    for split, n in sizes.items():
        name = FILE_NAMES[split]
        assert {f"Audio_{name}{k}.wav" for k in range(n)} <= set(a)
        with open(tmp_path / "a" / f"{name}.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        assert len(rows) == n and list(rows[0])[:4] == ["Speakers", "Speakers Sex", "F", "M"]
        audio, rate = sf.read(tmp_path / "a" / f"Audio_{name}{n - 1}.wav", dtype="float32")
        assert rate == RATE and audio.shape == (RATE,) and sf.info(tmp_path / "a" / f"Audio_{name}0.wav").subtype == "PCM_16"
        # the last row names how to rebuild its file from the Dataset
        assert (rows[-1]["split"], rows[-1]["index"], rows[-1]["seed"]) == (split, str(n - 1), str(tiny.seed))
        again = MixtureDataset(load_splits(tiny), split, length=n, seed=tiny.seed, fresh=False).example(n - 1)
        np.testing.assert_allclose(audio, again[0], atol=1e-4)
        assert again[1]["Speakers Sex"] == rows[-1]["Speakers Sex"]
    # interrupted: a row cut in half, its file and a later one missing -> resume gives the same bytes
    table = tmp_path / "b" / "Train.csv"
    lines = table.read_bytes().splitlines(keepends=True)
    table.write_bytes(b"".join(lines[:6]) + lines[6][:10])
    for k in (5, 9):
        (tmp_path / "b" / f"Audio_Train{k}.wav").unlink()
    make_dataset(tmp_path / "b", tiny, sizes)
    assert _folder_bytes(tmp_path / "b") == a
    with pytest.raises(DataError, match="different dataset"):
        make_dataset(tmp_path / "a", tiny, {**sizes, "train": 13})
    with pytest.raises(DataError, match="different dataset"):
        make_dataset(tmp_path / "a", dataclasses.replace(tiny, seed=1), sizes)
    other = tmp_path / "c"
    other.mkdir()
    (other / "keep.txt").write_text("not a dataset")
    with pytest.raises(DataError, match="not an empty folder"):
        make_dataset(other, tiny, sizes)


def test_cli_dataset_make_refuses_with_one_line(tiny, tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text(f"data:\n  corpora: [/nonexistent]\n  noise: [{tiny.noise[0]}]\n  rir_rooms: 4\n  recipe: seed\n")
    out = tmp_path / "ds"
    args = ["--config", str(config), "dataset", "make", "--corpus", tiny.corpora[0], "--out", str(out)]
    args += ["--train", "3", "--val", "2", "--test", "2"]
    assert main(args) == 0
    assert {p.name for p in out.iterdir()} >= {"Audio_Train2.wav", "Audio_Validation1.wav", "Audio_Test1.wav", "Test.csv"}
    assert json.loads((out / "dataset.json").read_text())["recipe"] == "paper"  # its old name, still accepted
    assert "data.recipe 'seed' is now called 'paper'" in capsys.readouterr().err
    config.write_text(config.read_text().replace("recipe: seed", "recipe: paper"))  # same dataset, its new name
    assert main(args[:-6] + ["--train", "4", "--val", "2", "--test", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("occupancy: error:") and "different dataset" in err and "\n" not in err
    wrong = ["--config", str(config), "dataset", "make", "--out", str(tmp_path / "new"), "--train", "1"]
    assert main(wrong) == 2 and "/nonexistent: corpus folder not found" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()  # a failed start leaves no half-claimed folder behind


@pytest.fixture(scope="module")
def real_config(shared_data) -> DataConfig:
    """The project's real corpora and noise, with a four-room reverb bank to stay fast."""
    return DataConfig(
        corpora=[str(shared_data / "librispeech-mini"), str(shared_data / "speechocean762-train")],
        noise=[str(shared_data / "noise")],
        rir_rooms=4,
    )


@pytest.fixture(scope="module")
def vad():
    """Speech probability per 32-ms chunk from Silero VAD: a judge independent of the energy check."""
    silero_vad = pytest.importorskip("silero_vad")
    model = silero_vad.load_silero_vad()

    def speech_share(audio: np.ndarray) -> float:
        model.reset_states()
        probs = model.audio_forward(torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)), RATE)
        return float((probs > 0.5).float().mean())

    return speech_share


def test_real_labels_are_true(real_config, vad):
    """Each voice's own crop, rebuilt from the metadata, is speech; empty-room windows are not."""
    ds = MixtureDataset(load_splits(real_config), "validation", length=120, fresh=False)
    voiced, empty = [], []
    for i in range(len(ds)):
        audio, meta = ds.example(i)
        assert np.isfinite(audio).all() and np.max(np.abs(audio)) <= 0.99
        assert -66 < 20 * np.log10(np.sqrt(np.mean(audio.astype(np.float64) ** 2))) < -11
        if meta["Speakers"] == 0:
            empty.append(vad(audio / np.max(np.abs(audio))))
            assert "speech_commands/dude_miaowing" not in meta["noise_file"]
        for path, offset in zip(meta["files"], meta["offsets"]):
            source = sf.read(path, dtype="float32")[0]
            assert offset + RATE <= len(source)
            voiced.append(vad(source[offset : offset + RATE]))
    assert np.mean(np.array(voiced) >= 0.5) > 0.95, sorted(voiced)[:10]
    assert np.mean(empty) < 0.1, sorted(empty)[-5:]


def test_room_bank_is_the_same_on_every_build():
    """The ray-traced tails come from seeded generators: two builds of the bank are identical, so the room
    test sets (which draw from it) read the same on every machine."""
    from occupancy.lab.data.rooms import simulate_bank

    first, second = simulate_bank(1, seed=3), simulate_bank(1, seed=3)
    assert np.array_equal(first.rirs, second.rirs)
    assert not np.array_equal(first.rirs, simulate_bank(1, seed=4).rirs)


def test_table_rooms_hear_seated_talkers_near_the_microphone_and_join_the_training_bank(tmp_path, monkeypatch):
    """The "table" layout (a meeting's microphone on the table): every talker's direct sound arrives
    within 2.1 m of travel (2 m across the floor, the rest in height; pyroomacoustics delays every
    response by 40 samples) and carries more of the response's energy than where talkers stand anywhere.
    Training joins those rooms after the test sets' rooms, whose numbers stay."""
    from occupancy.lab.data.rooms import TABLE_SEED, rir_bank, simulate_bank, training_bank

    def direct_share(bank):
        peaks = np.argmax(np.abs(bank.rirs), axis=2)
        near = [np.sum(h[max(p - 40, 0):p + 40] ** 2) for room, ps in zip(bank.rirs, peaks) for h, p in zip(room, ps)]
        return peaks, float(np.median(near))  # each response has unit energy

    table, anywhere = simulate_bank(3, seed=TABLE_SEED, layout="table"), simulate_bank(3, seed=TABLE_SEED)
    peaks, table_share = direct_share(table)
    assert peaks.max() <= 40 + 16000 * 2.1 / 343 and table.rt60.max() <= 0.8
    assert table_share > direct_share(anywhere)[1]
    with pytest.raises(ValueError, match="layout"):
        simulate_bank(1, seed=0, layout="stage")

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    joined = training_bank(2, table_rooms=1)
    assert joined.rooms == 3 and np.array_equal(joined.rirs[:2], rir_bank(2).rirs)
    assert np.array_equal(joined.rirs[2:], rir_bank(1, TABLE_SEED, "table").rirs)
    assert training_bank(2).rooms == 2


def test_a_microphone_share_colours_windows_without_changing_the_mixture(tiny):
    splits = load_splits(tiny)
    plain = MixtureDataset(splits, "validation", length=24, seed=5, fresh=False)
    coloured = MixtureDataset(splits, "validation", length=24, seed=5, fresh=False, mic_colour_share=1.0)
    unset = MixtureDataset(splits, "validation", length=24, seed=5, fresh=False, mic_colour_share=0.0)
    shapes = []
    for i in range(24):
        (a, meta_a), (b, meta_b) = plain.example(i), coloured.example(i)
        assert meta_b["microphone"] == "random" and meta_a["microphone"] == ""
        # the same voices, rooms and noise, the same level, a different spectrum
        assert {k: v for k, v in meta_a.items() if k != "microphone"} == {k: v for k, v in meta_b.items() if k != "microphone"}
        assert abs(np.sqrt(np.mean(a**2)) - np.sqrt(np.mean(b**2))) <= 0.02 * np.sqrt(np.mean(a**2)) + 1e-7
        spectra = [np.abs(np.fft.rfft(x)) ** 2 + 1e-12 for x in (a, b)]
        bands = [np.log10([s[lo:hi].sum() for lo, hi in ((50, 300), (300, 3000), (3000, 8000))]) for s in spectra]
        shapes.append(np.max(np.abs(bands[1] - bands[0])))
        assert np.array_equal(a, unset.example(i)[0])  # no share: no draw, the examples they always were
    assert np.median(shapes) > 0.1  # a tenth of a decade (1 dB) in some band: every microphone sounds different
    with pytest.raises(DataError, match="microphone colour share"):
        MixtureDataset(splits, "validation", length=4, mic_colour_share=1.5)
