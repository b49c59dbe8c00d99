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
    flat = np.argsort(np.where(np.isnan(excess), np.inf, excess), axis=None)[::-1][:worst]
    lines = [f"{name}: {int(bad.sum())} of {a.size} entries outside atol={atol:g} rtol={rtol:g}"]
    for i in flat:
        idx = np.unravel_index(i, a.shape) if a.ndim else ()
        lines.append(f"  at {idx}: actual {a[idx]!r} expected {e[idx]!r}")
    return "\n".join(lines)


def assert_close(actual, expected, dtype=np.float64, name="value", atol=None, rtol=None):
    """Raises AssertionError listing the worst mismatches; tolerances default per dtype."""
    default_atol, default_rtol = tolerance(dtype)
    report = mismatch_report(actual, expected, default_atol if atol is None else atol,
                             default_rtol if rtol is None else rtol, name)
    if report:
        raise AssertionError(report)


def relative_error(actual, expected):
    """||a - e|| / max(||a|| + ||e||, tiny): the norm-wise relative error of two arrays."""
    a = np.asarray(actual, np.float64).ravel()
    e = np.asarray(expected, np.float64).ravel()
    denom = max(np.linalg.norm(a) + np.linalg.norm(e), np.finfo(np.float64).tiny)
    return float(np.linalg.norm(a - e) / denom)
