"""Speaker-disjoint train/validation/test splits, balanced by sex, deterministic from a seed.

Balance is kept per corpus and per sex, so every split holds the same mix of corpora, women and men;
no speaker's voice is ever heard in two splits, so validation measures generalisation to new voices.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ...config import DataConfig
from .corpus import DataError, NoiseFile, Speaker, read_corpus, read_noise, read_voices

SPLITS = ("train", "validation", "test")
FRACTIONS = {"validation": 0.1, "test": 0.1}  # train takes the rest
NOISE_TEST_FRACTION = 0.25  # of each noise folder's files, never mixed into training or validation
VOICES_FRACTIONS = {"validation": 0.1, "test": 0.25}  # of each real-voices folder's files (data.voices)


@dataclass
class Splits:
    """Speakers per split plus the noise recordings; `config` carries the cache size and corpora.

    The noise files are split too: the test split's backgrounds and empty rooms are recordings
    that training never heard, so "nobody speaks" is measured on sound the network has not learned.
    """

    config: DataConfig
    speakers: dict[str, list[Speaker]]
    noise: list[NoiseFile] = field(default_factory=list)
    test_noise: list[NoiseFile] = field(default_factory=list)
    voices: dict[str, list[Speaker]] = field(default_factory=lambda: {name: [] for name in SPLITS})

    def by_sex(self, split: str, sex: str) -> list[Speaker]:
        return [s for s in self.speakers[split] if s.sex == sex]

    def noise_of(self, split: str) -> list[NoiseFile]:
        """The noise recordings a split mixes with: the held-out files for test, the rest otherwise."""
        return self.test_noise if split == "test" else self.noise

    def manifest(self) -> dict:
        """Everything needed to reproduce the splits, as JSON-ready data."""
        return {
            "seed": self.config.seed,
            "corpora": list(self.config.corpora),
            "splits": {name: [asdict(s) for s in spk] for name, spk in self.speakers.items()},
            "noise": [asdict(n) for n in self.noise],
            "test_noise": [asdict(n) for n in self.test_noise],
            "voices": {name: [v.id for v in group] for name, group in self.voices.items()},
        }

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.manifest(), indent=1) + "\n", encoding="utf-8")


def split_speakers(speakers: list[Speaker], seed: int) -> dict[str, list[Speaker]]:
    """Shuffle each (corpus, sex) group with the seed and deal it out in the split fractions."""
    out: dict[str, list[Speaker]] = {name: [] for name in SPLITS}
    groups: dict[tuple[str, str], list[Speaker]] = {}
    for spk in sorted(speakers, key=lambda s: s.id):
        groups.setdefault((spk.id.rsplit("/", 1)[0], spk.sex), []).append(spk)
    rng = np.random.default_rng(seed)
    for key in sorted(groups):
        group = [groups[key][i] for i in rng.permutation(len(groups[key]))]
        n_val = round(len(group) * FRACTIONS["validation"])
        n_test = round(len(group) * FRACTIONS["test"])
        out["validation"] += group[:n_val]
        out["test"] += group[n_val : n_val + n_test]
        out["train"] += group[n_val + n_test :]
    return out


def split_noise(noise: list[NoiseFile], seed: int) -> tuple[list[NoiseFile], list[NoiseFile]]:
    """(training, held-out) noise: a quarter of each folder's empty-room files and of its other files,
    at least one of each kind where a folder has two or more, chosen by the seed."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    groups: dict[tuple[str, bool], list[NoiseFile]] = {}
    for n in sorted(noise, key=lambda n: n.path):
        groups.setdefault((str(Path(n.path).parent), n.empty_room), []).append(n)
    for key in sorted(groups):
        group = [groups[key][i] for i in rng.permutation(len(groups[key]))]
        n_test = max(1, round(len(group) * NOISE_TEST_FRACTION)) if len(group) >= 2 else 0
        test += group[:n_test]
        train += group[n_test:]
    return train, test


def split_voices(voices: list[Speaker], seed: int) -> dict[str, list[Speaker]]:
    """Real single voices dealt out by file, folder by folder, in VOICES_FRACTIONS. Their speakers are
    unknown, so one person may be heard in two splits: the held-out files are new recordings and
    microphones, not surely new people."""
    out: dict[str, list[Speaker]] = {name: [] for name in SPLITS}
    groups: dict[str, list[Speaker]] = {}
    for voice in sorted(voices, key=lambda v: v.id):
        groups.setdefault(voice.folder, []).append(voice)
    rng = np.random.default_rng(seed)
    for key in sorted(groups):
        group = [groups[key][i] for i in rng.permutation(len(groups[key]))]
        n_val, n_test = (round(len(group) * VOICES_FRACTIONS[name]) for name in ("validation", "test"))
        out["validation"] += group[:n_val]
        out["test"] += group[n_val:n_val + n_test]
        out["train"] += group[n_val + n_test:]
    return out


def load_splits(config: DataConfig) -> Splits:
    """Index the configured corpora and noise folders (lazily) and split their speakers."""
    if not config.corpora:
        raise DataError("no speech corpora configured (data.corpora is empty)")
    speakers = [spk for root in config.corpora for spk in read_corpus(root)]
    ids = [s.id for s in speakers]
    if len(set(ids)) != len(ids):
        raise DataError("two corpora share a folder name, so speaker ids collide: rename one folder")
    splits = Splits(config, split_speakers(speakers, config.seed), *split_noise(read_noise(list(config.noise)), config.seed),
                    split_voices(read_voices(list(config.voices)), config.seed))
    for name, group in splits.speakers.items():
        if not {s.sex for s in group} >= {"F", "M"}:
            raise DataError(f"too few speakers: the {name} split needs at least one woman and one man")
    for name, noise in (("training", splits.noise), ("held-out", splits.test_noise)):
        if not any(n.empty_room for n in noise):
            raise DataError(f"{', '.join(config.noise)}: too few empty-room recordings to keep some for the "
                            f"test split (no {name} one)")
    return splits
