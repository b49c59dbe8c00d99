"""kernels/order_stats.py: order_statistics equals a full sort, bitwise, on spread data, heavy
ties (at the ends and inside), saturated, ReLU-like and decade-spread outputs, signed zeros,
infinities, NaN and tiny inputs; proved_order_statistics gives the same bits from a right guess
(its proof) and from a wrong one (its fallback)."""
import numpy as np
import pytest

from kernels.order_stats import _value_counts, order_statistics, order_statistics_reference, \
    proved_order_statistics


def all_ranks(n):
    return np.arange(n, dtype=np.int64)


def cases(dtype):
    rng = np.random.default_rng(0)
    normal = rng.normal(size=5000)
    yield "normal", normal
    yield "relu", np.maximum(normal, 0.0)                    # half exact zeros (the minimum)
    yield "saturated", np.clip(normal * 3, -1.0, 1.0)        # ties at both ends
    yield "inner ties", np.round(normal * 2) / 2             # ties inside bins
    yield "one value", np.full(300, 0.25)
    yield "two values", np.where(normal > 0, 1.0, -2.0)
    yield "heavy tail", rng.standard_cauchy(4000)            # most entries in a few bins
    yield "clustered", np.r_[rng.normal(size=3000) * 1e-6, [1e6, -1e6]]
    yield "single", np.array([3.5])
    yield "pair", np.array([2.0, -1.0])
    yield "fewer entries than buckets", rng.normal(size=700)
    with np.errstate(over="ignore"):
        yield "saturated sigmoid", 1.0 / (1.0 + np.exp(-30.0 * normal))  # decades near 0
    yield "signed zeros", np.r_[np.zeros(50), -np.zeros(50), normal[:20]]
    yield "subnormal and huge", np.r_[normal[:300] * 1e-310, normal[:300] * 1e300]
    yield "with inf", np.r_[normal[:100], np.inf, -np.inf, np.inf]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_equals_a_full_sort_at_every_rank(dtype):
    for name, values in cases(dtype):
        with np.errstate(over="ignore", under="ignore"):  # float32: huge -> inf, tiny -> 0
            values = np.asarray(values, dtype)
        ranks = all_ranks(values.size)
        got = order_statistics(values, ranks)
        expected = order_statistics_reference(values, ranks)
        assert np.array_equal(got, expected), name


def layer_like(name):
    """512 x 64 float32 entries as a layer's buffers hold them."""
    z = np.random.default_rng(1).normal(size=512 * 64).astype(np.float32)
    with np.errstate(over="ignore"):
        return {"normal": z, "relu zeros": np.maximum(z, 0), "negative zeros": -np.maximum(z, 0),
                "near-zero relu": np.where(z > 0, z, np.float32(1e-42)),
                "saturated sigmoid": (1 / (1 + np.exp(-30 * z))).astype(np.float32)}[name]


@pytest.mark.parametrize("name", ["normal", "relu zeros", "negative zeros", "near-zero relu",
                                  "saturated sigmoid"])
def test_percentile_ranks_of_a_large_array(name):
    """The ranks percentiles ask for (pairs of neighbours) on a layer-sized buffer: few kept
    keys, a bucket of zeros answered from its count (a subnormal beside the zeros is not),
    many kept keys; every rank around each percentile, signed zeros bit for bit."""
    values = layer_like(name)
    n = values.size
    ranks = np.array(sorted({int(q / 100 * (n - 1)) + d for q in (2, 15, 50, 85, 98)
                             for d in (-1, 0, 1)}), np.int64)
    got = order_statistics(values, ranks)
    expected = np.sort(values.astype(np.float64), kind="stable")[ranks]
    assert np.array_equal(got, expected)
    assert np.array_equal(np.signbit(got), np.signbit(expected))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_any_nan_gives_nan_everywhere(dtype):
    values = np.array([1.0, np.nan, -3.0, 2.0], dtype)
    got = order_statistics(values, np.array([0, 3], np.int64))
    assert np.isnan(got).all()
    assert np.isnan(order_statistics_reference(values, [0, 3])).all()


def percentile_ranks(n):
    return np.array([r for q in (15, 50, 85, 98) for r in
                     (int(q / 100 * (n - 1)), min(int(q / 100 * (n - 1)) + 1, n - 1))], np.int64)


MONOTONE = {"tanh": np.tanh, "relu": lambda z: np.maximum(z, 0),
            "identity": lambda z: z, "clip": lambda z: np.clip(z, -0.5, 0.5),
            "negate zeros": lambda z: np.where(z <= 0, -np.zeros_like(z), z)}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", sorted(MONOTONE))
def test_a_guess_from_a_monotone_image_is_proved(dtype, name):
    """values = f(pre) for a non-decreasing f: f of pre's order statistics is the answer (ties,
    signed zeros and saturated ends included), returned bit for bit as selection gives it."""
    rng = np.random.default_rng(4)
    for pre in (rng.normal(size=5000), np.round(rng.normal(size=3001) * 4) / 4,
                np.r_[np.zeros(400), -np.zeros(400), rng.normal(size=200)]):
        pre = pre.astype(dtype)
        values = MONOTONE[name](pre).astype(dtype)
        ranks = percentile_ranks(values.size)
        guess = MONOTONE[name](order_statistics(pre, ranks).astype(dtype)).astype(np.float64)
        got = proved_order_statistics(values, guess, ranks)
        expected = order_statistics(values, ranks)
        assert np.array_equal(got, expected) and np.array_equal(np.signbit(got),
                                                                np.signbit(expected)), name


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_wrong_guess_falls_back_to_selection(dtype):
    """A guess one ulp off, a guess from a function that is not monotone (|z|), a +0.0 where
    the answer is -0.0, and NaN entries: every answer is still selection's."""
    rng = np.random.default_rng(5)
    pre = rng.normal(size=4000).astype(dtype)
    ranks = percentile_ranks(pre.size)
    right = order_statistics(pre, ranks)
    off = right.copy()
    off[3] = float(np.nextafter(dtype(off[3]), dtype(np.inf)))
    repeated = right.copy()
    repeated[1] = repeated[0]  # the right answer of rank 0, wrong for rank 1 (counted once)
    assert right[1] != right[0]
    absolute = np.abs(pre)
    zeros = np.r_[-np.zeros(3000), rng.random(1000) + 1].astype(dtype)
    with_nan = pre.copy()
    with_nan[17] = np.nan
    for values, guess in ((pre, off), (pre, repeated), (absolute, np.abs(right)),
                          (zeros, np.zeros(len(ranks))), (with_nan, right)):
        got = proved_order_statistics(values, guess.astype(np.float64), ranks)
        expected = order_statistics(values, ranks)
        assert np.array_equal(got, expected, equal_nan=True)
        assert np.array_equal(np.signbit(got), np.signbit(expected))
    assert np.isnan(proved_order_statistics(with_nan, right, ranks)).all()


def test_a_float64_guess_between_float32_entries_answers_with_the_entry():
    """A guess that is not itself an entry of the float32 values but rounds to the right one
    is proved for that entry and answered with the entry's bits, as selection gives them."""
    values = np.random.default_rng(6).normal(size=3000).astype(np.float32)
    ranks = percentile_ranks(values.size)
    right = order_statistics(values, ranks)
    near = right + np.abs(right) * 2.0 ** -30  # inside half a float32 ulp of the answer
    assert not np.array_equal(near, right)
    assert np.array_equal(proved_order_statistics(values, near, ranks), right)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_value_counts_count_below_and_at_most_at_every_length(dtype):
    """The vector counts (16 entries a step, the rest one by one) at lengths around multiples
    of 16, with bounds between, at and beyond the entries; NaN entries count in neither."""
    rng = np.random.default_rng(7)
    values = np.round(rng.normal(size=1100) * 8).astype(dtype)  # many ties
    values[[5, 40, 1000]] = np.nan
    for n in (0, 1, 15, 16, 17, 31, 32, 33, 47, 1000, 1100):
        head = values[:n]
        for c in (0.5, 1.0, -3.0, np.inf, -np.inf, 100.0):
            c = dtype(c)
            with np.errstate(invalid="ignore"):
                expected = (np.count_nonzero(head < c), np.count_nonzero(head <= c))
            assert _value_counts(head, c) == expected, (n, c)
