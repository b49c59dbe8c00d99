"""What every data source shares: the dataset record, the raw split a builder or reader returns,
the error type, argument checks, subsampling, the train/test split and standardization."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

TASKS = ("classification", "regression")


class DatasetError(ValueError):
    """A dataset that cannot be built or read; the message names the source and the problem."""


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """A train/test pair ready for training, with a record of how it was made in `meta`."""

    name: str
    task: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_features: int
    n_outputs: int
    meta: dict = field(default_factory=dict)

    def __repr__(self):
        return (f"Dataset({self.name!r}, {self.task}, train {self.x_train.shape}, "
                f"test {self.x_test.shape}, n_outputs={self.n_outputs})")


class RawData(NamedTuple):
    """What a builder or file reader hands back: split arrays before labels and scaling are fixed."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    task: str
    meta: dict


# ---------------------------------------------------------------- shared helpers


def check_int(source, name, value, minimum):
    """`value` as an int >= minimum, or a DatasetError naming the source and the argument."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise DatasetError(f"{source}: {name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_float(source, name, value, minimum, inclusive=True):
    """`value` as a finite float above `minimum` (or equal to it when inclusive)."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    ok = ok and np.isfinite(value) and (value >= minimum if inclusive else value > minimum)
    if not ok:
        bound = ">=" if inclusive else ">"
        raise DatasetError(f"{source}: {name} must be a finite number {bound} {minimum}, got {value!r}")
    return float(value)


def subsample(source, x, y, n_samples, rng):
    """A seeded random subset of n_samples rows (all rows when n_samples is None)."""
    if n_samples is None:
        return x, y
    if n_samples > len(y):
        raise DatasetError(f"{source}: n_samples={n_samples} but only {len(y)} samples are available")
    keep = rng.permutation(len(y))[:n_samples]
    return x[keep], y[keep]


def split_train_test(x, y, test_fraction, rng, stratify):
    """Shuffle and split; with stratify each class gives round(test_fraction * count) to the test set."""
    groups = [np.flatnonzero(y == c) for c in np.unique(y)] if stratify else [np.arange(len(y))]
    train_parts, test_parts = [], []
    for members in groups:
        members = rng.permutation(members)
        n_test = int(round(test_fraction * len(members)))
        if not stratify and len(members) >= 2:
            n_test = min(max(n_test, 1), len(members) - 1)
        test_parts.append(members[:n_test])
        train_parts.append(members[n_test:])
    train = rng.permutation(np.concatenate(train_parts))
    test = rng.permutation(np.concatenate(test_parts))
    return x[train], y[train], x[test], y[test]


def standardize_features(x_train, x_test):
    """z-score both splits with the train mean and std; features constant on train become 0 there."""
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    constant = std <= 1e-12 * np.maximum(1.0, np.abs(mean))
    scale = np.where(constant, 1.0, std)
    x_train = (x_train - mean) / scale
    x_train[:, constant] = 0.0
    return x_train, (x_test - mean) / scale, int(constant.sum())
