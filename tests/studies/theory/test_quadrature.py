"""studies/theory/quadrature.py: the Gauss rules' polynomial exactness, the node sets of both
rules, Gaussian expectations E[f(sqrt(q) z)] against closed forms and scipy.integrate.quad,
the q -> 0+ limit, pair expectations of correlated Gaussians against closed forms, and the
argument checks. (test_mean_field.py covers the mean-field maps built on these.)"""
import math

import numpy as np
import pytest
from scipy import integrate

from kernels.tolerance import assert_close
from studies.theory import quadrature as Q

RULES = Q.RULES


def double_factorial(k):
    return math.prod(range(k, 0, -2)) if k > 0 else 1


def gaussian_moment(k):
    """E[z^k], z ~ N(0, 1): (k-1)!! for even k, 0 for odd k."""
    return 0.0 if k % 2 else float(double_factorial(k - 1))


def quad_expectation(f, q):
    """E[f(sqrt(q) z)] by adaptive quadrature on each half-line at epsrel 1e-13."""
    s = math.sqrt(q)

    def integrand(z):
        return f(s * z) * math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)

    return sum(integrate.quad(integrand, a, b, epsabs=0.0, epsrel=1e-13, limit=200)[0]
               for a, b in [(-np.inf, 0.0), (0.0, np.inf)])


# ---------------------------------------------------------------- the rules themselves
@pytest.mark.parametrize("n", [1, 2, 5, 12])
def test_gauss_legendre_is_exact_up_to_degree_2n_minus_1(n):
    x, w = Q._legendre(n)
    for k in range(2 * n):
        exact = 0.0 if k % 2 else 2.0 / (k + 1)
        assert_close(np.dot(w, x ** k), exact, np.float64, f"int x^{k}, n={n}", rtol=1e-14,
                     atol=1e-15)
    # degree 2n misses by the rule's error term 2^(2n+1) (n!)^4 / ((2n+1) ((2n)!)^2)
    error = 2.0 ** (2 * n + 1) * math.factorial(n) ** 4 / \
        ((2 * n + 1) * math.factorial(2 * n) ** 2)
    assert_close(2.0 / (2 * n + 1) - np.dot(w, x ** (2 * n)), error, np.float64,
                 f"error term, n={n}", rtol=1e-6, atol=1e-15)


@pytest.mark.parametrize("n", [2, 4, 6, 10])
def test_gauss_hermite_is_exact_up_to_degree_2n_minus_1(n):
    z, w = Q._nodes("hermite", n)
    for k in range(2 * n):
        rounding = 1e-14 * np.dot(w, np.abs(z) ** k)  # terms of size w|z|^k cancel for odd k
        assert_close(np.dot(w, z ** k), gaussian_moment(k), np.float64, f"E z^{k}, {n} nodes",
                     rtol=1e-13, atol=rounding)
    # degree 2n misses by ||He_n||^2 = n! (monic probabilists' Hermite, normalized weight)
    assert_close(gaussian_moment(2 * n) - np.dot(w, z ** (2 * n)), math.factorial(n),
                 np.float64, f"error term, {n} nodes", rtol=1e-10)


def test_panels_fold_the_density_into_legendre_weights():
    """sum w g(z)/pdf(z) over the panels is plain Gauss-Legendre of g: exact for polynomials of
    degree <= 2n - 1 on every panel, for a batch of panel sets (the inner integrals' shape)."""
    n = 4
    edges = np.array([[-3.0, -1.0, 0.5, 2.0], [0.0, 1.0, 2.0, 4.0]])
    z, w = Q._panels(edges, n)
    assert z.shape == w.shape == (2, 3 * n)
    pdf = np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    for k in range(2 * n):
        exact = (edges[:, -1] ** (k + 1) - edges[:, 0] ** (k + 1)) / (k + 1)
        assert_close(np.sum(w / pdf * z ** k, axis=1), exact, np.float64, f"int z^{k}")
    # nodes inside their panels, weights positive
    assert np.all(w > 0) and np.all(z > edges[:, :1]) and np.all(z < edges[:, -1:])


@pytest.mark.parametrize("rule", RULES)
def test_node_sets(rule):
    z, w = Q._nodes(rule, Q.N_NODES)
    assert z.shape == w.shape == (Q.N_NODES,)
    assert np.all(w > 0)
    # total mass 1 (split: the N(0,1) mass beyond |z| = 12 is 3.6e-33)
    assert_close(w.sum(), 1.0, np.float64, "sum of weights", rtol=1e-14, atol=0.0)
    # symmetric about 0 with no node at 0: odd moments vanish, kinks at 0 are not sampled
    assert_close(np.sort(z), -np.sort(z)[::-1], np.float64, "symmetric nodes", atol=1e-13)
    assert np.min(np.abs(z)) > 0.0
    if rule == "split":
        assert np.max(np.abs(z)) < Q.Z_MAX
    with pytest.raises(ValueError):  # read-only: the cached arrays cannot be corrupted
        z[0] = 1.0
    assert Q._nodes(rule, Q.N_NODES)[0] is z


# ---------------------------------------------------------------- E[f(sqrt(q) z)]
@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("q", [0.01, 0.7, 2.5, 100.0])
def test_moments_of_h(q, rule):
    """E[h^k] = q^(k/2) (k-1)!! for h ~ N(0, q), k <= 10: exact for the Hermite rule (degree 399),
    to rounding for the split rule (Legendre on the truncated half-lines)."""
    for k in range(11):
        got = Q.gaussian_expectation(lambda h: h ** k, q, rule=rule)
        expected = q ** (k / 2) * gaussian_moment(k)
        assert_close(got, expected, np.float64, f"E[h^{k}]", rtol=1e-13,
                     atol=1e-14 * q ** (k / 2) * gaussian_moment(k + (k % 2)))


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("q", [0.3, 1.0, 4.0])
def test_smooth_closed_forms(q, rule):
    """E[exp(a h)] = exp(a^2 q / 2), E[cos h] = exp(-q/2), E[h sin h] = q exp(-q/2)."""
    for a in (1.0, -0.5, 2.0):
        assert_close(Q.gaussian_expectation(lambda h: np.exp(a * h), q, rule=rule),
                     math.exp(a * a * q / 2), np.float64, f"E exp({a} h)", rtol=1e-13)
    assert_close(Q.gaussian_expectation(np.cos, q, rule=rule), math.exp(-q / 2), np.float64,
                 "E cos h", rtol=1e-13)
    assert_close(Q.gaussian_expectation(lambda h: h * np.sin(h), q, rule=rule),
                 q * math.exp(-q / 2), np.float64, "E h sin h", rtol=1e-13)


@pytest.mark.parametrize("q", [0.2, 2.0, 9.0])
def test_kinks_at_zero_split_rule(q):
    """E|h| = sqrt(2q/pi), E[relu(h)] = sqrt(q/(2 pi)), P(h > 0) = 1/2: the split rule puts
    a panel edge at the kink."""
    assert_close(Q.gaussian_expectation(np.abs, q), math.sqrt(2 * q / math.pi), np.float64,
                 "E|h|", rtol=1e-14)
    assert_close(Q.gaussian_expectation(lambda h: np.maximum(h, 0.0), q),
                 math.sqrt(q / (2 * math.pi)), np.float64, "E relu", rtol=1e-14)
    assert_close(Q.gaussian_expectation(lambda h: (h > 0).astype(float), q), 0.5, np.float64,
                 "P(h > 0)", rtol=1e-14)


@pytest.mark.parametrize("rule, sqrt_q, rtol", [
    ("split", 0.3, 3e-14), ("split", 1.0, 3e-14), ("split", 3.0, 3e-14), ("split", 10.0, 1e-10),
    ("hermite", 0.3, 5e-15), ("hermite", 1.0, 5e-15)])
def test_tanh_squared_against_scipy_quad(rule, sqrt_q, rtol):
    """E[tanh(h)^2] at the accuracy the module docstring states for each rule."""
    q = sqrt_q ** 2
    ref = quad_expectation(lambda h: math.tanh(h) ** 2, q)
    got = Q.gaussian_expectation(lambda h: np.tanh(h) ** 2, q, rule=rule)
    assert_close(got, ref, np.float64, f"E tanh^2, {rule}, sqrt(q)={sqrt_q}", rtol=rtol,
                 atol=0.0)


def test_hermite_rule_loses_tanh_at_large_q():
    """The documented weakness of Gauss-Hermite: at sqrt(q) = 10, tanh(sqrt(q) z) is nearly a
    step and E[tanh'(h)^2] a narrow peak (the docstring: 60% off); the split rule keeps 1e-10."""
    q = 100.0
    ref = quad_expectation(lambda h: (1 - math.tanh(h) ** 2) ** 2, q)
    hermite = Q.gaussian_expectation(lambda h: (1 - np.tanh(h) ** 2) ** 2, q, rule="hermite")
    split = Q.gaussian_expectation(lambda h: (1 - np.tanh(h) ** 2) ** 2, q)
    assert abs(hermite / ref - 1) > 0.1
    assert_close(split, ref, np.float64, "split at sqrt(q) = 10", rtol=1e-10, atol=0.0)


@pytest.mark.parametrize("rule", RULES)
def test_q_zero_is_the_limit_from_above(rule):
    """q = 0 evaluates f at +-1e-150 z: f(0) for continuous f, and the average of the one-sided
    limits at a jump (P(h > 0) -> 1/2, not 0)."""
    assert_close(Q.gaussian_expectation(np.cos, 0.0, rule=rule), 1.0, np.float64, "E cos 0")
    assert Q.gaussian_expectation(lambda h: h * h, 0, rule=rule) < 1e-290
    assert_close(Q.gaussian_expectation(lambda h: (h > 0).astype(float), 0.0, rule=rule), 0.5,
                 np.float64, "P(h > 0) at q = 0")
    assert_close(Q.gaussian_expectation(np.sign, 0.0, rule=rule), 0.0, np.float64, "E sign")


def test_n_nodes_and_defaults():
    f = lambda h: np.tanh(h) ** 2  # noqa: E731
    default = Q.gaussian_expectation(f)
    assert default == Q.gaussian_expectation(f, 1.0, Q.N_NODES, "split")
    assert default == Q._expect(f, 1.0, Q.N_NODES, "split")
    assert Q.gaussian_expectation(f, 1.0, np.int64(200)) == default  # NumPy integers accepted
    # fewer nodes: close, not the same bits
    coarse = Q.gaussian_expectation(f, 1.0, 40)
    assert coarse != default and abs(coarse - default) < 1e-6


# ---------------------------------------------------------------- pairs
def arc_cosine_1(q, c):
    """E[relu(u1) relu(u2)] for (u1, u2) ~ N(0, q [[1, c], [c, 1]])."""
    return q / (2 * math.pi) * (math.sqrt(1 - c * c) + (math.pi - math.acos(c)) * c)


CORRELATIONS = [-0.99, -0.5, 0.0, 0.3, 0.9, 0.999]


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("c", CORRELATIONS)
def test_pair_polynomial_moments(c, rule):
    """E[u1 u2] = c q, E[u1^2 u2^2] = q^2 (1 + 2 c^2), E[u1^3 u2] = 3 c q^2, E[u1^2 u2] = 0,
    E[u1^2] = q (Isserlis)."""
    q = 1.7
    n = Q.N_NODES
    cases = [(lambda h: h, lambda h: h, c * q, q),
             (lambda h: h ** 2, lambda h: h ** 2, q * q * (1 + 2 * c * c), q * q),
             (lambda h: h ** 3, lambda h: h, 3 * c * q * q, q * q),
             (lambda h: h ** 2, lambda h: h, 0.0, q ** 1.5),
             (lambda h: h ** 2, np.ones_like, q, q)]
    for k, (f, g, expected, scale) in enumerate(cases):
        assert_close(Q._expect_pair(f, g, q, c, n, rule), expected, np.float64,
                     f"pair moment {k}, c={c}", rtol=1e-12, atol=1e-13 * scale)


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("c", CORRELATIONS)
def test_pair_exponential_closed_form(c, rule):
    """E[exp(a u1 + b u2)] = exp(q (a^2 + b^2 + 2 a b c) / 2)."""
    q, a, b = 0.8, 1.0, -0.6
    got = Q._expect_pair(lambda h: np.exp(a * h), lambda h: np.exp(b * h), q, c, Q.N_NODES, rule)
    assert_close(got, math.exp(q * (a * a + b * b + 2 * a * b * c) / 2), np.float64,
                 f"E exp, c={c}", rtol=1e-12)


@pytest.mark.parametrize("c", CORRELATIONS)
def test_pair_kinks_split_rule(c):
    """The split rule against the arc-cosine kernel (documented: 1e-13 relative for c in
    [-0.99, 1), 1e-14 absolute as c -> -1) and the orthant probability
    P(u1 > 0, u2 > 0) = 1/4 + arcsin(c)/(2 pi) (jumps on both kink lines)."""
    q = 2.0
    relu = lambda h: np.maximum(h, 0.0)  # noqa: E731
    step = lambda h: (h > 0).astype(float)  # noqa: E731
    assert_close(Q._expect_pair(relu, relu, q, c, Q.N_NODES, "split"), arc_cosine_1(q, c),
                 np.float64, f"arc-cosine, c={c}", rtol=1e-13, atol=1e-14)
    assert_close(Q._expect_pair(step, step, q, c, Q.N_NODES, "split"),
                 0.25 + math.asin(c) / (2 * math.pi), np.float64, f"orthant, c={c}",
                 rtol=1e-13, atol=1e-14)


def test_pair_at_zero_correlation_factorizes():
    f, g = np.tanh, lambda h: np.exp(-h * h)
    q = 1.3
    for rule in RULES:
        expected = Q.gaussian_expectation(lambda h: np.tanh(h) ** 2, q, rule=rule) * \
            Q.gaussian_expectation(g, q, rule=rule)
        got = Q._expect_pair(lambda h: f(h) ** 2, g, q, 0.0, Q.N_NODES, rule)
        assert_close(got, expected, np.float64, f"independent, {rule}", rtol=1e-13)


# ---------------------------------------------------------------- argument checks
@pytest.mark.parametrize("kwargs, argument", [
    ({"q": -1e-3}, "q"), ({"q": float("nan")}, "q"), ({"q": float("inf")}, "q"),
    ({"q": True}, "q"), ({"q": "1.0"}, "q"), ({"q": None}, "q"), ({"q": [1.0]}, "q"),
    ({"n_nodes": 0}, "n_nodes"), ({"n_nodes": 3}, "n_nodes"), ({"n_nodes": 200.0}, "n_nodes"),
    ({"n_nodes": True}, "n_nodes"), ({"n_nodes": "200"}, "n_nodes"), ({"n_nodes": -2}, "n_nodes"),
    ({"rule": "Split"}, "rule"), ({"rule": None}, "rule"), ({"rule": "legendre"}, "rule"),
])
def test_bad_arguments_raise_value_error_naming_them(kwargs, argument):
    with pytest.raises(ValueError, match=rf"^{argument} must"):
        Q.gaussian_expectation(np.cos, **kwargs)
