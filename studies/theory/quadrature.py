"""Gaussian expectations by quadrature, for the mean-field maps of studies/theory/mean_field.py.

    gaussian_expectation(f, q, n_nodes, rule) ~= E[f(sqrt(q) z)],  z ~ N(0, 1)

Expectations over z ~ N(0, 1) use one of two rules with `n_nodes` evaluations.
Relative errors below are measured against `scipy.integrate.quad` for E[phi^2] and E[phi'^2] of
every hidden activation at 200 nodes (tests/studies/theory/test_mean_field.py and
test_quadrature.py check them):
- `rule="split"` (default): the integral is split at z = 0 and each half-line, truncated at
  |z| = 12 (Gaussian mass beyond: 4e-33), is integrated by Gauss-Legendre with n_nodes/2 nodes.
  z = 0 is where ReLU/Leaky ReLU/ELU have their kink and where the steep part of tanh/sigmoid
  sits at large q, and Legendre nodes cluster at the ends of each half, so the rule resolves
  both: <= 3e-14 for sqrt(q) <= 3, <= 1e-10 up to sqrt(q) = 10 (tanh' is the worst there);
  ReLU and Leaky ReLU 1e-15 at any q.
- `rule="hermite"`: Gauss-Hermite, `numpy.polynomial.hermite_e.hermegauss` (probabilists'
  weights normalized by sqrt(2 pi)). Exact to rounding (1e-15) for identity, ReLU and Leaky
  ReLU (an even node count is symmetric with no node at 0, and each half is a polynomial) and
  spectrally accurate for smooth phi at moderate q (<= 5e-15 for sqrt(q) <= 1), but it does not
  resolve ELU's kink (2e-3 already at sqrt(q) <= 1) nor tanh/sigmoid at large q (tanh: 6e-4 at
  sqrt(q) = 3, 60% at sqrt(q) = 10, where tanh(sqrt(q) z) is nearly a step). Kept as the
  textbook rule and as an independent cross-check.
Two-variable expectations (correlation map, chi_c) nest the same rules, splitting the inner
integral at the kink line of phi(u2); against the ReLU arc-cosine kernels the split rule is
within 1e-13 (relative) for c in [-0.99, 1) and 1e-14 absolute as c -> -1.
At q = 0 expectations are the limit q -> 0+ (`_scale` uses sqrt(q) = 1e-150 there).
"""
import math
from functools import lru_cache

import numpy as np
from numpy.polynomial.hermite_e import hermegauss
from numpy.polynomial.legendre import leggauss

RULES = ("split", "hermite")
N_NODES = 200
Z_MAX = 12.0            # truncation of each half-line in the split rule
_TINY_SCALE = 1e-150    # sqrt(q) used for q = 0: the limit q -> 0+


# ---------------------------------------------------------------- validation
def _check_real(name, value):
    if isinstance(value, (bool, str, bytes)):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number, got {value!r}") from None


def _check_nonneg(name, value):
    v = _check_real(name, value)
    if not math.isfinite(v) or v < 0.0:
        raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
    return v


def _check_rule(rule, n_nodes):
    if rule not in RULES:
        raise ValueError(f"rule must be one of {', '.join(RULES)}; got {rule!r}")
    if isinstance(n_nodes, bool) or not isinstance(n_nodes, (int, np.integer)) \
            or n_nodes < 2 or n_nodes % 2:
        raise ValueError(f"n_nodes must be an even integer >= 2, got {n_nodes!r}")
    return int(n_nodes)


# ---------------------------------------------------------------- quadrature
@lru_cache(maxsize=16)
def _legendre(n):
    """Gauss-Legendre nodes and weights on [-1, 1] (read-only)."""
    x, w = leggauss(n)
    x.setflags(write=False)
    w.setflags(write=False)
    return x, w


def _panels(edges, n):
    """n-point Gauss-Legendre on each panel [edges[k], edges[k+1]] (last axis of `edges`), with
    the N(0, 1) density folded into the weights: sum w f(z) ~= integral of f(z) pdf(z) dz."""
    x, wl = _legendre(n)
    a, b = edges[..., :-1, None], edges[..., 1:, None]
    half = 0.5 * (b - a)
    z = a + half * (x + 1.0)
    w = half * wl * np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    shape = edges.shape[:-1] + (-1,)
    return z.reshape(shape), w.reshape(shape)


@lru_cache(maxsize=16)
def _nodes(rule, n_nodes):
    """(z, w) with sum_i w_i f(z_i) ~= E[f(z)], z ~ N(0, 1); read-only arrays."""
    if rule == "hermite":
        z, w = hermegauss(n_nodes)
        w = w / math.sqrt(2.0 * math.pi)
    else:
        z, w = _panels(np.array([-Z_MAX, 0.0, Z_MAX]), n_nodes // 2)
    z.setflags(write=False)
    w.setflags(write=False)
    return z, w


def gaussian_expectation(f, q=1.0, n_nodes=N_NODES, rule="split"):
    """E[f(sqrt(q) z)] for z ~ N(0, 1) and a vectorized f (q = 0 means the limit q -> 0+)."""
    q = _check_nonneg("q", q)
    n_nodes = _check_rule(rule, n_nodes)
    z, w = _nodes(rule, n_nodes)
    return float(np.dot(w, f(_scale(q) * z)))


def _scale(q):
    return math.sqrt(q) if q > 0.0 else _TINY_SCALE


def _expect(f, q, n_nodes, rule):
    z, w = _nodes(rule, n_nodes)
    return float(np.dot(w, f(_scale(q) * z)))


def _expect_pair(f, g, q, c, n_nodes, rule):
    """E[f(u1) g(u2)], u1 = s z1, u2 = s (c z1 + r z2), s = sqrt(q), r = sqrt(1-c^2), |c| < 1.

    Split rule: the inner z2 integral is split at the kink of g, z2 = -c z1 / r, per outer node;
    the outer z1 integral at 0 (kink of f) and, when c is near +-1, also at +-10 r/|c|, where
    the inner integral (a function of z1 as steep as Phi(c z1 / r)) bends. Hermite rule: tensor
    product of `hermegauss` (does not resolve kinks, see the module docstring).
    """
    s, r = _scale(q), math.sqrt(1.0 - c * c)
    if rule == "hermite":
        z1, w1 = _nodes(rule, n_nodes)
        z2, w2 = z1[None, :], w1[None, :]
    else:
        bend = 10.0 * r / abs(c) if c != 0.0 else Z_MAX
        edges = [-Z_MAX, -bend, 0.0, bend, Z_MAX] if bend < 0.5 * Z_MAX else [-Z_MAX, 0.0, Z_MAX]
        z1, w1 = _panels(np.array(edges), n_nodes // 2)
        t = np.clip(-c * z1 / r, -Z_MAX, Z_MAX)
        inner_edges = np.stack([np.full_like(t, -Z_MAX), t, np.full_like(t, Z_MAX)], axis=1)
        z2, w2 = _panels(inner_edges, n_nodes // 2)
    inner = np.sum(w2 * g(s * (c * z1[:, None] + r * z2)), axis=1)
    return float(np.dot(w1, f(s * z1) * inner))
