"""Tests for studies.data.datasets: builtin datasets, options, splits and their errors (user
files: test_files.py)."""

import dataclasses
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from studies.data.datasets import (DATASETS, DatasetError, load_dataset, split_train_test,
                                   standardize_features)
from _dataset_checks import assert_standardized, assert_well_formed, same_arrays

SMALL = {"digits": {}, "mnist1d": {}, "teacher_student": {"n_samples": 300},
         "spirals": {"n_samples": 300}, "blobs": {"n_samples": 300}}


# ---------------------------------------------------------------- builtin datasets


def test_registry_lists_every_builtin_with_a_description():
    assert set(DATASETS) == {"digits", "mnist1d", "teacher_student", "spirals", "blobs"}
    for builder, description in DATASETS.values():
        assert callable(builder) and isinstance(description, str) and description


@pytest.mark.parametrize("name", sorted(SMALL))
def test_builtin_is_well_formed_and_standardized(name):
    ds = load_dataset(name, seed=0, **SMALL[name])
    assert_well_formed(ds)
    assert_standardized(ds.x_train)
    assert ds.name == name and ds.meta["standardized"]


@pytest.mark.parametrize("name", sorted(SMALL))
def test_builtin_same_seed_gives_identical_arrays(name):
    first, second = (load_dataset(name, seed=3, **SMALL[name]) for _ in range(2))
    assert same_arrays(first, second)


@pytest.mark.parametrize("name", ["digits", "teacher_student", "spirals", "blobs"])
def test_builtin_other_seed_gives_other_arrays(name):
    a, b = load_dataset(name, seed=0, **SMALL[name]), load_dataset(name, seed=1, **SMALL[name])
    assert not np.array_equal(a.x_train, b.x_train)


def test_digits_sizes_classes_and_stratified_split():
    ds = load_dataset("digits", seed=0, test_fraction=0.25)
    assert ds.n_features == 64 and ds.n_outputs == 10
    assert len(ds.y_train) + len(ds.y_test) == 1797
    assert abs(len(ds.y_test) - 0.25 * 1797) < 10
    assert np.bincount(ds.y_test, minlength=10).min() >= 40
    assert ds.meta["n_constant_features"] > 0  # corner pixels are always blank


def test_digits_n_samples_subsamples_and_too_many_raises():
    ds = load_dataset("digits", n_samples=500)
    assert len(ds.y_train) + len(ds.y_test) == 500
    with pytest.raises(DatasetError, match=r"digits: n_samples=5000 but only 1797"):
        load_dataset("digits", n_samples=5000)


def test_mnist1d_default_is_the_package_split_and_seed():
    ds = load_dataset("mnist1d")
    assert ds.x_train.shape == (4000, 40) and ds.x_test.shape == (1000, 40)
    assert ds.n_outputs == 10 and set(np.unique(ds.y_train)) == set(range(10))
    assert ds.meta["generator_seed"] == 42
    raw = load_dataset("mnist1d", standardize=False)
    import mnist1d.data

    state = np.random.get_state()
    try:
        package = mnist1d.data.make_dataset(mnist1d.data.get_dataset_args())
    finally:
        np.random.set_state(state)
    np.testing.assert_array_equal(raw.x_train, package["x"])
    np.testing.assert_array_equal(raw.y_test, package["y_test"])


def test_mnist1d_seed_is_unused_and_generator_seed_changes_it():
    a = load_dataset("mnist1d", seed=0, n_samples=200)
    assert same_arrays(a, load_dataset("mnist1d", seed=9, n_samples=200))
    b = load_dataset("mnist1d", n_samples=200, generator_seed=7)
    assert a.x_train.shape == (160, 40) and not np.array_equal(a.x_train, b.x_train)


def test_mnist1d_leaves_global_random_state_alone():
    np_state, py_state = np.random.get_state()[1].copy(), random.getstate()
    load_dataset("mnist1d", n_samples=100, generator_seed=11)
    assert np.array_equal(np.random.get_state()[1], np_state) and random.getstate() == py_state


def test_mnist1d_disk_cache(tmp_path, monkeypatch):
    from studies.data import datasets as data

    monkeypatch.setenv("GRADLAB_DATA_CACHE", str(tmp_path / "cache"))
    first = load_dataset("mnist1d", n_samples=100, generator_seed=5)
    files = list((tmp_path / "cache").glob("mnist1d-*.npz"))
    assert len(files) == 1
    data._generate_mnist1d.cache_clear()
    assert same_arrays(first, load_dataset("mnist1d", n_samples=100, generator_seed=5))


def test_mnist1d_cache_location_defaults_beside_the_kernel_cache_and_can_be_turned_off(
        tmp_path, monkeypatch):
    from studies.data import datasets as data

    monkeypatch.delenv("GRADLAB_DATA_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert data.data_cache_dir() == tmp_path / ".cache" / "gradlab" / "data"
    data._generate_mnist1d.cache_clear()
    load_dataset("mnist1d", n_samples=60, generator_seed=3)
    assert len(list(data.data_cache_dir().glob("mnist1d-*-n60-seed3.npz"))) == 1
    monkeypatch.setenv("GRADLAB_DATA_CACHE", "")
    assert data.data_cache_dir() is None
    data._generate_mnist1d.cache_clear()
    load_dataset("mnist1d", n_samples=60, generator_seed=4)  # generated, nothing written
    assert not list((tmp_path / ".cache" / "gradlab" / "data").glob("*seed4.npz"))


def test_teacher_student_options_and_fixed_teacher():
    ds = load_dataset("teacher_student", n_samples=200, n_features=5, n_outputs=3, noise=0.0)
    assert ds.task == "regression" and ds.x_train.shape[1] == 5 and ds.y_train.shape[1] == 3
    assert ds.meta["options"]["teacher_width"] == 32
    options = dict(n_samples=50, noise=0.0, standardize=False, teacher_seed=4)
    a = load_dataset("teacher_student", seed=1, **options)
    b = load_dataset("teacher_student", seed=2, **options)
    assert a.meta["teacher_seed"] == b.meta["teacher_seed"] == 4
    assert not np.array_equal(a.x_train, b.x_train)


def test_regression_targets_are_not_standardized():
    raw = load_dataset("teacher_student", n_samples=200, standardize=False)
    scaled = load_dataset("teacher_student", n_samples=200)
    np.testing.assert_array_equal(raw.y_train, scaled.y_train)
    assert not np.array_equal(raw.x_train, scaled.x_train)


def test_spirals_and_blobs_options():
    spirals = load_dataset("spirals", n_samples=400, noise=0.0, standardize=False)
    assert spirals.n_outputs == 2 and np.abs(spirals.x_train).max() <= 1.0
    blobs = load_dataset("blobs", n_samples=500, n_classes=5, n_features=4)
    assert blobs.n_outputs == 5 and blobs.n_features == 4
    assert set(np.unique(blobs.y_test)) == set(range(5))


def test_dataset_is_frozen_and_read_only():
    ds = load_dataset("spirals", n_samples=50)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ds.task = "regression"
    with pytest.raises(ValueError):
        ds.x_train[0, 0] = 1.0


# ---------------------------------------------------------------- argument errors


def test_unknown_name_suggests_the_closest():
    with pytest.raises(DatasetError, match=r"unknown dataset 'digts'.*mean 'digits'.*blobs, digits"):
        load_dataset("digts")


def test_unknown_option_names_it_and_the_allowed_ones():
    with pytest.raises(DatasetError, match=r"spirals: unknown option\(s\) nosie; allowed: noise, turns"):
        load_dataset("spirals", nosie=0.3)
    with pytest.raises(DatasetError, match=r"digits: unknown option\(s\) noise; allowed: none"):
        load_dataset("digits", noise=0.3)


@pytest.mark.parametrize("fraction", [0.0, 1.0, 1.5, -0.1])
def test_test_fraction_outside_open_unit_interval_raises(fraction):
    with pytest.raises(DatasetError, match="test_fraction"):
        load_dataset("spirals", test_fraction=fraction)


@pytest.mark.parametrize("n", [0, -5])
def test_nonpositive_n_samples_raises(n):
    with pytest.raises(DatasetError, match=r"spirals: n_samples must be an integer >= 1"):
        load_dataset("spirals", n_samples=n)


def test_bad_option_value_raises():
    with pytest.raises(DatasetError, match=r"blobs: n_classes must be an integer >= 2"):
        load_dataset("blobs", n_classes=1)
    with pytest.raises(DatasetError, match=r"spirals: noise must be a finite number"):
        load_dataset("spirals", noise=float("nan"))


# ---------------------------------------------------------------- helpers


def test_split_is_a_partition_and_stratified():
    rng = np.random.default_rng(0)
    x, y = np.arange(100.0)[:, None], np.repeat([0, 1, 2, 3], 25)
    x_train, y_train, x_test, y_test = split_train_test(x, y, 0.2, rng, stratify=True)
    assert sorted(np.concatenate([x_train[:, 0], x_test[:, 0]]).tolist()) == list(range(100))
    assert np.bincount(y_test).tolist() == [5, 5, 5, 5]


def test_standardize_uses_train_statistics_and_zeroes_constant_features():
    x_train = np.array([[1.0, 0.1], [3.0, 0.1], [5.0, 0.1]])
    x_test = np.array([[3.0, 0.1], [7.0, 0.5]])
    train, test, n_constant = standardize_features(x_train, x_test)
    assert n_constant == 1 and np.all(train[:, 1] == 0.0) and np.isfinite(test).all()
    np.testing.assert_allclose(test[:, 0], [0.0, 4.0 / np.std([1.0, 3.0, 5.0])])


def test_digits_are_scikit_learns_own_arrays_read_without_importing_it():
    from sklearn.datasets import load_digits

    from studies.data.datasets import digits_arrays

    pixels, labels = digits_arrays()
    bunch = load_digits()
    assert pixels.dtype == bunch.data.dtype and labels.dtype == bunch.target.dtype
    assert np.array_equal(pixels, bunch.data) and np.array_equal(labels, bunch.target)


def test_loading_digits_does_not_import_scikit_learn():
    code = ("import sys; from studies.data import load_dataset; load_dataset('digits'); "
            "print('sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[3])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
