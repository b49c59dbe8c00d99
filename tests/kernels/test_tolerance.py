"""kernels/tolerance.py: the rule |actual - expected| <= atol + rtol |expected| per dtype: None
within it, a message naming the worst entries outside it, NaN and shape mismatches, the
AssertionError of assert_close, and the norm-wise relative error."""
import numpy as np
import pytest

from kernels.tolerance import TOLERANCES, assert_close, mismatch_report, relative_error, \
    tolerance


def test_tolerances_per_dtype():
    assert tolerance(np.float64) == TOLERANCES[np.dtype(np.float64)] == (1e-12, 1e-10)
    assert tolerance("float32") == tolerance(np.dtype(np.float32)) == (1e-5, 1e-4)
    with pytest.raises(KeyError):
        tolerance(np.int64)


def test_within_tolerance_is_none_and_the_bound_is_inclusive():
    expected = np.array([0.0, 1.0, -2.0, 1e3])
    atol, rtol = 1e-3, 1e-2
    bound = atol + rtol * np.abs(expected)
    assert mismatch_report(expected, expected, atol, rtol) is None
    # at the bound itself (computed the way the rule does): still within
    edge = expected + bound
    assert np.all(np.abs(edge - expected) - bound <= 0)
    assert mismatch_report(edge, expected, atol, rtol) is None
    assert mismatch_report(expected - bound * 0.999, expected, atol, rtol) is None
    # rtol scales with |expected|, not |actual|
    assert mismatch_report(2.0, 1.0, 0.0, 0.9) is not None
    assert mismatch_report(1.0, 2.0, 0.0, 0.5) is None
    # scalars and lists are accepted
    assert mismatch_report(1.0 + 1e-13, 1.0, *tolerance(np.float64)) is None
    assert mismatch_report([1.0, 2.0], (1.0, 2.0), 0.0, 0.0) is None


def test_message_counts_and_names_the_worst_entries_first():
    expected = np.zeros((3, 4))
    actual = expected.copy()
    actual[0, 1], actual[2, 3], actual[1, 0] = 0.5, 3.0, 0.01  # 0.01 is within atol 0.02
    actual[2, 0] = -1.0
    report = mismatch_report(actual, expected, 0.02, 0.0, name="dW")
    lines = report.splitlines()
    assert lines[0] == "dW: 3 of 12 entries outside atol=0.02 rtol=0"
    assert len(lines) == 4  # the 3 mismatches; the entry within tolerance is not listed
    # worst first, each with its index and both values
    assert lines[1:] == ["  at (2, 3): actual 3.0 expected 0.0",
                         "  at (2, 0): actual -1.0 expected 0.0",
                         "  at (0, 1): actual 0.5 expected 0.0"]


def test_message_lists_at_most_worst_entries():
    actual = np.arange(1.0, 11.0)
    report = mismatch_report(actual, np.zeros(10), 0.0, 0.0, name="v", worst=3)
    lines = report.splitlines()
    assert lines[0].startswith("v: 10 of 10 entries outside")
    assert len(lines) == 4
    assert lines[1] == "  at (9,): actual 10.0 expected 0.0"
    assert lines[3] == "  at (7,): actual 8.0 expected 0.0"


def test_nan_counts_as_a_mismatch_and_is_listed_first():
    expected = np.array([1.0, 2.0, 3.0])
    actual = np.array([1.0, np.nan, 3.5])
    report = mismatch_report(actual, expected, 0.0, 0.1, name="z")
    lines = report.splitlines()
    assert lines[0].startswith("z: 2 of 3 entries outside")
    assert lines[1:] == ["  at (1,): actual nan expected 2.0",  # NaN outranks any excess
                         "  at (2,): actual 3.5 expected 3.0"]
    assert mismatch_report(np.nan, np.nan, 1.0, 1.0) is not None  # NaN never equals NaN
    assert mismatch_report([np.inf], [1.0], 1.0, 1.0) is not None
    assert mismatch_report([1.0], [np.nan], 1.0, 1.0) is not None


def test_scalar_mismatch_message():
    report = mismatch_report(1.5, 1.0, 0.0, 0.0, name="loss")
    assert report == "loss: 1 of 1 entries outside atol=0 rtol=0\n  at (): actual 1.5 expected 1.0"


def test_shape_mismatch_message():
    report = mismatch_report(np.zeros((2, 3)), np.zeros((3, 2)), 1.0, 1.0, name="probs")
    assert report == "probs: shape (2, 3) != expected (3, 2)"
    # no broadcasting: a scalar against an array is a shape mismatch too
    assert mismatch_report(0.0, np.zeros(3), 1.0, 1.0) == "value: shape () != expected (3,)"


def test_assert_close_uses_the_dtype_defaults_and_overrides():
    assert_close(1.0 + 5e-11, 1.0, np.float64)  # rtol 1e-10
    with pytest.raises(AssertionError, match=r"^x: 1 of 1 entries outside atol=1e-12 rtol=1e-10"):
        assert_close(1.0 + 5e-10, 1.0, np.float64, "x")
    assert_close(1.0 + 5e-5, 1.0, np.float32)  # rtol 1e-4
    with pytest.raises(AssertionError, match="atol=1e-05 rtol=0.0001"):
        assert_close(1.0 + 5e-4, 1.0, np.float32)
    with pytest.raises(AssertionError, match="atol=0 rtol=0"):
        assert_close(1.0 + 5e-11, 1.0, np.float64, atol=0.0, rtol=0.0)
    assert_close(1.5, 1.0, np.float64, atol=0.5)  # an explicit atol replaces the default
    with pytest.raises(AssertionError, match="shape"):
        assert_close(np.zeros(2), np.zeros(3))
    with pytest.raises(AssertionError):
        assert_close([np.nan], [np.nan])


def test_relative_error():
    a, e = np.array([3.0, 4.0]), np.array([3.0, 4.0])
    assert relative_error(a, e) == 0.0
    # ||a - e|| / (||a|| + ||e||): ||(0, 1)|| / (5 + ||(3, 3)||)
    assert relative_error(a, [3.0, 3.0]) == pytest.approx(1.0 / (5.0 + np.sqrt(18.0)), rel=1e-15)
    assert relative_error(np.ones((2, 2)), -np.ones(4)) == pytest.approx(1.0, rel=1e-15)
    assert relative_error(np.zeros(3), np.zeros(3)) == 0.0  # no 0/0
    assert isinstance(relative_error(a, e), float)
    # scale-free: the norms of tiny or huge entries neither underflow nor overflow
    for scale in (1e-300, 1e-160, 1e160, 1e300):
        assert relative_error(scale * a, scale * np.array([3.0, 3.0])) == \
            pytest.approx(1.0 / (5.0 + np.sqrt(18.0)), rel=1e-14), scale
        assert relative_error([scale], [0.0]) == 1.0
    # not finite: NaN, so that `relative_error(...) < tol` fails
    for bad in ([np.nan, 1.0], [np.inf, 1.0]):
        assert np.isnan(relative_error(bad, [1.0, 1.0]))
        assert np.isnan(relative_error([1.0, 1.0], bad))
