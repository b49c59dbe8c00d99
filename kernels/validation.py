"""Argument checks: every failure is a ValueError naming the argument and what was expected."""
import difflib
import math
import numbers

import numpy as np

DTYPES = {"float32": np.float32, "float64": np.float64}
MAX_WIDTH = 1 << 20   # units per layer (a 2^20 x 2^20 float32 matrix is already 4 TiB)
SEED_BOUND = 1 << 63  # seeds in [0, 2^63): what NumPy accepts and an int64 column stores


def check_choice(argument, value, choices):
    """`value` must be one of `choices` (a registry); suggests the closest name."""
    if isinstance(value, str) and value in choices:
        return value
    names = sorted(choices)
    close = difflib.get_close_matches(str(value), names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(f"{argument}: unknown name {value!r}{hint}; expected one of {names}")


def _check_number(argument, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{argument}: expected a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{argument}: expected a finite number, got {value!r}")
    return value


def check_positive(argument, value):
    value = _check_number(argument, value)
    if value <= 0:
        raise ValueError(f"{argument}: expected a positive number, got {value!r}")
    return value


def check_nonnegative(argument, value):
    value = _check_number(argument, value)
    if value < 0:
        raise ValueError(f"{argument}: expected a non-negative number, got {value!r}")
    return value


def check_positive_int(argument, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f"{argument}: expected a positive integer, got {value!r}")
    return int(value)


def check_bool(argument, value):
    """True or False (NumPy bools included); anything else, 0 and 1 too, is a ValueError."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{argument}: expected true or false, got {value!r}")
    return bool(value)


def check_seed(argument, value):
    """An integer seed in [0, 2^63)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or \
            not 0 <= value < SEED_BOUND:
        raise ValueError(f"{argument}: expected an integer in [0, 2**63), got {value!r}")
    return int(value)


def check_sizes(sizes):
    """Layer widths (n_0, ..., n_L): at least two integers in [1, MAX_WIDTH], given as a list,
    tuple or 1-D array (a string is refused, not read digit by digit); integral floats such
    as 4.0 count as integers."""
    expected = (f"sizes: expected at least two positive integer widths <= {MAX_WIDTH} "
                f"(inputs, ..., outputs), got {sizes!r}")
    if isinstance(sizes, np.ndarray):
        sizes = sizes.tolist() if sizes.ndim == 1 else None
    if not isinstance(sizes, (list, tuple)) or len(sizes) < 2:
        raise ValueError(expected)
    out = []
    for s in sizes:
        if isinstance(s, (bool, np.bool_)) or not isinstance(s, numbers.Real):
            raise ValueError(expected)
        if not isinstance(s, numbers.Integral):
            if not math.isfinite(s) or s != int(s):
                raise ValueError(expected)
        s = int(s)
        if not 1 <= s <= MAX_WIDTH:
            raise ValueError(expected)
        out.append(s)
    return out


def check_dtype(value):
    """'float32' | 'float64' (or the NumPy types) -> NumPy dtype."""
    if value in (np.float32, np.float64):
        return np.dtype(value)
    if isinstance(value, np.dtype) and value.type in (np.float32, np.float64):
        return value
    check_choice("dtype", value, DTYPES)
    return np.dtype(DTYPES[value])


def check_inputs(x, n_features, dtype, argument="x"):
    """x: a finite real (batch, n_features) array; returned C-contiguous in `dtype`."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiub":
        raise ValueError(f"{argument}: expected a real numeric array, got dtype {arr.dtype}")
    if arr.ndim != 2 or arr.shape[1] != n_features:
        raise ValueError(f"{argument}: expected shape (batch, {n_features}), got {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{argument}: expected at least one row, got an empty batch")
    with np.errstate(over="ignore"):
        out = np.ascontiguousarray(arr, dtype=dtype)
    if not np.isfinite(out).all():
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise ValueError(f"{argument}: contains NaN or Inf")
        largest = float(np.max(np.abs(arr)))
        raise ValueError(f"{argument}: values up to {largest:.3g} overflow {np.dtype(dtype).name} "
                         f"(largest finite {float(np.finfo(dtype).max):.3g})")
    return out


def check_targets(y, n_rows, n_outputs, classification, dtype, argument="y"):
    """Targets as a (batch, n_outputs) array in `dtype`: one-hot rows for class labels."""
    arr = np.asarray(y)
    if arr.dtype.kind not in "fiub":
        raise ValueError(f"{argument}: expected a numeric array, got dtype {arr.dtype}")
    if arr.shape[:1] != (n_rows,):
        raise ValueError(f"{argument}: expected {n_rows} rows to match x, got shape {arr.shape}")
    if classification:
        if arr.ndim == 1:
            if arr.dtype.kind == "f":
                if not np.isfinite(arr).all() or (arr != np.round(arr)).any():
                    raise ValueError(f"{argument}: class labels must be integers")
            labels = arr.astype(np.int64)
            if labels.min() < 0 or labels.max() >= n_outputs:
                raise ValueError(f"{argument}: labels out of range: expected integers in "
                                 f"[0, {n_outputs - 1}], got min {labels.min()} max {labels.max()}")
            onehot = np.zeros((n_rows, n_outputs), dtype)
            onehot[np.arange(n_rows), labels] = 1
            return onehot
        if arr.ndim != 2 or arr.shape[1] != n_outputs:
            raise ValueError(f"{argument}: expected integer labels of shape ({n_rows},) or one-hot "
                             f"rows of shape ({n_rows}, {n_outputs}), got {arr.shape}")
        arr = np.ascontiguousarray(arr, dtype=dtype)
        if not np.isfinite(arr).all() or (arr < 0).any() or \
                not np.allclose(arr.sum(axis=1), 1.0, atol=1e-6):
            raise ValueError(f"{argument}: one-hot (or probability) rows must be non-negative "
                             f"and sum to 1")
        return arr
    if arr.ndim == 1 and n_outputs == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[1] != n_outputs:
        raise ValueError(f"{argument}: expected targets of shape ({n_rows}, {n_outputs}), "
                         f"got {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=dtype)
    if not np.isfinite(arr).all():
        raise ValueError(f"{argument}: contains NaN or Inf")
    return arr
