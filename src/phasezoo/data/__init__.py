"""Datasets as whole in-memory tensors, plus batched seeded augmentation.

``load_dataset(name, data_dir)`` returns a :class:`VisionData` (both splits, normalised with
train statistics); ``DATASETS`` describes each dataset without loading it; ``BatchAugment``
and ``iterate_batches`` turn the tensors into augmented mini-batches reproducibly.
"""

from .augment import BatchAugment, iterate_batches
from .registry import DATASETS, DatasetInfo, load_dataset, resolve_data_dir
from .vision import VisionData

__all__ = [
    "DATASETS",
    "BatchAugment",
    "DatasetInfo",
    "VisionData",
    "iterate_batches",
    "load_dataset",
    "resolve_data_dir",
]
