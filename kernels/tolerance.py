"""The one tolerance rule: |actual - expected| <= atol + rtol |expected|, per dtype.

Used by the tests and by the benchmark's validation step; a failure lists the worst mismatches.
Two tables of (atol, rtol) per dtype: the default, for whole computations (a training step, a
network's gradients), and `strict`, for a handful of arithmetic operations on O(1) values (one
optimizer update, one clipping), where anything looser would hide a bug.
"""
import numpy as np

TOLERANCES = {np.dtype(np.float64): (1e-12, 1e-10), np.dtype(np.float32): (1e-5, 1e-4)}
STRICT_TOLERANCES = {np.dtype(np.float64): (1e-14, 1e-12), np.dtype(np.float32): (1e-6, 2e-5)}


def tolerance(dtype, strict=False):
    """(atol, rtol) for a dtype."""
    return (STRICT_TOLERANCES if strict else TOLERANCES)[np.dtype(dtype)]


def mismatch_report(actual, expected, atol, rtol, name="value", worst=5):
    """None when within tolerance, else a message naming the worst entries."""
    a = np.asarray(actual, np.float64)
    e = np.asarray(expected, np.float64)
    if a.shape != e.shape:
        return f"{name}: shape {a.shape} != expected {e.shape}"
    excess = np.abs(a - e) - (atol + rtol * np.abs(e))
    bad = ~(excess <= 0)  # NaN counts as a mismatch
    if not bad.any():
        return None
    n_bad = int(bad.sum())
    flat = np.argsort(np.where(np.isnan(excess), np.inf, excess), axis=None)[::-1]
    lines = [f"{name}: {n_bad} of {a.size} entries outside atol={atol:g} rtol={rtol:g}"]
    for i in flat[:min(worst, n_bad)]:  # only entries outside the tolerance
        idx = tuple(int(k) for k in np.unravel_index(i, a.shape))
        lines.append(f"  at {idx}: actual {float(a[idx])!r} expected {float(e[idx])!r}")
    return "\n".join(lines)


def assert_close(actual, expected, dtype=np.float64, name="value", atol=None, rtol=None,
                 strict=False, scale=1.0):
    """Raises AssertionError listing the worst mismatches. Tolerances default to the dtype's
    (strict: the table for a few operations), times `scale` for longer computations."""
    default_atol, default_rtol = tolerance(dtype, strict)
    report = mismatch_report(actual, expected,
                             scale * (default_atol if atol is None else atol),
                             scale * (default_rtol if rtol is None else rtol), name)
    if report:
        raise AssertionError(report)


def relative_error(actual, expected):
    """||a - e|| / (||a|| + ||e||): the norm-wise relative error of two arrays; 0 when both are
    zero, NaN when an entry is not finite (so `err < tol` fails). Computed on a/s and e/s,
    s = max |entry|, so that the norms neither underflow nor overflow."""
    a = np.asarray(actual, np.float64).ravel()
    e = np.asarray(expected, np.float64).ravel()
    s = max(np.max(np.abs(a), initial=0.0), np.max(np.abs(e), initial=0.0))
    if not np.isfinite(s):
        return float("nan")
    if s == 0.0:
        return 0.0
    a, e = a / s, e / s
    return float(np.linalg.norm(a - e) / (np.linalg.norm(a) + np.linalg.norm(e)))
