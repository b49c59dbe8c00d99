"""Readers for user dataset files: `.npz`, `.csv` and MNIST IDX (a file or a directory, `.gz` or not).

- `.npz`: arrays x_train, y_train, x_test, y_test (x N-D is flattened); the fixed split is kept.
  Integer y -> classification, float y -> regression, unless `task=` says otherwise.
- `.csv`: a numeric table, optional header row, target column `target=` (name or index, default
  the last); integer-valued target -> classification unless `task=`; seeded split by test_fraction.
- IDX directory: train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte,
  t10k-labels-idx1-ubyte (each may end in .gz); the train/t10k split is kept.
- IDX images file: its labels file beside it by the standard name; seeded split by test_fraction.
uint8 IDX pixels are scaled to [0, 1]. Every reader raises DatasetError naming the file.
"""

from __future__ import annotations

import csv
import functools
import gzip
import hashlib
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

from studies.data.base import TASKS, DatasetError, RawData, split_train_test, subsample

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
MNIST_FILES = {"x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
               "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte"}
CSV_DELIMITERS = (",", ";", "\t")


def reader_for(path: Path):
    """The reader for a path, with the path bound: a directory is MNIST IDX, else by file name."""
    if not path.exists():
        raise DatasetError(f"{path}: no such file or directory")
    name = path.name.lower()
    if path.is_dir():
        reader = read_idx_directory
    elif name.endswith(".npz"):
        reader = read_npz
    elif name.endswith(".csv"):
        reader = read_csv
    elif "idx" in name or "ubyte" in name:
        reader = read_idx_images
    else:
        raise DatasetError(f"{path}: unknown file type; expected .npz, .csv, an MNIST IDX images "
                           "file or a directory holding the four MNIST IDX files")
    return functools.partial(reader, path)


def file_digest(paths):
    """sha256 over the bytes of the given files, in order."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def _file_meta(fmt, paths):
    return {"source": f"file ({fmt})", "files": [str(p) for p in paths], "sha256": file_digest(paths)}


def _subsample_fixed_split(source, arrays, n_samples, rng):
    """Shrink a fixed train/test split to n_samples in all, keeping its train/test proportion."""
    x_train, y_train, x_test, y_test = arrays
    if n_samples is None:
        return arrays
    total = len(y_train) + len(y_test)
    if n_samples > total:
        raise DatasetError(f"{source}: n_samples={n_samples} but only {total} samples are available")
    n_train = min(max(int(round(n_samples * len(y_train) / total)), 1), len(y_train))
    n_test = min(max(n_samples - n_train, 1), len(y_test))
    return (*subsample(source, x_train, y_train, n_train, rng),
            *subsample(source, x_test, y_test, n_test, rng))


def _check_task(path, task):
    if task is not None and task not in TASKS:
        raise DatasetError(f"{path}: task must be one of {', '.join(TASKS)}, got {task!r}")


# ---------------------------------------------------------------- .npz


def read_npz(path, seed, test_fraction, n_samples, *, task=None):
    """x_train, y_train, x_test, y_test from an .npz archive; the split in the file is kept."""
    _check_task(path, task)
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"{path}: not a readable .npz archive ({exc})") from exc
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DatasetError(f"{path}: holds a single array, not an .npz archive of {', '.join(NPZ_KEYS)}")
    with archive:
        missing = [key for key in NPZ_KEYS if key not in archive.files]
        if missing:
            found = ", ".join(archive.files) or "nothing"
            raise DatasetError(f"{path}: missing array(s) {', '.join(missing)} (found {found})")
        try:
            arrays = tuple(archive[key] for key in NPZ_KEYS)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
            raise DatasetError(f"{path}: damaged .npz member ({exc})") from exc
    for key, y in (("y_train", arrays[1]), ("y_test", arrays[3])):
        if y.dtype.kind not in "biuf" or y.ndim == 0:
            raise DatasetError(f"{path}: {key} must be a numeric array, got {y.dtype} {y.shape}")
    if task is None:
        task = "classification" if arrays[1].dtype.kind in "biu" else "regression"
    arrays = _subsample_fixed_split(path, arrays, n_samples, np.random.default_rng(seed))
    meta = {**_file_meta("npz", [path]), "split": "fixed by the file"}
    return RawData(*arrays, task, meta)


# ---------------------------------------------------------------- .csv


def read_csv(path, seed, test_fraction, n_samples, *, target=-1, task=None, delimiter=None):
    """A numeric table with an optional header; target column by name or index; seeded split."""
    _check_task(path, task)
    rows, lines, header, delimiter = _read_csv_rows(path, delimiter)
    n_columns = len(rows[0])
    if n_columns < 2:
        raise DatasetError(f"{path}: needs at least 2 columns (features and a target), "
                           f"found {n_columns} with delimiter {delimiter!r}")
    column = _target_column(path, target, header, n_columns)
    table = _csv_numbers(path, rows, lines, header)
    _check_csv_finite(path, table, lines, header)
    y, x = table[:, column], np.delete(table, column, axis=1)
    if task is None:
        integral = np.isfinite(y).all() and np.array_equal(y, np.round(y))
        task = "classification" if integral else "regression"
    rng = np.random.default_rng(seed)
    x, y = subsample(path, x, y, n_samples, rng)
    parts = split_train_test(x, y, test_fraction, rng, stratify=task == "classification")
    meta = {**_file_meta("csv", [path]), "delimiter": delimiter, "header": header,
            "target_column": column if header is None else header[column],
            "split": "random" + (" stratified" if task == "classification" else "")
            + " (test_fraction, seed)"}
    return RawData(*parts, task, meta)


def _read_csv_rows(path, delimiter):
    """(rows, line numbers, header or None, delimiter); blank lines skipped, widths checked."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            text = handle.read()
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if delimiter is None:
        first_line = next((line for line in text.splitlines() if line.strip()), "")
        delimiter = max(CSV_DELIMITERS, key=first_line.count)
    reader = csv.reader(text.splitlines(), delimiter=delimiter)
    rows, lines = [], []
    try:
        for row in reader:
            if any(cell.strip() for cell in row):
                rows.append(row)
                lines.append(reader.line_num)
    except csv.Error as exc:
        raise DatasetError(f"{path}: line {reader.line_num}: {exc}") from exc
    if not rows:
        raise DatasetError(f"{path}: empty file (no rows)")
    for row, line in zip(rows, lines):
        if len(row) != len(rows[0]):
            raise DatasetError(f"{path}: line {line} has {len(row)} cells, expected {len(rows[0])} "
                               f"(as on line {lines[0]})")
    header = None
    if not all(_is_number(cell) for cell in rows[0]):
        header = [cell.strip() for cell in rows[0]]
        rows, lines = rows[1:], lines[1:]
        if not rows:
            raise DatasetError(f"{path}: empty data (a header row and no data rows)")
    return rows, lines, header, delimiter


def _is_number(cell):
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _target_column(path, target, header, n_columns):
    """The index of the target column from a column name or an index (negative counts from the end)."""
    if isinstance(target, str) and header is not None and target in header:
        return header.index(target)
    if isinstance(target, str) and target.strip().lstrip("-").isdigit():
        target = int(target)
    if isinstance(target, (int, np.integer)) and not isinstance(target, bool):
        if -n_columns <= target < n_columns:
            return int(target) % n_columns
        raise DatasetError(f"{path}: target column {target} is out of range for {n_columns} columns")
    if header is None:
        raise DatasetError(f"{path}: has no header row, so target must be a column index, "
                           f"got {target!r}")
    raise DatasetError(f"{path}: no column named {target!r}; columns: {', '.join(header)}")


def _column_name(header, column):
    return f"column {column + 1}" + (f" ({header[column]!r})" if header is not None else "")


def _csv_numbers(path, rows, lines, header):
    """The cells as a float64 table; the first bad cell is reported by line and column."""
    try:
        return np.array(rows, dtype=np.float64)
    except ValueError:
        pass
    table = np.empty((len(rows), len(rows[0])))
    for i, (row, line) in enumerate(zip(rows, lines)):
        for j, cell in enumerate(row):
            try:
                table[i, j] = float(cell)
            except ValueError:
                problem = "empty cell" if not cell.strip() else f"{cell.strip()!r} is not a number"
                raise DatasetError(f"{path}: line {line}, {_column_name(header, j)}: {problem}") from None
    return table


def _check_csv_finite(path, table, lines, header):
    bad = np.argwhere(~np.isfinite(table))
    if len(bad):
        row, column = bad[0]
        raise DatasetError(f"{path}: line {lines[row]}, {_column_name(header, column)}: "
                           f"{table[row, column]} (NaN/Inf not allowed)")


# ---------------------------------------------------------------- MNIST IDX


def read_idx(path):
    """An IDX array: magic 0x0000, dtype code, ndim, big-endian uint32 dims, then the data."""
    data = _read_maybe_gzip(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DatasetError(f"{path}: not an IDX file (bad magic number 0x{data[:4].hex() or 'empty'})")
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES or ndim == 0:
        raise DatasetError(f"{path}: not an IDX file (bad magic number 0x{data[:4].hex()}: "
                           f"type code 0x{code:02x}, {ndim} dimensions)")
    offset = 4 + 4 * ndim
    if len(data) < offset:
        raise DatasetError(f"{path}: truncated IDX header ({len(data)} bytes, need {offset})")
    dims = struct.unpack(f">{ndim}I", data[4:offset])
    dtype = np.dtype(IDX_DTYPES[code])
    count = int(np.prod(dims, dtype=np.int64))
    expected, actual = count * dtype.itemsize, len(data) - offset
    if actual != expected:
        problem = "truncated IDX data" if actual < expected else "extra bytes after the IDX data"
        raise DatasetError(f"{path}: {problem}: header says {dims} ({expected} bytes), "
                           f"file holds {actual} bytes")
    return np.frombuffer(data, dtype, count=count, offset=offset).reshape(dims)


def _read_maybe_gzip(path):
    try:
        with open(path, "rb") as handle:
            data = handle.read()
        return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    except (OSError, EOFError, zlib.error) as exc:
        raise DatasetError(f"{path}: cannot read ({exc})") from exc


def _idx_pair(images_path, labels_path):
    """(images flattened and scaled, labels) from an images and a labels IDX file."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim < 2:
        raise DatasetError(f"{images_path}: IDX images need at least 2 dimensions, got {images.shape}")
    if labels.ndim != 1:
        raise DatasetError(f"{labels_path}: IDX labels must be 1-D, got shape {labels.shape}")
    if len(labels) != len(images):
        raise DatasetError(f"{labels_path}: {len(labels)} labels but {images_path} holds "
                           f"{len(images)} images")
    x = images.reshape(len(images), -1).astype(np.float64)
    if images.dtype == np.uint8:
        x /= 255.0
    return x, labels.astype(np.int64)


def _find_beside(folder, base):
    """The first existing variant of an MNIST file name: as is, dotted (-images.idx3), and .gz."""
    names = [base, base.replace("-idx", ".idx")]
    for name in names + [n + ".gz" for n in names]:
        if (folder / name).is_file():
            return folder / name
    return None


def read_idx_directory(path, seed, test_fraction, n_samples):
    """The four MNIST IDX files of a directory; the train/t10k split is kept."""
    found = {key: _find_beside(path, base) for key, base in MNIST_FILES.items()}
    missing = [MNIST_FILES[key] for key, file in found.items() if file is None]
    if missing:
        raise DatasetError(f"{path}: missing MNIST IDX file(s) {', '.join(missing)} (.gz allowed)")
    x_train, y_train = _idx_pair(found["x_train"], found["y_train"])
    x_test, y_test = _idx_pair(found["x_test"], found["y_test"])
    arrays = _subsample_fixed_split(path, (x_train, y_train, x_test, y_test), n_samples,
                                    np.random.default_rng(seed))
    files = [found[key] for key in NPZ_KEYS]
    meta = {**_file_meta("mnist idx", files), "pixel_scale": "uint8 / 255",
            "split": "fixed by the files (train / t10k)"}
    return RawData(*arrays, "classification", meta)


def read_idx_images(path, seed, test_fraction, n_samples):
    """One IDX images file and its labels file beside it; seeded stratified split by test_fraction."""
    name = path.name
    if "images" not in name:
        raise DatasetError(f"{path}: cannot find its labels file; expected an images file named "
                           "like train-images-idx3-ubyte[.gz]")
    base = name.replace("images", "labels").replace("idx3", "idx1").removesuffix(".gz")
    labels_path = _find_beside(path.parent, base)
    if labels_path is None:
        raise DatasetError(f"{path}: labels file {base}[.gz] not found beside it")
    x, y = _idx_pair(path, labels_path)
    rng = np.random.default_rng(seed)
    x, y = subsample(path, x, y, n_samples, rng)
    meta = {**_file_meta("mnist idx", [path, labels_path]), "pixel_scale": "uint8 / 255",
            "split": "random stratified (test_fraction, seed)"}
    return RawData(*split_train_test(x, y, test_fraction, rng, stratify=True), "classification", meta)
