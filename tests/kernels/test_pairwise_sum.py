"""kernels/pairwise_sum.py: NumPy's pairwise float64 sums to the bit, for every block shape
(below 8 terms, whole and partial 8-lane groups, blocks split in halves), at any offset, from
float32 (cast as summed) and float64 entries, plain and squared deviations, and through
non-finite entries."""
import numpy as np
import pytest

from kernels.pairwise_sum import moments_into, pairwise_sum

SIZES = (1, 2, 7, 8, 9, 15, 16, 17, 63, 127, 128, 129, 255, 256, 257, 1000, 8191, 8192, 8193,
         20000)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sums_are_numpys_float64_pairwise_sums(dtype):
    rng = np.random.default_rng(0)
    values = (rng.standard_normal(20000 + 13) * 10 ** rng.uniform(-3, 3, 20013)).astype(dtype)
    for n in SIZES:
        for lo in (0, 1, 5, 13):
            wide = values[lo:lo + n].astype(np.float64)  # one cast, then NumPy's pairwise sum
            assert pairwise_sum(values, lo, n, 0.0, False) == np.add.reduce(wide), (n, lo)
            centre = float(np.mean(wide))
            deviations = (wide - centre) ** 2
            assert pairwise_sum(values, lo, n, centre, True) == np.add.reduce(deviations), \
                (n, lo)


def test_lanes_are_summed_in_order_not_regrouped():
    """Terms where any other grouping of a lane's adds gives other bits."""
    values = np.tile(np.array([1e16, 1.0, -1e16, 1.0, 3.0, -1.0, 1e-3, 7.0]), 16)
    values[::9] = 1.0 / 3.0
    for n in (8, 16, 24, 64, 127, 128):
        assert pairwise_sum(values, 0, n, 0.0, False) == np.add.reduce(values[:n]), n


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_moments_are_numpys_mean_and_std(dtype):
    rng = np.random.default_rng(1)
    for n in SIZES + (32768, 40000):
        values = (rng.standard_normal(n) * 3 + 1).astype(dtype)
        out = np.empty(3)
        moments_into(values, out, 1)
        assert out[1] == np.mean(values, dtype=np.float64), n
        assert out[2] == np.std(values, dtype=np.float64), n


def test_non_finite_entries_propagate_as_in_numpy():
    for bad in (np.nan, np.inf, -np.inf):
        values = np.arange(300, dtype=np.float32)
        values[137] = bad
        out = np.empty(2)
        with np.errstate(invalid="ignore"):
            moments_into(values, out, 0)
            expected = (np.mean(values, dtype=np.float64), np.std(values, dtype=np.float64))
        np.testing.assert_array_equal(out, expected)
