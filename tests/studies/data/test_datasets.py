"""Tests for studies.data.datasets and studies.data.files: builtin datasets, user files and their errors."""

import dataclasses
import gzip
import random
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from studies.data.datasets import (DATASETS, Dataset, DatasetError, load_dataset, split_train_test,
                          standardize_features)

SMALL = {"digits": {}, "mnist1d": {}, "teacher_student": {"n_samples": 300},
         "spirals": {"n_samples": 300}, "blobs": {"n_samples": 300}}


def assert_well_formed(ds):
    assert isinstance(ds, Dataset)
    assert ds.task in ("classification", "regression")
    for x in (ds.x_train, ds.x_test):
        assert x.dtype == np.float64 and x.ndim == 2 and x.shape[1] == ds.n_features
        assert x.flags.c_contiguous and not x.flags.writeable
        assert np.isfinite(x).all()
    for x, y in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
        assert len(x) == len(y) > 0 and y.flags.c_contiguous and not y.flags.writeable
        if ds.task == "classification":
            assert y.dtype == np.int64 and y.shape == (len(x),)
            assert y.min() >= 0 and y.max() < ds.n_outputs
        else:
            assert y.dtype == np.float64 and y.shape == (len(x), ds.n_outputs)
    assert ds.meta["n_train"] == len(ds.y_train) and ds.meta["n_test"] == len(ds.y_test)


def assert_standardized(x):
    std = x.std(axis=0)
    np.testing.assert_allclose(x.mean(axis=0), 0.0, atol=1e-10)
    assert np.all((np.abs(std - 1.0) < 1e-10) | (std == 0.0))


def same_arrays(a, b):
    """Bitwise equality of the four arrays."""
    keys = ("x_train", "y_train", "x_test", "y_test")
    return all(getattr(a, k).tobytes() == getattr(b, k).tobytes() for k in keys)


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


# ---------------------------------------------------------------- .npz files


def write_npz(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


def npz_arrays(rng, n_train=40, n_test=10, labels=(3, 7, 9)):
    return {"x_train": rng.normal(size=(n_train, 2, 3)), "y_train": rng.choice(labels, n_train),
            "x_test": rng.normal(size=(n_test, 2, 3)), "y_test": rng.choice(labels, n_test)}


def test_npz_classification_flattens_and_maps_labels(tmp_path):
    path = write_npz(tmp_path / "d.npz", **npz_arrays(np.random.default_rng(0)))
    ds = load_dataset(path)
    assert_well_formed(ds)
    assert ds.name == "d.npz" and ds.n_features == 6 and ds.n_outputs == 3
    assert ds.meta["classes"] == [3, 7, 9] and len(ds.meta["sha256"]) == 64
    assert_standardized(ds.x_train)


def test_npz_regression_and_constant_feature(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(30, 3))
    x[:, 1] = 4.0
    path = write_npz(tmp_path / "r.npz", x_train=x[:20], y_train=rng.normal(size=20),
                     x_test=x[20:], y_test=rng.normal(size=10))
    ds = load_dataset(path)
    assert ds.task == "regression" and ds.y_train.shape == (20, 1)
    assert np.all(ds.x_train[:, 1] == 0.0) and ds.meta["n_constant_features"] == 1


def test_npz_n_samples_keeps_the_split_proportion(tmp_path):
    path = write_npz(tmp_path / "d.npz", **npz_arrays(np.random.default_rng(0), 80, 20))
    ds = load_dataset(path, n_samples=50)
    assert (len(ds.y_train), len(ds.y_test)) == (40, 10)


def test_npz_missing_keys_are_named(tmp_path):
    arrays = npz_arrays(np.random.default_rng(0))
    del arrays["y_test"], arrays["x_test"]
    path = write_npz(tmp_path / "m.npz", **arrays)
    with pytest.raises(DatasetError, match=r"m\.npz: missing array\(s\) x_test, y_test"):
        load_dataset(path)


def test_npz_mismatched_lengths(tmp_path):
    arrays = npz_arrays(np.random.default_rng(0))
    arrays["y_train"] = arrays["y_train"][:-1]
    with pytest.raises(DatasetError, match=r"x_train has 40 rows but y_train has 39"):
        load_dataset(write_npz(tmp_path / "l.npz", **arrays))


def test_npz_nan_feature(tmp_path):
    arrays = npz_arrays(np.random.default_rng(0))
    arrays["x_test"][2, 1, 0] = np.inf
    with pytest.raises(DatasetError, match=r"n\.npz: x_test has 1 NaN/Inf .*first at row 2, column 3"):
        load_dataset(write_npz(tmp_path / "n.npz", **arrays))


def test_npz_empty_split(tmp_path):
    arrays = npz_arrays(np.random.default_rng(0))
    arrays["x_test"], arrays["y_test"] = arrays["x_test"][:0], arrays["y_test"][:0]
    with pytest.raises(DatasetError, match=r"e\.npz: x_test is empty"):
        load_dataset(write_npz(tmp_path / "e.npz", **arrays))


def test_npz_not_a_zip(tmp_path):
    path = tmp_path / "bad.npz"
    path.write_bytes(b"this is not an archive")
    with pytest.raises(DatasetError, match=r"bad\.npz: not a readable \.npz archive"):
        load_dataset(str(path))


def test_missing_file_and_unknown_type(tmp_path):
    with pytest.raises(DatasetError, match=r"nothere\.npz: no such file"):
        load_dataset(str(tmp_path / "nothere.npz"))
    (tmp_path / "data.txt").write_text("1,2\n")
    with pytest.raises(DatasetError, match=r"data\.txt: unknown file type"):
        load_dataset(tmp_path / "data.txt")


# ---------------------------------------------------------------- .csv files


def write_csv(path, text):
    path.write_text(text)
    return str(path)


def csv_table(rng, n=60, header="a,b,label\n"):
    rows = [f"{a:.6f},{b:.6f},{int(a > 0) + 2 * int(b > 0)}" for a, b in rng.normal(size=(n, 2))]
    return header + "\n".join(rows) + "\n"


def test_csv_with_header_last_column_classification(tmp_path):
    ds = load_dataset(write_csv(tmp_path / "h.csv", csv_table(np.random.default_rng(0))))
    assert_well_formed(ds)
    assert ds.task == "classification" and ds.n_features == 2 and ds.n_outputs == 4
    assert ds.meta["header"] == ["a", "b", "label"] and ds.meta["target_column"] == "label"
    assert len(ds.y_train) + len(ds.y_test) == 60


def test_csv_without_header_and_determinism(tmp_path):
    path = write_csv(tmp_path / "n.csv", csv_table(np.random.default_rng(0), header=""))
    a, b = load_dataset(path, seed=5), load_dataset(path, seed=5)
    assert a.meta["header"] is None and a.n_outputs == 4 and same_arrays(a, b)
    assert not np.array_equal(a.x_train, load_dataset(path, seed=6).x_train)


def test_csv_named_target_gives_regression(tmp_path):
    ds = load_dataset(write_csv(tmp_path / "t.csv", csv_table(np.random.default_rng(0))), target="a")
    assert ds.task == "regression" and ds.y_train.shape[1] == 1 and ds.n_features == 2
    ds = load_dataset(str(tmp_path / "t.csv"), target=0, task="regression")
    assert ds.meta["target_column"] == "a"


def test_csv_semicolon_delimiter(tmp_path):
    text = csv_table(np.random.default_rng(0)).replace(",", ";")
    assert load_dataset(write_csv(tmp_path / "s.csv", text)).n_features == 2


def test_csv_non_numeric_cell_names_line_and_column(tmp_path):
    path = write_csv(tmp_path / "bad.csv", "a,b,label\n1,2,0\n3,abc,1\n")
    with pytest.raises(DatasetError, match=r"bad\.csv: line 3, column 2 \('b'\): 'abc' is not a number"):
        load_dataset(path)
    path = write_csv(tmp_path / "gap.csv", "1,2,0\n3,,1\n")
    with pytest.raises(DatasetError, match=r"gap\.csv: line 2, column 2: empty cell"):
        load_dataset(path)


def test_csv_ragged_row(tmp_path):
    with pytest.raises(DatasetError, match=r"r\.csv: line 3 has 2 cells, expected 3"):
        load_dataset(write_csv(tmp_path / "r.csv", "1,2,0\n3,4,1\n5,6\n"))


def test_csv_nan_feature(tmp_path):
    with pytest.raises(DatasetError, match=r"nan\.csv: line 2, column 1: nan \(NaN/Inf not allowed\)"):
        load_dataset(write_csv(tmp_path / "nan.csv", "1,2,0\nnan,4,1\n5,6,0\n"))


def test_csv_empty_and_header_only(tmp_path):
    with pytest.raises(DatasetError, match=r"empty\.csv: empty file"):
        load_dataset(write_csv(tmp_path / "empty.csv", "\n\n"))
    with pytest.raises(DatasetError, match=r"head\.csv: empty data"):
        load_dataset(write_csv(tmp_path / "head.csv", "a,b,label\n"))


def test_csv_bad_target(tmp_path):
    path = write_csv(tmp_path / "h.csv", csv_table(np.random.default_rng(0)))
    with pytest.raises(DatasetError, match=r"h\.csv: no column named 'y'; columns: a, b, label"):
        load_dataset(path, target="y")
    with pytest.raises(DatasetError, match=r"h\.csv: target column 5 is out of range for 3 columns"):
        load_dataset(path, target=5)
    with pytest.raises(DatasetError, match=r"h\.csv: task must be one of"):
        load_dataset(path, task="ranking")


# ---------------------------------------------------------------- MNIST IDX files


def idx_bytes(array, code=0x08):
    header = struct.pack(">BBBB", 0, 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(">u1" if code == 0x08 else ">f4").tobytes()


def write_idx(path, array, compress=False):
    data = idx_bytes(array)
    if compress:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def write_mnist_dir(folder, rng, compress=False, n_train=30, n_test=10):
    folder.mkdir()
    for split, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 4, 4), dtype=np.uint8)
        write_idx(folder / f"{split}-images-idx3-ubyte", images, compress)
        write_idx(folder / f"{split}-labels-idx1-ubyte", np.arange(n, dtype=np.uint8) % 3, compress)
    return folder


@pytest.mark.parametrize("compress", [False, True])
def test_idx_directory_keeps_split_and_scales_pixels(tmp_path, compress):
    folder = write_mnist_dir(tmp_path / "mnist", np.random.default_rng(0), compress)
    ds = load_dataset(str(folder), standardize=False)
    assert_well_formed(ds)
    assert ds.x_train.shape == (30, 16) and ds.x_test.shape == (10, 16) and ds.n_outputs == 3
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0
    assert_standardized(load_dataset(str(folder)).x_train)


def test_idx_single_images_file_finds_labels_and_splits(tmp_path):
    folder = write_mnist_dir(tmp_path / "mnist", np.random.default_rng(0), compress=True, n_train=60)
    ds = load_dataset(str(folder / "train-images-idx3-ubyte.gz"), test_fraction=0.5, seed=1)
    assert len(ds.y_train) == len(ds.y_test) == 30 and ds.n_outputs == 3


def test_idx_bad_magic(tmp_path):
    folder = write_mnist_dir(tmp_path / "mnist", np.random.default_rng(0))
    (folder / "t10k-images-idx3-ubyte").write_bytes(b"\x01\x02\x08\x03" + bytes(40))
    with pytest.raises(DatasetError, match=r"t10k-images-idx3-ubyte: not an IDX file .*0x01020803"):
        load_dataset(str(folder))


def test_idx_truncated_data(tmp_path):
    folder = write_mnist_dir(tmp_path / "mnist", np.random.default_rng(0))
    images = folder / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-5])
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte: truncated IDX data"):
        load_dataset(str(folder))


def test_idx_label_count_mismatch(tmp_path):
    folder = write_mnist_dir(tmp_path / "mnist", np.random.default_rng(0))
    write_idx(folder / "train-labels-idx1-ubyte", np.zeros(29, dtype=np.uint8))
    with pytest.raises(DatasetError, match=r"train-labels-idx1-ubyte: 29 labels but .* holds 30 images"):
        load_dataset(str(folder))


def test_idx_missing_file_in_directory(tmp_path):
    folder = write_mnist_dir(tmp_path / "mnist", np.random.default_rng(0))
    (folder / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DatasetError, match=r"mnist: missing MNIST IDX file\(s\) t10k-labels-idx1-ubyte"):
        load_dataset(str(folder))


def test_idx_broken_gzip(tmp_path):
    folder = write_mnist_dir(tmp_path / "mnist", np.random.default_rng(0), compress=True)
    labels = folder / "train-labels-idx1-ubyte.gz"
    labels.write_bytes(labels.read_bytes()[:12])
    with pytest.raises(DatasetError, match=r"train-labels-idx1-ubyte\.gz: cannot read"):
        load_dataset(str(folder))


def test_idx_images_file_without_labels(tmp_path):
    path = write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((4, 2, 2), dtype=np.uint8))
    with pytest.raises(DatasetError, match=r"labels file train-labels-idx1-ubyte\[\.gz\] not found"):
        load_dataset(str(path))


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
