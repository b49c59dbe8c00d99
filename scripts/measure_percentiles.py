"""Percentiles of one layer's 512 x 64 float32 activations: gradlab's exact order statistics
(kernels.order_stats, as kernels.layer_stats uses them) against a full NumPy sort, on the
distributions the studies produce. Prints microseconds per call (best of 5 x 100 calls).

    python scripts/measure_percentiles.py
"""
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from kernels.layer_stats import PERCENTILES, _percentiles_into  # noqa: E402


def _percentiles(values, qs):
    """The layer statistics' percentiles (kernels.layer_stats) of all entries of values."""
    out = np.empty(len(qs))
    _percentiles_into(np.ascontiguousarray(values).reshape(-1), np.array(qs, np.float64), out, 0)
    return out


def best_of(fn, calls=100, repeats=5):
    fn()
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - start) / calls)
    return best * 1e6


def main():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(512, 64)).astype(np.float32)
    with np.errstate(over="ignore"):
        saturated = (1.0 / (1.0 + np.exp(-30.0 * z))).astype(np.float32)
    cases = {"normal z": z, "tanh": np.tanh(z), "relu (half zeros)": np.maximum(z, 0),
             "saturated sigmoid": saturated,
             "cauchy": rng.standard_cauchy(z.shape).astype(np.float32)}
    for name, values in cases.items():
        ours = best_of(lambda: _percentiles(values, PERCENTILES))
        full = best_of(lambda: np.percentile(values, PERCENTILES))
        assert np.allclose(_percentiles(values, PERCENTILES), np.percentile(values, PERCENTILES),
                           rtol=1e-12, atol=0)
        print(f"{name:20s} order statistics {ours:7.0f} us   np.percentile {full:7.0f} us   "
              f"x{full / ours:.1f}")


if __name__ == "__main__":
    main()
