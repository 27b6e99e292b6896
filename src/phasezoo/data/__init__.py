"""Datasets as whole in-memory tensors, plus batched seeded augmentation.

``load_dataset(name, data_dir)`` returns a :class:`VisionData` (both splits, normalised with
train statistics); ``DATASETS`` describes each dataset without loading it; ``BatchAugment``
and ``iterate_batches`` turn the tensors into augmented mini-batches reproducibly;
``fixed_subset`` and ``eval_split`` pick the samples every model of a zoo is measured on.
"""

from .augment import BatchAugment
from .batches import eval_split, fixed_indices, fixed_subset, iterate_batches, steps_per_epoch, train_batches
from .base import resolve_data_dir
from .registry import DATASETS, DatasetInfo, load_dataset
from .vision import VisionData

__all__ = [
    "DATASETS",
    "BatchAugment",
    "DatasetInfo",
    "VisionData",
    "eval_split",
    "fixed_indices",
    "fixed_subset",
    "iterate_batches",
    "steps_per_epoch",
    "train_batches",
    "load_dataset",
    "resolve_data_dir",
]
