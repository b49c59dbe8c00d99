"""Mean-field signal propagation in deep random MLPs (Poole et al. 2016; Schoenholz et al. 2017).

For a network with `W_ij ~ N(0, sigma_w2 / n)`, `b_i ~ N(0, sigma_b2)`, activation `phi`,
`z, z1, z2 ~ N(0, 1)` independent, and in the limit of infinite width:

    length map       q_l = sigma_w2 E[phi(sqrt(q_{l-1}) z)^2] + sigma_b2      -> fixed point q*
    correlation map  c_l = (sigma_w2 E[phi(u1) phi(u2)] + sigma_b2) / q*     -> fixed point c*
                     u1 = sqrt(q*) z1,  u2 = sqrt(q*) (c_{l-1} z1 + sqrt(1 - c_{l-1}^2) z2)
    chi_1            = sigma_w2 E[phi'(sqrt(q*) z)^2]

`chi_1` is the factor by which the backpropagated gradient *variance* (the mean squared entry of
delta = dL/dh, equivalently its squared norm at equal widths) is multiplied per layer going
backwards: vanishing below 1, exploding above 1, critical at 1 (the order-to-chaos line).
ReLU: `chi_1 = sigma_w2 / 2`, so He init (`sigma_w2 = 2`) is critical; tanh: a critical
`sigma_w2 >= 1` for every `sigma_b2` (exactly 1 at `sigma_b2 = 0`, about 1.76 at 0.05).

phi and phi' are `activations.forward_reference` / `derivative_reference` (NumPy), so every
hidden activation of `activations.ACTIVATIONS` works; `param` is the Leaky ReLU slope or the ELU
alpha (registry default when None).

Expectations over z ~ N(0, 1) use the quadrature rules of studies/theory/quadrature.py: `rule`
("split", the default, or "hermite") and `n_nodes` (N_NODES = 200); their accuracy per
activation is documented there.
At q = 0 expectations are the limit q -> 0+ (for ReLU, chi_1 = sigma_w2/2 there as well).
"""
import math

import numpy as np
from scipy.optimize import brentq

from kernels.activations import ACTIVATIONS, derivative_reference, forward_reference
from studies.theory.quadrature import (
    N_NODES,
    RULES,
    Z_MAX,
    _check_nonneg,
    _check_real,
    _check_rule,
    _expect,
    _expect_pair,
    _scale,
    gaussian_expectation,
)

__all__ = ["HIDDEN_ACTIVATIONS", "RULES", "N_NODES", "Z_MAX", "Q_MAX", "gaussian_expectation",
           "length_map", "correlation_map", "fixed_point_q", "fixed_point_c", "chi_1",
           "critical_sigma_w2", "predicted_gradient_ratio", "depth_scales", "correlation_slope",
           "trainable_depth"]

HIDDEN_ACTIVATIONS = tuple(name for name, a in ACTIVATIONS.items() if a.hidden)
Q_MAX = 1e30            # a length beyond this counts as divergence
# Positively homogeneous of degree 1 (phi(a x) = a phi(x), a > 0): phi' does not depend on q.
_HOMOGENEOUS = ("identity", "relu", "leaky_relu")


class _Diverged(Exception):
    """A map left its domain (q > Q_MAX or not finite) while looking for its fixed point."""


# ---------------------------------------------------------------- validation
def _check_positive(name, value):
    v = _check_nonneg(name, value)
    if v == 0.0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return v


def _check_correlation(name, value):
    v = _check_real(name, value)
    if not -1.0 <= v <= 1.0:
        raise ValueError(f"{name} must be in [-1, 1], got {value!r}")
    return v


def _check_count(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return int(value)


def _check_activation(activation, param):
    if activation not in HIDDEN_ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(HIDDEN_ACTIVATIONS)}; "
                         f"got {activation!r}")
    if param is None:
        return ACTIVATIONS[activation].default_param
    p = _check_real("param", param)
    if not math.isfinite(p):
        raise ValueError(f"param must be finite, got {param!r}")
    return p


def _phi(activation, p):
    return lambda h: forward_reference(activation, h, p)


def _dphi(activation, p):
    return lambda h: derivative_reference(activation, h, p)


# ---------------------------------------------------------------- maps
def length_map(q, sigma_w2, sigma_b2, activation, param=None, n_nodes=N_NODES, rule="split"):
    """q_l = sigma_w2 E[phi(sqrt(q) z)^2] + sigma_b2: the next layer's pre-activation variance."""
    q = _check_nonneg("q", q)
    sigma_w2 = _check_nonneg("sigma_w2", sigma_w2)
    sigma_b2 = _check_nonneg("sigma_b2", sigma_b2)
    p = _check_activation(activation, param)
    n_nodes = _check_rule(rule, n_nodes)
    return _length_map(q, sigma_w2, sigma_b2, activation, p, n_nodes, rule)


def _length_map(q, sigma_w2, sigma_b2, activation, p, n_nodes, rule):
    phi = _phi(activation, p)
    return sigma_w2 * _expect(lambda h: phi(h) ** 2, q, n_nodes, rule) + sigma_b2


def correlation_map(c, q, sigma_w2, sigma_b2, activation, param=None, n_nodes=N_NODES,
                    rule="split"):
    """c_l = (sigma_w2 E[phi(u1) phi(u2)] + sigma_b2) / q: next correlation of two inputs.

    u1, u2 have variance q and correlation c (pass q = q*, so that c = 1 maps to 1).
    """
    c = _check_correlation("c", c)
    q = _check_positive("q", q)
    sigma_w2 = _check_nonneg("sigma_w2", sigma_w2)
    sigma_b2 = _check_nonneg("sigma_b2", sigma_b2)
    p = _check_activation(activation, param)
    n_nodes = _check_rule(rule, n_nodes)
    return _correlation_map(c, q, sigma_w2, sigma_b2, activation, p, n_nodes, rule)


def _correlation_map(c, q, sigma_w2, sigma_b2, activation, p, n_nodes, rule):
    phi = _phi(activation, p)
    if c == 1.0:
        e = _expect(lambda h: phi(h) ** 2, q, n_nodes, rule)
    elif c == -1.0:
        e = _expect(lambda h: phi(h) * phi(-h), q, n_nodes, rule)
    else:
        e = _expect_pair(phi, phi, q, c, n_nodes, rule)
    return (sigma_w2 * e + sigma_b2) / q


# ---------------------------------------------------------------- fixed points
def _attracting_fixed_point(fmap, x0, lower, upper, tol, max_iter, upper_diverges):
    """Fixed point of fmap on [lower, upper] reached by iterating from x0.

    Plain iteration picks the basin; a bracketed root solve of fmap(x) - x (brentq), walking
    from the last iterate in the direction the iteration moves, then polishes it, so a slowly
    contracting map (near criticality) costs tens of evaluations instead of thousands. A
    boundary that the walk reaches without a sign change is the answer (q* = 0, c* = 1), except
    an upper boundary with `upper_diverges`, which raises _Diverged.
    """
    def check(v):
        if not math.isfinite(v) or (upper_diverges and v > upper):
            raise _Diverged
        return min(max(v, lower), upper)

    x = check(x0)
    for _ in range(max_iter):
        x_new = check(fmap(x))
        done = abs(x_new - x) <= tol * max(1.0, abs(x_new))
        x = x_new
        if done:
            break

    def g(y):
        return check(fmap(y)) - y

    gx = g(x)
    if gx == 0.0:
        return x
    d = 1.0 if gx > 0 else -1.0
    bound = upper if d > 0 else lower
    a, step = x, abs(gx)
    for _ in range(3000):
        # step doubles, but never covers more than half of what is left to a finite boundary
        b = a + d * step
        if not upper_diverges or d < 0:
            b = a + d * min(step, 0.5 * abs(bound - a))
        elif b > upper:
            raise _Diverged
        gb = g(b)
        if gb == 0.0:
            return b
        if (gb > 0) != (d > 0):
            return brentq(g, min(a, b), max(a, b), xtol=tol * max(abs(a), abs(b), 1e-300),
                          rtol=4 * np.finfo(float).eps)
        if a == b or abs(bound - b) <= 1e-300:
            return bound
        a, step = b, 2.0 * step
    return bound


def _homogeneous_moment(activation, p):
    """E[phi(z)^2] = E[phi'(z)^2] = (slope_+^2 + slope_-^2) / 2 for identity, ReLU, Leaky ReLU."""
    slope_pos, slope_neg = derivative_reference(activation, np.array([1.0, -1.0]), p)
    return 0.5 * (float(slope_pos) ** 2 + float(slope_neg) ** 2)


def fixed_point_q(sigma_w2, sigma_b2, activation, q0=1.0, tol=1e-12, max_iter=200, param=None,
                  n_nodes=N_NODES, rule="split"):
    """q*: the fixed point of the length map reached from q0 (relative accuracy ~tol).

    Identity, ReLU and Leaky ReLU have a linear length map, q -> sigma_w2 m q + sigma_b2 with
    m = E[phi(z)^2] (1, 1/2, (1+slope^2)/2), solved in closed form: q* = sigma_b2/(1 - sigma_w2 m)
    for sigma_w2 m < 1; at sigma_w2 m = 1 with sigma_b2 = 0 (ReLU: sigma_w2 = 2) every q is a
    fixed point and q0 is returned; otherwise q grows without bound and ValueError is raised.
    Other activations: iteration from q0 (at most max_iter steps) and a bracketed polish, see
    `_attracting_fixed_point`; ValueError if q grows past 1e30 (no finite fixed point).
    """
    sigma_w2 = _check_nonneg("sigma_w2", sigma_w2)
    sigma_b2 = _check_nonneg("sigma_b2", sigma_b2)
    p = _check_activation(activation, param)
    q0 = _check_nonneg("q0", q0)
    tol = _check_positive("tol", tol)
    max_iter = _check_count("max_iter", max_iter)
    n_nodes = _check_rule(rule, n_nodes)
    return _fixed_point_q(sigma_w2, sigma_b2, activation, p, q0, tol, max_iter, n_nodes,
                          rule)


def _fixed_point_q(sigma_w2, sigma_b2, activation, p, q0, tol, max_iter, n_nodes, rule):
    if activation in _HOMOGENEOUS:
        gain = sigma_w2 * _homogeneous_moment(activation, p)
        if sigma_b2 == 0.0 and (q0 == 0.0 or math.isclose(gain, 1.0, rel_tol=1e-12)):
            return q0   # every q is a fixed point (gain 1), or q0 = 0 stays at 0
        if gain < 1.0:
            return sigma_b2 / (1.0 - gain)
        limit = 1.0 / _homogeneous_moment(activation, p)
        raise ValueError(
            f"length map diverges: {activation} with sigma_w2={sigma_w2:g}, sigma_b2={sigma_b2:g} "
            f"has no finite fixed point (q grows by sigma_w2 E[phi(z)^2] = {gain:g} per layer"
            f"{', plus sigma_b2' if sigma_b2 > 0 else ''}); a finite q* needs sigma_w2 < "
            f"{limit:g}, or sigma_w2 = {limit:g} with sigma_b2 = 0 (every q is a fixed point)")
    try:
        return _attracting_fixed_point(
            lambda q: _length_map(q, sigma_w2, sigma_b2, activation, p, n_nodes, rule),
            q0, 0.0, Q_MAX, tol, max_iter, upper_diverges=True)
    except _Diverged:
        raise ValueError(
            f"length map diverges: {activation} with sigma_w2={sigma_w2:g}, sigma_b2={sigma_b2:g} "
            f"grows q past {Q_MAX:g} from q0={q0:g}, so no finite fixed point is reached "
            f"(lower sigma_w2)") from None


def fixed_point_c(sigma_w2, sigma_b2, activation, q=None, c0=0.0, tol=1e-12, max_iter=10,
                  param=None, n_nodes=N_NODES, rule="split"):
    """c*: the correlation fixed point at q = q* (default), reached from c0.

    Ordered phase (chi_1 <= 1): c* = 1, all inputs end up aligned. Chaotic phase (chi_1 > 1):
    c = 1 is unstable and c* < 1 solves c = correlation_map(c, q*) (iteration + bracketed polish).
    """
    sigma_w2 = _check_nonneg("sigma_w2", sigma_w2)
    sigma_b2 = _check_nonneg("sigma_b2", sigma_b2)
    p = _check_activation(activation, param)
    n_nodes = _check_rule(rule, n_nodes)
    c0 = _check_correlation("c0", c0)
    tol = _check_positive("tol", tol)
    max_iter = _check_count("max_iter", max_iter)
    q = _q_or_fixed_point(q, sigma_w2, sigma_b2, activation, p, n_nodes, rule)
    return _fixed_point_c(sigma_w2, sigma_b2, activation, p, q, c0, tol, max_iter,
                          n_nodes, rule)


def _fixed_point_c(sigma_w2, sigma_b2, activation, p, q, c0, tol, max_iter, n_nodes, rule):
    if q == 0.0 or _chi_1(sigma_w2, activation, p, q, n_nodes, rule) <= 1.0:
        return 1.0
    return _attracting_fixed_point(
        lambda c: _correlation_map(c, q, sigma_w2, sigma_b2, activation, p, n_nodes, rule),
        c0, -1.0, 1.0, tol, max_iter, upper_diverges=False)


def _q_or_fixed_point(q, sigma_w2, sigma_b2, activation, p, n_nodes, rule):
    if q is not None:
        return _check_nonneg("q", q)
    return _fixed_point_q(sigma_w2, sigma_b2, activation, p, 1.0, 1e-12, 200, n_nodes, rule)


# ---------------------------------------------------------------- gradients
def chi_1(sigma_w2, sigma_b2, activation, q=None, param=None, n_nodes=N_NODES, rule="split"):
    """chi_1 = sigma_w2 E[phi'(sqrt(q) z)^2] at q = q* (default) or the given q.

    The per-layer factor of the backpropagated gradient variance: E||delta_l||^2 =
    chi_1 E||delta_{l+1}||^2 at equal widths. For identity, ReLU and Leaky ReLU phi' does not
    depend on q, so no fixed point is needed and chi_1 = sigma_w2 (1, 1/2, (1+slope^2)/2) even
    where q* does not exist (ReLU with sigma_w2 > 2); other activations raise ValueError there.
    """
    sigma_w2 = _check_nonneg("sigma_w2", sigma_w2)
    sigma_b2 = _check_nonneg("sigma_b2", sigma_b2)
    p = _check_activation(activation, param)
    n_nodes = _check_rule(rule, n_nodes)
    if q is None and activation in _HOMOGENEOUS:
        q = 1.0
    q = _q_or_fixed_point(q, sigma_w2, sigma_b2, activation, p, n_nodes, rule)
    return _chi_1(sigma_w2, activation, p, q, n_nodes, rule)


def _chi_1(sigma_w2, activation, p, q, n_nodes, rule):
    dphi = _dphi(activation, p)
    return sigma_w2 * _expect(lambda h: dphi(h) ** 2, q, n_nodes, rule)


def critical_sigma_w2(sigma_b2, activation, param=None, bracket=None, tol=1e-12,
                      n_nodes=N_NODES, rule="split"):
    """The sigma_w2 with chi_1 = 1 at q* (the order-to-chaos line) for this sigma_b2.

    Identity, ReLU, Leaky ReLU: exactly 1 / E[phi'(z)^2] (1, 2, 2/(1+slope^2)) for every
    sigma_b2 (for sigma_b2 > 0 q* itself diverges there). If phi(0) = 0 and sigma_b2 = 0, the
    ordered phase has q* = 0 and chi_1 = sigma_w2 phi'(0)^2, so the line crosses at exactly
    1/phi'(0)^2 (tanh, ELU: 1) when chi_1 - 1 changes sign there. Otherwise brentq on
    chi_1(sigma_w2) - 1 in `bracket`, or in the first cell of a geometric grid (ratio 1.25,
    from 0.25 up to 1e4) where chi_1 - 1 changes sign; ValueError if there is none.
    """
    sigma_b2 = _check_nonneg("sigma_b2", sigma_b2)
    p = _check_activation(activation, param)
    tol = _check_positive("tol", tol)
    n_nodes = _check_rule(rule, n_nodes)
    if activation in _HOMOGENEOUS:
        return 1.0 / _homogeneous_moment(activation, p)

    def excess(sigma_w2):
        q = _fixed_point_q(sigma_w2, sigma_b2, activation, p, 1.0, 1e-13, 200, n_nodes, rule)
        return _chi_1(sigma_w2, activation, p, q, n_nodes, rule) - 1.0

    phi0 = float(forward_reference(activation, np.array([0.0]), p)[0])
    dphi0_sq = 0.5 * float(np.sum(derivative_reference(activation, np.array([1e-300, -1e-300]),
                                                       p) ** 2))   # (phi'(0+)^2 + phi'(0-)^2)/2
    if sigma_b2 == 0.0 and phi0 == 0.0 and dphi0_sq > 0.0:
        s_c = 1.0 / dphi0_sq
        try:
            below_is_ordered = _fixed_point_q(s_c * (1 - 1e-6), 0.0, activation, p, 1.0, 1e-13,
                                              200, n_nodes, rule) == 0.0
            if below_is_ordered and excess(s_c * (1 - 1e-6)) < 0 < excess(s_c * (1 + 1e-4)):
                return s_c
        except ValueError:
            pass
    if bracket is not None:
        lo, hi = (_check_positive("bracket", v) for v in bracket)
        return brentq(excess, lo, hi, xtol=tol * hi, rtol=4 * np.finfo(float).eps)
    lo, f_lo = 0.25, excess(0.25)
    while lo < 1e4:
        hi = lo * 1.25
        try:
            f_hi = excess(hi)
        except ValueError as err:
            raise ValueError(f"no critical sigma_w2 for {activation} with sigma_b2={sigma_b2:g}: "
                             f"chi_1 < 1 up to sigma_w2={lo:g}, beyond which {err}") from None
        if (f_lo < 0) != (f_hi < 0):
            return brentq(excess, lo, hi, xtol=tol * hi, rtol=4 * np.finfo(float).eps)
        lo, f_lo = hi, f_hi
    raise ValueError(f"no critical sigma_w2 for {activation} with sigma_b2={sigma_b2:g} "
                     f"in [0.25, 1e4]: pass bracket=(lo, hi)")


def predicted_gradient_ratio(depth, sigma_w2, sigma_b2, activation, param=None,
                             n_nodes=N_NODES, rule="split"):
    """chi_1 ** depth: predicted E||g_first||^2 / E||g_last||^2 over `depth` layers.

    A ratio of *squared* norms (gradient variances) of the backpropagated delta = dL/dh of two
    layers `depth` layers apart (first over last), at equal widths and at the fixed point q*;
    weight gradients dW_l = delta_l x_{l-1}^T follow it, since E||x_{l-1}||^2 is the same at
    every layer at q*. For the ratio of norms take the square root: chi_1 ** (depth / 2).
    """
    depth = _check_nonneg("depth", depth)
    return chi_1(sigma_w2, sigma_b2, activation, param=param, n_nodes=n_nodes,
                 rule=rule) ** depth


def depth_scales(sigma_w2, sigma_b2, activation, param=None, n_nodes=N_NODES, rule="split"):
    """(xi_q, xi_c): depths over which the length and the correlation of inputs approach q*, c*.

    xi_q = -1/log(dq_l/dq_{l-1} at q*) with dq_l/dq_{l-1} = sigma_w2 E[phi(u) phi'(u) z]/sqrt(q*),
    u = sqrt(q*) z (= chi_1 + sigma_w2 E[phi'' phi] by Stein's lemma, Schoenholz eq. 5);
    xi_c = -1/log(chi_c), chi_c = sigma_w2 E[phi'(u1) phi'(u2)] at (q*, c*) (= chi_1 in the
    ordered phase, where c* = 1). xi_c diverges (math.inf) on the order-to-chaos line.
    """
    sigma_w2 = _check_nonneg("sigma_w2", sigma_w2)
    sigma_b2 = _check_nonneg("sigma_b2", sigma_b2)
    p = _check_activation(activation, param)
    n_nodes = _check_rule(rule, n_nodes)
    q = _q_or_fixed_point(None, sigma_w2, sigma_b2, activation, p, n_nodes, rule)
    phi, dphi = _phi(activation, p), _dphi(activation, p)
    s = _scale(q)
    slope_q = 0.0 if sigma_w2 == 0.0 else \
        sigma_w2 * _expect(lambda h: phi(h) * dphi(h) * h, q, n_nodes, rule) / (s * s)
    c = _fixed_point_c(sigma_w2, sigma_b2, activation, p, q, 0.0, 1e-12, 10, n_nodes, rule)
    if c >= 1.0:
        chi_c = _chi_1(sigma_w2, activation, p, q, n_nodes, rule)
    else:
        chi_c = sigma_w2 * _expect_pair(dphi, dphi, q, c, n_nodes, rule)
    return _depth_scale(slope_q), _depth_scale(chi_c)


def _depth_scale(rate):
    """-1/log(rate) for a contraction rate in [0, 1); inf when the rate is >= 1."""
    if rate >= 1.0:
        return math.inf
    if rate <= 0.0:
        return 0.0
    return -1.0 / math.log(rate)


def correlation_slope(c, sigma_w2, sigma_b2, activation, q=None, param=None, n_nodes=N_NODES,
                      rule="split"):
    """d c_l / d c_{l-1} of the correlation map at c, q = q* (default): by Gaussian integration
    by parts, sigma_w2 E[phi'(u1) phi'(u2)] with u1, u2 of variance q and correlation c. At
    c = c* this is chi_c, and xi_c = -1/log(chi_c)."""
    c = _check_correlation("c", c)
    sigma_w2 = _check_nonneg("sigma_w2", sigma_w2)
    sigma_b2 = _check_nonneg("sigma_b2", sigma_b2)
    p = _check_activation(activation, param)
    n_nodes = _check_rule(rule, n_nodes)
    q = _q_or_fixed_point(q, sigma_w2, sigma_b2, activation, p, n_nodes, rule)
    if c >= 1.0:
        return _chi_1(sigma_w2, activation, p, q, n_nodes, rule)
    dphi = _dphi(activation, p)
    if c <= -1.0:
        return sigma_w2 * _expect(lambda h: dphi(h) * dphi(-h), q, n_nodes, rule)
    return sigma_w2 * _expect_pair(dphi, dphi, q, c, n_nodes, rule)


def trainable_depth(sigma_w2, sigma_b2, activation, factor=6.0, param=None, n_nodes=N_NODES,
                    rule="split"):
    """factor * xi_c: the depth below which Schoenholz et al. (2017) find random-initialized
    networks trainable (factor 6); math.inf on the order-to-chaos line; ValueError where q*
    does not exist (ReLU above sigma_w2 = 2: no chaotic phase, the length grows without bound)."""
    factor = _check_positive("factor", factor)
    return factor * depth_scales(sigma_w2, sigma_b2, activation, param, n_nodes, rule)[1]
