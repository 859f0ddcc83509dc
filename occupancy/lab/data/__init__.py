"""Training data: corpus indexes, speaker-disjoint splits, mixture recipes, the Dataset and its export."""

from .corpus import DataError
from .dataset import MixtureDataset
from .splits import Splits, load_splits

__all__ = ["DataError", "MixtureDataset", "Splits", "load_splits"]
