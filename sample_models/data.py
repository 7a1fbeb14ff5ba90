"""scikit-learn's bundled 8x8 handwritten digits, split once and for all (nothing is downloaded).

1797 grey-level images of the digits 0-9, pixel values 0..16, scaled here to [0, 1].
Split: a stratified 70/30 train/test split (`train_test_split(test_size=0.3, stratify=y, random_state=0)`);
calibration is the first 256 rows of train.
"""
from __future__ import annotations

from functools import lru_cache

import torch

from compressor.data import DataSplits, Split

TEST_FRACTION = 0.3
SPLIT_SEED = 0
CALIBRATION_SIZE = 256
IMAGE_SHAPE = (1, 8, 8)  # (C, H, W)


@lru_cache(maxsize=1)
def _digits_vectors() -> DataSplits:
    """The splits with each image flattened to 64 features in [0, 1]; loaded once per process."""
    from sklearn.datasets import load_digits  # imported here: it takes a second, and catalog() should not wait
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    X_train, X_test, y_train, y_test = train_test_split(
        digits.data, digits.target, test_size=TEST_FRACTION, stratify=digits.target, random_state=SPLIT_SEED
    )
    train = _to_split(X_train, y_train)  # X (N, 64) float32, y (N,) int64
    test = _to_split(X_test, y_test)
    calibration = Split(train.X[:CALIBRATION_SIZE], train.y[:CALIBRATION_SIZE])
    return DataSplits(train=train, calibration=calibration, test=test)


def _to_split(X, y) -> Split:
    return Split(torch.as_tensor(X / 16.0, dtype=torch.float32), torch.as_tensor(y, dtype=torch.int64))


def _as_images(split: Split) -> Split:
    return Split(split.X.view(-1, *IMAGE_SHAPE), split.y)  # (N, 64) -> (N, 1, 8, 8), shares memory


@lru_cache(maxsize=1)
def _digits_images() -> DataSplits:
    vectors = _digits_vectors()
    return DataSplits(*(_as_images(split) for split in (vectors.train, vectors.calibration, vectors.test)))


def digits_splits(images: bool = False) -> DataSplits:
    """Train/calibration/test splits of the digits: inputs (N, 64) vectors, or (N, 1, 8, 8) images if `images`.

    The tensors are cached and shared between callers: read them, do not modify them in place.
    """
    return _digits_images() if images else _digits_vectors()
