"""Lanczos and Hutchinson (kernels.spectrum) on symmetric matrices with known spectra."""
import numpy as np
import pytest

from kernels.spectrum import hutchinson_trace, lanczos_top


def random_symmetric(rng, eigenvalues):
    q, _ = np.linalg.qr(rng.normal(size=(len(eigenvalues), len(eigenvalues))))
    return (q * eigenvalues) @ q.T


def test_lanczos_finds_the_top_eigenvalues():
    rng = np.random.default_rng(0)
    lam = np.concatenate([[10.0, 7.0, 6.5], rng.uniform(-3.0, 3.0, 197)])
    a = random_symmetric(rng, lam)
    result = lanczos_top(lambda v: a @ v, 200, 3, tol=1e-10, max_iter=200, seed=1)
    assert result.converged
    np.testing.assert_allclose(result.values, [10.0, 7.0, 6.5], rtol=1e-9)
    for i in range(3):
        u = result.vectors[:, i]
        assert np.isclose(np.linalg.norm(u), 1.0)
        assert np.linalg.norm(a @ u - result.values[i] * u) <= 1e-9 * 10 + result.residuals[i]


def test_largest_algebraic_not_largest_magnitude():
    rng = np.random.default_rng(1)
    a = random_symmetric(rng, np.array([-50.0, -20.0, 3.0, 2.0, 1.0, 0.5]))
    result = lanczos_top(lambda v: a @ v, 6, 2, tol=1e-12, max_iter=6, seed=0)
    np.testing.assert_allclose(result.values, [3.0, 2.0], rtol=1e-10)


def test_an_invariant_krylov_space_ends_the_run_with_each_distinct_eigenvalue_once():
    a = np.diag([2.0, 2.0, 2.0, 1.0, 0.0, 0.0])
    result = lanczos_top(lambda v: a @ v, 6, 3, tol=1e-12, max_iter=6, seed=0)
    assert result.converged and result.iterations == 3
    np.testing.assert_allclose(result.values, [2.0, 1.0, 0.0], atol=1e-12)


def test_a_breakdown_before_k_values_restarts():
    """The Krylov space of diag(3, 3, 1, 1) holds two distinct values; k = 3 needs a restart."""
    a = np.diag([3.0, 3.0, 1.0, 1.0])
    result = lanczos_top(lambda v: a @ v, 4, 3, tol=1e-12, max_iter=4, seed=0)
    np.testing.assert_allclose(result.values, [3.0, 3.0, 1.0], atol=1e-12)


def test_lanczos_is_seeded_and_capped():
    rng = np.random.default_rng(2)
    a = random_symmetric(rng, rng.normal(size=50))
    run = lambda seed, cap: lanczos_top(lambda v: a @ v, 50, 1, 1e-14, cap, seed)  # noqa: E731
    assert run(3, 50).values[0] == run(3, 50).values[0]
    capped = run(3, 4)
    assert capped.iterations == 4 and not capped.converged
    with pytest.raises(ValueError, match="max_iter: expected at least k"):
        lanczos_top(lambda v: a @ v, 50, 5, 1e-8, 3, 0)
    with pytest.raises(ValueError, match="tol: expected a positive number"):
        lanczos_top(lambda v: a @ v, 50, 1, 0.0, 3, 0)


def test_hutchinson_is_exact_on_diagonal_operators():
    """v^T D v = tr(D) for every Rademacher v: the estimate is exact, its error zero."""
    d = np.arange(1.0, 21.0)
    estimate, error = hutchinson_trace(lambda v: d * v, 20, samples=5, seed=0)
    assert estimate == pytest.approx(d.sum(), rel=1e-14) and error == pytest.approx(0.0, abs=1e-12)


def test_hutchinson_estimate_and_error_on_a_dense_matrix():
    rng = np.random.default_rng(3)
    a = random_symmetric(rng, rng.normal(size=30))
    estimate, error = hutchinson_trace(lambda v: a @ v, 30, samples=2000, seed=4)
    assert abs(estimate - np.trace(a)) < 4 * error
    # Var(v^T A v) = 2 sum_{i != j} A_ij^2 for Rademacher v
    off = (a ** 2).sum() - (np.diag(a) ** 2).sum()
    assert error == pytest.approx(np.sqrt(2 * off / 2000), rel=0.1)
    assert hutchinson_trace(lambda v: a @ v, 30, 50, seed=4) == \
        hutchinson_trace(lambda v: a @ v, 30, 50, seed=4)
