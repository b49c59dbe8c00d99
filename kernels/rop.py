"""Pearlmutter's R-operator, op by op: R{u} = d/dt u(theta + t v) at t = 0 for every quantity u
of the forward and backward passes, along a parameter direction v = (V, v_b, v_gamma, v_beta).

Each op's forward and backward pass gets a tangent kernel beside its NumPy reference:
- dense: R{z} = R{a_prev} W^T + a_prev V^T + v_b; R{dW} = R{dz}^T a_prev + dz^T R{a_prev},
  R{db} = sum_i R{dz_i}, R{da_prev} = R{dz} W + dz V.
- elementwise activation a = f(h): R{a} = f'(h) R{h}; backward dh = f'(h) da:
  R{dh} = f''(h) R{h} da + f'(h) R{da}.
- softmax rows: R{a} = J R{h} with J = diag(a) - a a^T; backward dh = a (da - a.da):
  R{dh} = R{a} (da - a.da) + a (R{da} - R{a}.da - a.R{da}).
- training-mode batch norm, per feature, s = sqrt(var_B + eps), P(u) = u - mean(u) -
  xhat mean(xhat u): R{xhat} = P(R{z}) / s, R{s} = mean(xhat R{z}), R{h} = gamma R{xhat} +
  v_gamma xhat + v_beta; backward dz = (gamma/s) P(dh): R{dz} = (v_gamma/s - gamma R{s}/s^2)
  P(dh) + (gamma/s) R{P(dh)}, R{P(dh)} = R{dh} - mean R{dh} - R{xhat} c - xhat R{c} with
  c = mean(xhat dh), R{c} = mean(R{xhat} dh + xhat R{dh}); R{dgamma} = B R{c}, R{dbeta} =
  sum R{dh}.
The kernels here and the fused ones of kernels.curvature compile without `reassoc` and
`contract` (`kernel_exact_order`): with them, a fresh compilation and the cached one gave Hv
different last bits (LLVM formed fused multiply-adds differently).
Kinks take backprop's convention: the second derivative of ReLU and Leaky ReLU is 0 everywhere,
ELU's left branch (h <= 0, as its first derivative) is alpha exp(h).
"""
import numpy as np

from . import vecmath as V
from ._jit import kernel_exact_order
from .activations import ELU, GELU, GELU_TANH, IDENTITY, LEAKY_RELU, RELU, SIGMOID, TANH, \
    ACTIVATIONS, derivative_reference
from .batchnorm import BN_EPS
from .vecmath import GELU_CUBIC, INV_SQRT_2PI, SQRT_2_OVER_PI


# ---------------------------------------------------------------- dense
@kernel_exact_order
def _add_into(out, other):
    """out += other for 2-D arrays of one shape."""
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] += other[i, j]


@kernel_exact_order
def dense_tangent_forward(rz, scratch, a_prev, ra_prev, w, vw, vb, first):
    """R{z} = a_prev V^T + v_b + R{a_prev} W^T (the last term absent on the first layer, whose
    input does not depend on the parameters). scratch: (B, n_out)."""
    np.dot(a_prev, vw.T, rz)
    for i in range(rz.shape[0]):
        for j in range(rz.shape[1]):
            rz[i, j] += vb[j]
    if not first:
        np.dot(ra_prev, w.T, scratch)
        _add_into(rz, scratch)


@kernel_exact_order
def dense_tangent_backward(rdw, rdb, scratch, rdz, dz, a_prev, ra_prev, first):
    """R{dW} = R{dz}^T a_prev + dz^T R{a_prev} (no second term on the first layer), R{db} =
    sum_i R{dz_i}. scratch: (n_out, n_in)."""
    np.dot(rdz.T, a_prev, rdw)
    if not first:
        np.dot(dz.T, ra_prev, scratch)
        _add_into(rdw, scratch)
    for j in range(rdb.shape[0]):
        rdb[j] = 0.0
    for i in range(rdz.shape[0]):
        for j in range(rdz.shape[1]):
            rdb[j] += rdz[i, j]


@kernel_exact_order
def dense_tangent_backward_input(rda, scratch, rdz, dz, w, vw):
    """R{da_prev} = R{dz} W + dz V. scratch: (B, n_in)."""
    np.dot(rdz, w, rda)
    np.dot(dz, vw, scratch)
    _add_into(rda, scratch)


def dense_tangent_forward_reference(a_prev, ra_prev, w, vw, vb):
    """R{z} in float64 NumPy."""
    return a_prev @ vw.T + vb + ra_prev @ w.T


def dense_tangent_backward_reference(dz, rdz, a_prev, ra_prev, w, vw):
    """(R{dW}, R{db}, R{da_prev}) in float64 NumPy."""
    return rdz.T @ a_prev + dz.T @ ra_prev, rdz.sum(axis=0), rdz @ w + dz @ vw


# ---------------------------------------------------------------- activations
@kernel_exact_order
def activation_tangent_forward(ra, rh, h, a, code, param):
    """R{a} = f'(h) R{h} over flat buffers, a = f(h); softmax excluded. The derivatives of
    `activation_backward`, compiled in written order (see the module docstring); the fused
    Hv takes its primal dh = f'(h) da from here too."""
    n = h.shape[0]
    t = ra.dtype.type
    zero, one, param = t(0.0), t(1.0), t(param)
    if code == IDENTITY:
        for i in range(n):
            ra[i] = rh[i]
    elif code == SIGMOID:
        for i in range(n):
            ra[i] = (a[i] * (one - a[i])) * rh[i]
    elif code == TANH:
        for i in range(n):
            ra[i] = (one - a[i] * a[i]) * rh[i]
    elif code == RELU:
        for i in range(n):
            ra[i] = rh[i] if h[i] > zero else zero
    elif code == LEAKY_RELU:
        for i in range(n):
            ra[i] = rh[i] if h[i] > zero else param * rh[i]
    elif code == ELU:
        for i in range(n):
            ra[i] = rh[i] if h[i] > zero else (param * V.exp(h[i])) * rh[i]
    elif code == GELU:
        for i in range(n):
            ra[i] = V.gelu_derivative(h[i]) * rh[i]
    elif code == GELU_TANH:
        for i in range(n):
            ra[i] = V.gelu_tanh_derivative(h[i]) * rh[i]


@kernel_exact_order
def softmax_rows_tangent_forward(ra, rh, a):
    """R{a} = (diag(a) - a a^T) R{h} per row: R{a}_k = a_k (R{h}_k - a.R{h})."""
    for i in range(a.shape[0]):
        s = 0.0
        for k in range(a.shape[1]):
            s += a[i, k] * rh[i, k]
        for k in range(a.shape[1]):
            ra[i, k] = a[i, k] * (rh[i, k] - s)


@kernel_exact_order
def activation_tangent_backward(rdh, rda, da, rh, h, a, code, param):
    """R{dh} = f''(h) R{h} da + f'(h) R{da} over flat buffers, a = f(h); softmax excluded."""
    n = h.shape[0]
    t = rdh.dtype.type
    zero, one, two, param = t(0.0), t(1.0), t(2.0), t(param)
    if code == IDENTITY:
        for i in range(n):
            rdh[i] = rda[i]
    elif code == SIGMOID:
        for i in range(n):
            d1 = a[i] * (one - a[i])
            rdh[i] = d1 * (one - two * a[i]) * rh[i] * da[i] + d1 * rda[i]
    elif code == TANH:
        for i in range(n):
            d1 = one - a[i] * a[i]
            rdh[i] = -two * a[i] * d1 * rh[i] * da[i] + d1 * rda[i]
    elif code == RELU:
        for i in range(n):
            rdh[i] = rda[i] if h[i] > zero else zero
    elif code == LEAKY_RELU:
        for i in range(n):
            rdh[i] = rda[i] if h[i] > zero else param * rda[i]
    elif code == ELU:
        for i in range(n):
            rdh[i] = rda[i] if h[i] > zero else param * V.exp(h[i]) * (rh[i] * da[i] + rda[i])
    elif code == GELU:
        _gelu_tangent_backward(rdh, rda, da, rh, h)
    elif code == GELU_TANH:
        _gelu_tanh_tangent_backward(rdh, rda, da, rh, h)


@kernel_exact_order
def _gelu_tangent_backward(rdh, rda, da, rh, h):
    """GELU's R{dh} with f''(h) = phi(h) (2 - h^2). A kernel of its own: a second inlined
    V.exp in `activation_tangent_backward` trips numba's SSA check."""
    t = rdh.dtype.type
    c, half, two = t(INV_SQRT_2PI), t(0.5), t(2.0)
    for i in range(h.shape[0]):
        x = h[i]
        d2 = c * V.exp(-half * x * x) * (two - x * x)
        rdh[i] = d2 * rh[i] * da[i] + V.gelu_derivative(x) * rda[i]


@kernel_exact_order
def _gelu_tanh_tangent_backward(rdh, rda, da, rh, h):
    """R{dh} of the tanh form of GELU, u = sqrt(2/pi)(h + 0.044715 h^3), t = tanh(u):
    f' = (1+t)/2 + h sech^2(u) u'/2, f'' = sech^2(u) (u' + h (u'' - 2 t u'^2)/2). sech^2 and t
    come from e = exp(-2|u|) (sech^2 = 4e/(1+e)^2), not 1 - t^2, which cancels where |t| ~ 1
    and f'' is still far from 0 (float32, |h| > 4)."""
    t = rdh.dtype.type
    k, kc = t(SQRT_2_OVER_PI), t(SQRT_2_OVER_PI * GELU_CUBIC)
    half, one, two, three, four, six = t(0.5), t(1.0), t(2.0), t(3.0), t(4.0), t(6.0)
    for i in range(h.shape[0]):
        x = h[i]
        u = k * x + kc * x * x * x
        e = V.exp(-two * abs(u))
        sech2 = four * e / ((one + e) * (one + e))
        th = (one - e) / (one + e)
        th = th if u >= 0 else -th
        du = k + three * kc * x * x
        d1 = half * (one + th) + half * x * sech2 * du
        d2 = sech2 * (du + half * x * (six * kc * x - two * th * du * du))
        rdh[i] = d2 * rh[i] * da[i] + d1 * rda[i]


@kernel_exact_order
def softmax_rows_tangent_backward(rdh, rda, da, ra, a):
    """R of dh = a (da - a.da) per row: R{dh} = R{a} (da - s) + a (R{da} - R{s}), s = a.da,
    R{s} = R{a}.da + a.R{da}."""
    for i in range(a.shape[0]):
        s = 0.0
        rs = 0.0
        for k in range(a.shape[1]):
            s += a[i, k] * da[i, k]
            rs += ra[i, k] * da[i, k] + a[i, k] * rda[i, k]
        for k in range(a.shape[1]):
            rdh[i, k] = ra[i, k] * (da[i, k] - s) + a[i, k] * (rda[i, k] - rs)


def second_derivative_reference(name, h, param=None):
    """f''(h) in plain NumPy (elementwise activations; 0 for the piecewise linear ones)."""
    from scipy import special
    p = ACTIVATIONS[name].default_param if param is None else param
    h = np.asarray(h, dtype=np.float64)
    if name in ("identity", "relu", "leaky_relu"):
        return np.zeros_like(h)
    if name == "sigmoid":
        s = special.expit(h)
        return s * (1.0 - s) * (1.0 - 2.0 * s)
    if name == "tanh":
        t = np.tanh(h)
        return -2.0 * t * (1.0 - t * t)
    if name == "elu":
        return np.where(h > 0, 0.0, p * np.exp(np.minimum(h, 0.0)))
    if name == "gelu":
        return np.exp(-0.5 * h * h) * INV_SQRT_2PI * (2.0 - h * h)
    if name == "gelu_tanh":
        u = SQRT_2_OVER_PI * (h + GELU_CUBIC * h**3)
        du = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_CUBIC * h**2)
        ddu = SQRT_2_OVER_PI * 6.0 * GELU_CUBIC * h
        t = np.tanh(u)
        return (1.0 - t * t) * (du + 0.5 * h * (ddu - 2.0 * t * du * du))
    raise KeyError(name)


def activation_tangent_backward_reference(name, rda, da, rh, h, param=None):
    """R{dh} = f''(h) R{h} da + f'(h) R{da} in float64 NumPy."""
    return second_derivative_reference(name, h, param) * rh * da + \
        derivative_reference(name, h, param) * rda


def softmax_tangent_reference(rh, da, rda, a):
    """(R{a}, R{dh}) of softmax rows a in float64 NumPy."""
    ra = a * (rh - (a * rh).sum(axis=1, keepdims=True))
    s = (a * da).sum(axis=1, keepdims=True)
    rs = (ra * da + a * rda).sum(axis=1, keepdims=True)
    return ra, ra * (da - s) + a * (rda - rs)


# ---------------------------------------------------------------- batch norm
@kernel_exact_order
def batchnorm_tangent_forward(rh, rxhat, rz, xhat, var, gamma, v_gamma, v_beta, eps):
    """R{xhat} = (R{z} - mean R{z} - xhat mean(xhat R{z}))/s, R{h} = gamma R{xhat} +
    v_gamma xhat + v_beta, per feature (s = sqrt(var_B + eps))."""
    n_batch, n = rz.shape
    inv_b = 1.0 / n_batch
    for j in range(n):
        mean_rz = 0.0
        rs = 0.0
        for i in range(n_batch):
            mean_rz += rz[i, j]
            rs += xhat[i, j] * rz[i, j]
        mean_rz *= inv_b
        rs *= inv_b
        inv_s = 1.0 / np.sqrt(var[j] + eps)
        for i in range(n_batch):
            rxhat[i, j] = (rz[i, j] - mean_rz - xhat[i, j] * rs) * inv_s
            rh[i, j] = gamma[j] * rxhat[i, j] + v_gamma[j] * xhat[i, j] + v_beta[j]


@kernel_exact_order
def batchnorm_tangent_backward(out, tangent, primal, eps):
    """out = (R{dz}, R{dgamma}, R{dbeta}, dz) from tangent = (R{dh}, R{xhat}, R{z}, v_gamma)
    and primal = (dh, xhat, var, gamma): the R-operator of `batchnorm_backward` (module
    docstring), and its primal dz = (gamma/s) P(dh) from the same sums."""
    rdz, rdgamma, rdbeta, dz = out
    rdh, rxhat, rz, v_gamma = tangent
    dh, xhat, var, gamma = primal
    n_batch, n = dh.shape
    inv_b = 1.0 / n_batch
    for j in range(n):
        m = 0.0
        c = 0.0
        rs = 0.0
        rm = 0.0
        rc = 0.0
        for i in range(n_batch):
            m += dh[i, j]
            c += dh[i, j] * xhat[i, j]
            rs += xhat[i, j] * rz[i, j]
            rm += rdh[i, j]
            rc += rxhat[i, j] * dh[i, j] + xhat[i, j] * rdh[i, j]
        m *= inv_b
        c *= inv_b
        rs *= inv_b
        rm *= inv_b
        rc *= inv_b
        rdgamma[j] = rc * n_batch
        rdbeta[j] = rm * n_batch
        inv_s = 1.0 / np.sqrt(var[j] + eps)
        scale_p = (v_gamma[j] - gamma[j] * rs * inv_s) * inv_s
        scale_rp = gamma[j] * inv_s
        for i in range(n_batch):
            p = dh[i, j] - m - xhat[i, j] * c
            rp = rdh[i, j] - rm - rxhat[i, j] * c - xhat[i, j] * rc
            rdz[i, j] = scale_p * p + scale_rp * rp
            dz[i, j] = scale_rp * p


def batchnorm_tangent_forward_reference(rz, xhat, var, gamma, v_gamma, v_beta, eps=BN_EPS):
    """(R{h}, R{xhat}) in float64 NumPy."""
    rxhat = (rz - rz.mean(axis=0) - xhat * (xhat * rz).mean(axis=0)) / np.sqrt(var + eps)
    return gamma * rxhat + v_gamma * xhat + v_beta, rxhat


def batchnorm_tangent_backward_reference(rdh, dh, rz, rxhat, xhat, var, gamma, v_gamma,
                                         eps=BN_EPS):
    """(R{dz}, R{dgamma}, R{dbeta}) in float64 NumPy."""
    s = np.sqrt(var + eps)
    rs = (xhat * rz).mean(axis=0)
    c = (dh * xhat).mean(axis=0)
    rc = (rxhat * dh + xhat * rdh).mean(axis=0)
    p = dh - dh.mean(axis=0) - xhat * c
    rp = rdh - rdh.mean(axis=0) - rxhat * c - xhat * rc
    rdz = (v_gamma / s - gamma * rs / s**2) * p + gamma / s * rp
    return rdz, len(dh) * rc, rdh.sum(axis=0)
