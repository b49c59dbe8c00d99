"""Tests for studies.data.files through load_dataset: user .npz, .csv and MNIST IDX files, and
their errors."""
import gzip
import struct

import numpy as np
import pytest

from studies.data.datasets import DatasetError, load_dataset
from _dataset_checks import assert_standardized, assert_well_formed, same_arrays


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
