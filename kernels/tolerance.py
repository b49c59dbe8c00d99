"""The one tolerance rule: |actual - expected| <= atol + rtol |expected|, per dtype.

Used by the tests and by the benchmark's validation step; a failure lists the worst mismatches.
"""
import numpy as np

TOLERANCES = {np.dtype(np.float64): (1e-12, 1e-10), np.dtype(np.float32): (1e-5, 1e-4)}


def tolerance(dtype):
    """(atol, rtol) for a dtype."""
    return TOLERANCES[np.dtype(dtype)]


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


def assert_close(actual, expected, dtype=np.float64, name="value", atol=None, rtol=None):
    """Raises AssertionError listing the worst mismatches; tolerances default per dtype."""
    default_atol, default_rtol = tolerance(dtype)
    report = mismatch_report(actual, expected, default_atol if atol is None else atol,
                             default_rtol if rtol is None else rtol, name)
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
