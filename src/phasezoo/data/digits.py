"""scikit-learn's ``digits``: 1797 real 8x8 handwritten digits, bundled with scikit-learn.

It needs no files and no network, which makes it the dataset for fast zoos and for tests.
"""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits as _sk_load_digits
from sklearn.model_selection import train_test_split

from .vision import VisionData, from_arrays


def load_digits() -> VisionData:
    """The digits as one-channel 8x8 images, split 80/20 stratified: 1437 train / 360 test.

    Pixel values are integers 0..16 in the source, divided by 16 to give [0, 1] before the
    usual per-channel standardisation. The split is fixed
    (``train_test_split(test_size=0.2, stratify=y, random_state=0)``), so every zoo member and
    every run sees the same train/test images; stratification keeps ~36 test images per class.
    """
    bunch = _sk_load_digits()
    x = (bunch.data.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    y = bunch.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, stratify=y, random_state=0)
    return from_arrays("digits", x_tr, y_tr, x_te, y_te, num_classes=10)
