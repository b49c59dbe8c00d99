"""Datasets for the study runner: bundled, generated and user files, split and standardized.

    ds = load_dataset("digits", seed=0)      # a name from DATASETS, or a path (see studies.data.files)
    ds.x_train, ds.y_train, ds.x_test, ds.y_test, ds.task, ds.n_features, ds.n_outputs, ds.meta

Features are float64 (n, d), C-contiguous and read-only; labels are int64 (n,) in 0..K-1 for
classification, targets float64 (n, k) for regression. Features are z-scored with train statistics.
"mnist1d" keeps the package's own split (first 80%) and generator seed 42 whatever `seed` is; pass
the option generator_seed=... for another draw. Its draws are cached on disk (data_cache_dir:
$GRADLAB_DATA_CACHE, default ~/.cache/gradlab/data; the same arrays, without importing and running
the generator in every process).
"""

from __future__ import annotations

import difflib
import functools
import gzip
import importlib.util
import inspect
import os
import random
import tempfile
import warnings
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Callable

import numpy as np

from studies.data.base import (TASKS, Dataset, DatasetError, RawData, check_float,  # noqa: F401
                                check_int, split_train_test, standardize_features, subsample)
from studies.data.files import reader_for

FILE_SUFFIXES = (".npz", ".csv", ".gz", "ubyte", ".idx")
COMMON_ARGUMENTS = ("seed", "test_fraction", "n_samples")
CACHE_ENV = "GRADLAB_DATA_CACHE"


# ---------------------------------------------------------------- builders


def digits_arrays():
    """(pixels (1797, 64) float64, labels (1797,) int) of scikit-learn's bundled digits, read
    from the package's own data file as `sklearn.datasets.load_digits` reads it, without
    importing scikit-learn (about 2 s of every worker's start)."""
    found = importlib.util.find_spec("sklearn")
    if found is None or not found.submodule_search_locations:
        raise DatasetError("digits: the scikit-learn package (which bundles the data) is not "
                           "installed")
    path = Path(found.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"
    with gzip.open(path, mode="rt", encoding="utf-8") as handle:
        data = np.loadtxt(handle, delimiter=",")
    return data[:, :-1], data[:, -1].astype(int, copy=False)


def _build_digits(seed, test_fraction, n_samples):
    """scikit-learn's bundled 8x8 digits (1,797 images, pixels/16), seeded stratified split."""
    pixels, labels = digits_arrays()
    rng = np.random.default_rng(seed)
    x, y = subsample("digits", pixels / 16.0, labels, n_samples, rng)
    meta = {"source": "sklearn.datasets.load_digits", "pixel_scale": "x / 16",
            "split": "random stratified (test_fraction, seed)"}
    return RawData(*split_train_test(x, y, test_fraction, rng, stratify=True), "classification", meta)


def _build_mnist1d(seed, test_fraction, n_samples, *, generator_seed=42):
    """MNIST-1D from its own generator at default arguments; the package's split; generator seed 42."""
    num_samples = 5000 if n_samples is None else n_samples
    if num_samples < 10:
        raise DatasetError(f"mnist1d: n_samples must be at least 10 (one per digit), got {num_samples}")
    generator_seed = check_int("mnist1d", "generator_seed", generator_seed, 0)
    x_train, y_train, x_test, y_test = _generate_mnist1d(num_samples, generator_seed)
    meta = {"source": f"mnist1d {_mnist1d_version()} make_dataset(get_dataset_args())",
            "num_samples": num_samples, "generator_seed": generator_seed, "train_split": 0.8,
            "split": "fixed by the package (first 80% of its shuffled samples); seed unused"}
    return RawData(x_train, y_train, x_test, y_test, "classification", meta)


def _build_teacher_student(seed, test_fraction, n_samples, *, n_features=20, n_outputs=1,
                           teacher_width=32, noise=0.1, teacher_seed=None):
    """Regression y = tanh(x W1 + b1) W2 + noise * N(0, 1), x ~ N(0, I), a random teacher."""
    name = "teacher_student"
    n = check_int(name, "n_samples", 2000 if n_samples is None else n_samples, 2)
    n_features = check_int(name, "n_features", n_features, 1)
    n_outputs = check_int(name, "n_outputs", n_outputs, 1)
    width = check_int(name, "teacher_width", teacher_width, 1)
    noise = check_float(name, "noise", noise, 0.0)
    teacher_seed = seed if teacher_seed is None else check_int(name, "teacher_seed", teacher_seed, 0)
    teacher = np.random.default_rng(np.random.SeedSequence(teacher_seed, spawn_key=(1,)))
    w1 = teacher.normal(0.0, 1.0 / np.sqrt(n_features), (n_features, width))
    b1 = teacher.normal(0.0, 0.1, width)
    w2 = teacher.normal(0.0, 1.0 / np.sqrt(width), (width, n_outputs))
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0,)))
    x = rng.normal(size=(n, n_features))
    y = np.tanh(x @ w1 + b1) @ w2 + noise * rng.normal(size=(n, n_outputs))
    meta = {"source": "generated: tanh teacher MLP, W ~ N(0, 1/fan_in), b1 ~ N(0, 0.1^2)",
            "teacher_seed": teacher_seed, "split": "random (test_fraction, seed)"}
    return RawData(*split_train_test(x, y, test_fraction, rng, stratify=False), "regression", meta)


def _build_spirals(seed, test_fraction, n_samples, *, noise=0.1, turns=1.5):
    """Two interleaved spirals (2 classes, 2 features); outer radius 1, noise in those units."""
    n = check_int("spirals", "n_samples", 1000 if n_samples is None else n_samples, 4)
    noise = check_float("spirals", "noise", noise, 0.0)
    turns = check_float("spirals", "turns", turns, 0.0, inclusive=False)
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    radius = np.sqrt(rng.uniform(size=n))
    angle = 2.0 * np.pi * turns * radius + np.pi * y
    x = np.column_stack([radius * np.cos(angle), radius * np.sin(angle)])
    x += noise * rng.normal(size=x.shape)
    meta = {"source": "generated: Archimedean spirals, second rotated by pi",
            "split": "random stratified (test_fraction, seed)"}
    return RawData(*split_train_test(x, y, test_fraction, rng, stratify=True), "classification", meta)


def _build_blobs(seed, test_fraction, n_samples, *, n_classes=3, n_features=2, cluster_std=1.0):
    """Isotropic Gaussian blobs, one per class, centers uniform in [-10, 10]^n_features."""
    n_classes = check_int("blobs", "n_classes", n_classes, 2)
    n = check_int("blobs", "n_samples", 1000 if n_samples is None else n_samples, 2 * n_classes)
    n_features = check_int("blobs", "n_features", n_features, 1)
    cluster_std = check_float("blobs", "cluster_std", cluster_std, 0.0, inclusive=False)
    rng = np.random.default_rng(seed)
    centers = rng.uniform(-10.0, 10.0, (n_classes, n_features))
    y = np.arange(n) % n_classes
    x = centers[y] + cluster_std * rng.normal(size=(n, n_features))
    meta = {"source": "generated: Gaussian blobs", "split": "random stratified (test_fraction, seed)"}
    return RawData(*split_train_test(x, y, test_fraction, rng, stratify=True), "classification", meta)


DATASETS: dict[str, tuple[Callable[..., RawData], str]] = {
    "digits": (_build_digits, "scikit-learn 8x8 handwritten digits: 1,797 x 64, 10 classes"),
    "mnist1d": (_build_mnist1d, "MNIST-1D (procedural): 4,000 + 1,000 x 40, 10 classes"),
    "teacher_student": (_build_teacher_student, "regression from a random tanh teacher MLP"),
    "spirals": (_build_spirals, "two interleaved spirals: 2 features, 2 classes"),
    "blobs": (_build_blobs, "Gaussian blobs: n_features, n_classes"),
}


# ---------------------------------------------------------------- MNIST-1D generation and cache


def _mnist1d_version():
    try:
        return metadata.version("mnist1d")
    except metadata.PackageNotFoundError:
        return "unknown"


@functools.lru_cache(maxsize=4)
def _generate_mnist1d(num_samples, generator_seed):
    """(x, y, x_test, y_test) from mnist1d.data.make_dataset, cached per process and on disk."""
    cache_file = _mnist1d_cache_file(num_samples, generator_seed)
    arrays = _read_cache(cache_file) if cache_file is not None else None
    if arrays is None:
        arrays = _run_mnist1d_generator(num_samples, generator_seed)
        if cache_file is not None:
            _write_cache(cache_file, arrays)
    for array in arrays:
        array.flags.writeable = False
    return arrays


def _run_mnist1d_generator(num_samples, generator_seed):
    """Call the package generator; it seeds NumPy's global RNG, so the caller's state is restored."""
    import mnist1d.data

    args = mnist1d.data.get_dataset_args()
    args.num_samples, args.seed = num_samples, generator_seed
    numpy_state, python_state = np.random.get_state(), random.getstate()
    try:
        data = mnist1d.data.make_dataset(args)
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)
    return tuple(np.asarray(data[key]) for key in ("x", "y", "x_test", "y_test"))


def data_cache_dir():
    """Where generated datasets are cached on disk: $GRADLAB_DATA_CACHE, by default
    ~/.cache/gradlab/data (beside the kernel cache); None when the variable is set empty
    ('' turns the cache off)."""
    cache_dir = os.environ.get(CACHE_ENV)
    if cache_dir is None:
        return Path.home() / ".cache" / "gradlab" / "data"
    return Path(cache_dir) if cache_dir else None


def _mnist1d_cache_file(num_samples, generator_seed):
    cache_dir = data_cache_dir()
    if cache_dir is None:
        return None
    name = f"mnist1d-{_mnist1d_version()}-n{num_samples}-seed{generator_seed}.npz"
    return Path(cache_dir) / name


def _read_cache(cache_file):
    try:
        with np.load(cache_file, allow_pickle=False) as archive:
            return tuple(archive[key] for key in ("x", "y", "x_test", "y_test"))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None  # absent or damaged: regenerate


def _write_cache(cache_file, arrays):
    """Write to a temporary name and rename, so readers never see half a file."""
    handle = None
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=cache_file.parent, suffix=".tmp", delete=False) as handle:
            np.savez(handle, **dict(zip(("x", "y", "x_test", "y_test"), arrays)))
        os.replace(handle.name, cache_file)
    except OSError as exc:
        if handle is not None:
            Path(handle.name).unlink(missing_ok=True)
        warnings.warn(f"{CACHE_ENV}: cannot write {cache_file}: {exc}", stacklevel=3)


# ---------------------------------------------------------------- loading


def load_dataset(source, *, seed=0, test_fraction=0.2, standardize=True, n_samples=None,
                 **options) -> Dataset:
    """Build a registered dataset by name or read a user file; see DATASETS and studies.data.files."""
    label = os.fspath(source) if isinstance(source, os.PathLike) else source
    if not isinstance(label, str):
        raise DatasetError(f"dataset must be a name or a path, got {source!r}")
    seed = check_int(label, "seed", seed, 0)
    test_fraction = check_float(label, "test_fraction", test_fraction, 0.0, inclusive=False)
    if test_fraction >= 1.0:
        raise DatasetError(f"{label}: test_fraction must be in (0, 1), got {test_fraction!r}")
    if n_samples is not None:
        n_samples = check_int(label, "n_samples", n_samples, 1)
    name, builder, meta = _resolve(label)
    meta["options"] = _resolve_options(label, builder, options)
    raw = builder(seed, test_fraction, n_samples, **options)
    meta.update(raw.meta)
    meta.update(seed=seed, test_fraction=test_fraction, n_samples=n_samples)
    return _finalize(label, name, raw, standardize, meta)


def _resolve(label):
    """(name, builder, meta) for a registered name or a path; unknown names get a suggestion."""
    if label in DATASETS:
        return label, DATASETS[label][0], {"dataset": label}
    if _looks_like_path(label):

        path = Path(label)
        return path.name, reader_for(path), {"path": str(path.resolve())}
    names = sorted(DATASETS)
    close = difflib.get_close_matches(label.lower(), names, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise DatasetError(f"unknown dataset {label!r}.{hint} Valid names: {', '.join(names)}; "
                       "or a path to a .npz, .csv, MNIST IDX file or directory")


def _looks_like_path(label):
    separators = [sep for sep in (os.sep, os.altsep, "/") if sep]
    return (any(sep in label for sep in separators) or label.lower().endswith(FILE_SUFFIXES)
            or os.path.exists(label))


def _resolve_options(label, builder, options):
    """The builder's keyword options with their effective values; unknown ones raise."""
    allowed = {name: param.default for name, param in inspect.signature(builder).parameters.items()
               if param.kind is inspect.Parameter.KEYWORD_ONLY}
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        choices = ", ".join(sorted(allowed)) or "none"
        raise DatasetError(f"{label}: unknown option(s) {', '.join(unknown)}; allowed: {choices}")
    return {**allowed, **options}


def _finalize(label, name, raw, standardize, meta):
    """Check the arrays, map labels to 0..K-1, standardize, and freeze into a Dataset."""
    x_train, x_test = _features(label, "x_train", raw.x_train), _features(label, "x_test", raw.x_test)
    if x_train.shape[1] != x_test.shape[1]:
        raise DatasetError(f"{label}: x_train has {x_train.shape[1]} features but x_test has "
                           f"{x_test.shape[1]}")
    for split, x, y in (("train", x_train, raw.y_train), ("test", x_test, raw.y_test)):
        if len(x) != len(y):
            raise DatasetError(f"{label}: x_{split} has {len(x)} rows but y_{split} has {len(y)}")
    if raw.task == "classification":
        y_train, y_test, classes = _class_labels(label, raw.y_train, raw.y_test)
        n_outputs = len(classes)
        meta["classes"] = classes.tolist()
    else:
        y_train, y_test = _targets(label, "y_train", raw.y_train), _targets(label, "y_test", raw.y_test)
        if y_train.shape[1] != y_test.shape[1]:
            raise DatasetError(f"{label}: y_train has {y_train.shape[1]} targets but y_test has "
                               f"{y_test.shape[1]}")
        n_outputs = y_train.shape[1]
    n_constant = 0
    if standardize:
        x_train, x_test, n_constant = standardize_features(x_train, x_test)
    meta.update(task=raw.task, n_train=len(x_train), n_test=len(x_test),
                n_features=x_train.shape[1], n_outputs=n_outputs, standardized=bool(standardize),
                n_constant_features=n_constant)
    arrays = [np.array(a, order="C", copy=True) for a in (x_train, y_train, x_test, y_test)]
    for array in arrays:
        array.flags.writeable = False
    return Dataset(name, raw.task, *arrays, n_features=x_train.shape[1], n_outputs=n_outputs,
                   meta=meta)


def _features(label, key, x):
    """x as float64 (n, d): N-D flattened, 1-D as one column; numeric, non-empty, finite."""
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise DatasetError(f"{label}: {key} must be numeric, got dtype {x.dtype}")
    if x.ndim == 0 or len(x) == 0:
        raise DatasetError(f"{label}: {key} is empty (no samples)")
    x = x.reshape(len(x), -1).astype(np.float64)
    if x.shape[1] == 0:
        raise DatasetError(f"{label}: {key} has no features")
    _check_finite(label, key, x)
    return x


def _targets(label, key, y):
    """Regression targets as float64 (n, k)."""
    y = np.asarray(y)
    if y.dtype.kind not in "biuf":
        raise DatasetError(f"{label}: {key} must be numeric, got dtype {y.dtype}")
    y = y.reshape(len(y), -1).astype(np.float64)
    _check_finite(label, key, y)
    return y


def _class_labels(label, y_train, y_test):
    """Labels mapped to 0..K-1 over the classes seen in either split, and the original classes."""
    ys = []
    for key, y in (("y_train", y_train), ("y_test", y_test)):
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1:
            raise DatasetError(f"{label}: {key} must be 1-D class labels, got shape {y.shape}")
        if y.dtype.kind not in "biuf":
            raise DatasetError(f"{label}: {key} must be numeric labels, got dtype {y.dtype}")
        if y.dtype.kind == "f":
            _check_finite(label, key, y)
            if not np.array_equal(y, np.round(y)):
                raise DatasetError(f"{label}: {key} has non-integer class labels")
        ys.append(y)
    classes = np.unique(np.concatenate(ys))
    if len(classes) < 2:
        raise DatasetError(f"{label}: classification needs at least 2 classes, found {classes.tolist()}")
    if classes.dtype.kind == "f":
        classes = classes.astype(np.int64)
    return (*(np.searchsorted(classes, y).astype(np.int64) for y in ys), classes)


def _check_finite(label, key, array):
    bad = ~np.isfinite(array)
    if bad.any():
        row, *column = np.argwhere(bad)[0]
        where = f"row {row}" + (f", column {column[0]}" if column else "")
        raise DatasetError(f"{label}: {key} has {int(bad.sum())} NaN/Inf value(s) (first at {where})")
