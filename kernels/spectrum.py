"""Hessian spectrum and trace estimators over a matrix-free symmetric operator v -> Hv.

- `lanczos_top`: the k largest (algebraic) eigenvalues by Lanczos with full
  reorthogonalization (two Gram-Schmidt passes per step). After m steps, with T_m = S diag(theta)
  S^T, the Ritz pair (theta_i, Q_m s_i) has residual ||H Q_m s_i - theta_i Q_m s_i|| =
  |beta_m s_mi|; the run stops when the k top residuals are <= tol max(|theta_i|, tiny), when
  the Krylov space is invariant (beta_m ~ 0: then exact), or after max_iter products.
- `hutchinson_trace`: tr(H) ~ (1/m) sum_j v_j^T H v_j over Rademacher v_j (E[v v^T] = I), with
  the standard error std_j(v_j^T H v_j, ddof=1)/sqrt(m).
Both draw from np.random.default_rng(seed): repeated calls give the same numbers.
"""
from dataclasses import dataclass

import numpy as np

from .validation import check_positive, check_positive_int


@dataclass
class LanczosResult:
    values: np.ndarray     # the k top Ritz values, descending
    vectors: np.ndarray    # (n, k) their Ritz vectors (unit norm)
    residuals: np.ndarray  # |beta_m s_mi|: ||H u_i - theta_i u_i|| for each Ritz pair
    iterations: int        # Hv products
    converged: bool


def lanczos_top(matvec, n, k, tol=1e-8, max_iter=300, seed=0):
    """LanczosResult of the k largest eigenvalues of the symmetric n x n operator `matvec`.
    A breakdown (invariant Krylov space) before k Ritz values restarts from a fresh random
    vector orthogonal to the basis; after k it ends the run (exact Ritz values, each distinct
    eigenvalue once)."""
    from scipy.linalg import eigh_tridiagonal
    k = check_positive_int("k", k)
    tol = check_positive("tol", tol)
    max_iter = min(check_positive_int("max_iter", max_iter), n)
    if max_iter < k:
        raise ValueError(f"max_iter: expected at least k = {k}, got {max_iter}")
    rng = np.random.default_rng(seed)
    basis = np.zeros((min(max_iter, 32), n))
    basis[0] = _unit(rng.standard_normal(n))
    alpha, beta = np.zeros(max_iter), np.zeros(max_iter)
    tiny = np.finfo(np.float64).tiny
    for m in range(max_iter):
        size = m + 1
        w = np.array(matvec(basis[m]), np.float64)
        alpha[m] = basis[m] @ w
        for _ in range(2):
            w -= basis[:size].T @ (basis[:size] @ w)
        beta[m] = np.linalg.norm(w)
        invariant = beta[m] <= 1e-12 * max(np.abs(alpha[:size]).max(), tiny)
        if size >= k:
            theta, s = eigh_tridiagonal(alpha[:size], beta[:size - 1])
            top = np.argsort(theta)[::-1][:k]
            residuals = 0.0 * theta[top] if invariant else np.abs(beta[m] * s[-1, top])
            converged = bool(np.all(residuals <= tol * np.maximum(np.abs(theta[top]), tiny)))
            if converged or size == max_iter:
                return LanczosResult(theta[top].copy(), basis[:size].T @ s[:, top], residuals,
                                     size, converged)
        if size == len(basis):
            basis = np.concatenate([basis, np.zeros((min(len(basis), max_iter - size), n))])
        if invariant:  # restart orthogonal to the basis (only before k Ritz values)
            beta[m] = 0.0
            w = rng.standard_normal(n)
            for _ in range(2):
                w -= basis[:size].T @ (basis[:size] @ w)
            basis[size] = _unit(w)
        else:
            basis[size] = w / beta[m]
    raise AssertionError("unreachable: the loop returns at max_iter")


def _unit(v):
    return v / np.linalg.norm(v)


def hutchinson_trace(matvec, n, samples=100, seed=0):
    """(estimate, standard error) of tr(H) from `samples` Rademacher probes."""
    samples = check_positive_int("samples", samples)
    rng = np.random.default_rng(seed)
    quad = np.empty(samples)
    for j in range(samples):
        v = rng.integers(0, 2, n).astype(np.float64) * 2.0 - 1.0
        quad[j] = v @ np.asarray(matvec(v), np.float64)
    error = quad.std(ddof=1) / np.sqrt(samples) if samples > 1 else np.nan
    return float(quad.mean()), float(error)
