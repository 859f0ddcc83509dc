"""On-the-fly mixtures as a torch Dataset: fresh every epoch for training, fixed by seed for evaluation.

Example i is a pure function of (seed, split, epoch, i): workers, caches and the order of access
never change it, so DataLoader workers need no coordination and `dataset make` writes the same bytes.
"""

from __future__ import annotations

import numpy as np
import torch

from .corpus import DataError
from .microphone import colour
from .mixing import RECIPES, SNR_DB, Mixer
from .scenes import scene_example
from .rooms import training_bank
from .splits import SPLITS, Splits


class MixtureDataset(torch.utils.data.Dataset):
    """Items are {"audio": FloatTensor[16000], "count", "females", "males"}; see `metadata(i)` for the rest."""

    def __init__(
        self,
        splits: Splits,
        split: str = "train",
        recipe: str = "realistic",
        length: int = 20000,
        seed: int = 0,
        fresh: bool = True,
        reverb_share: float = 0.5,
        max_speakers: int = 3,
        real_voice_share: float = 0.0,
        snr_db: tuple[float, float] = SNR_DB,
        pause_tone_share: float = 0.0,
        mic_colour_share: float = 0.0,
        table_rooms: int = 0,
    ):
        if split not in SPLITS:
            raise DataError(f"unknown split {split!r} (choose {', '.join(SPLITS)})")
        if recipe not in RECIPES:
            raise DataError(f"unknown recipe {recipe!r} (choose {', '.join(RECIPES)})")
        for name, share in (("reverb", reverb_share), ("microphone colour", mic_colour_share)):
            if not 0.0 <= share <= 1.0:
                raise DataError(f"{name} share must be between 0 and 1, got {share}")
        if max_speakers < 1 or length < 0 or table_rooms < 0:
            raise DataError("max_speakers must be >= 1, length and table_rooms >= 0")
        self.split, self.recipe, self.length = split, recipe, length
        self.seed, self.fresh, self.max_speakers = seed, fresh, max_speakers
        self.epoch = 0
        self.mic_colour_share = mic_colour_share
        self.mixer = Mixer(splits, split, max_speakers, reverb_share, real_voice_share, snr_db, pause_tone_share)
        if recipe in ("realistic", "scenes") and reverb_share > 0:
            # Loaded here, before DataLoader workers fork, so they share one copy.
            self.mixer.bank = training_bank(splits.config.rir_rooms, table_rooms)

    def __len__(self) -> int:
        return self.length

    def set_epoch(self, epoch: int) -> None:
        """New mixtures for a new epoch (fresh=True).

        Call it before creating the epoch's DataLoader iterator: workers copy the dataset when they
        start, so with persistent_workers=True they would keep the old epoch.
        """
        self.epoch = epoch

    def count_of(self, index: int) -> int:
        """Counts cycle with the index, so any run of consecutive examples is balanced over counts."""
        shift = self.epoch if self.fresh else 0
        if self.recipe == "paper":
            return 1 + (index + shift) % self.max_speakers
        return (index + shift) % (self.max_speakers + 1)

    def example(self, index: int) -> tuple[np.ndarray, dict]:
        """The audio (float32[16000]) and full metadata of example `index`."""
        if not 0 <= index < self.length:
            raise IndexError(f"example {index} out of range 0..{self.length - 1}")
        epoch = self.epoch if self.fresh else 0
        rng = np.random.default_rng([self.seed, SPLITS.index(self.split), epoch, index])
        if self.recipe == "scenes":
            audio, meta = scene_example(self.mixer, rng, self.count_of(index))
        else:
            audio, meta = self.mixer.make(self.recipe, rng, self.count_of(index))
        # drawn last, and only with a share: the mixture itself is what it always was
        coloured = self.mic_colour_share > 0 and rng.random() < self.mic_colour_share
        if coloured:
            audio = colour(audio, rng)
        meta.update(microphone="random" if coloured else "")
        meta.update(split=self.split, index=index, seed=self.seed, epoch=epoch)
        return audio, meta

    def metadata(self, index: int) -> dict:
        return self.example(index)[1]

    def __getitem__(self, index: int) -> dict:
        """The example as tensors, its counts capped at max_speakers (the top class is "that many or
        more": a scene's second may hold more talkers than the classes name)."""
        audio, meta = self.example(index)
        top = self.max_speakers
        return {"audio": torch.from_numpy(audio), "count": min(meta["Speakers"], top),
                "females": min(meta["F"], top), "males": min(meta["M"], top)}
