"""Activation functions: forward/backward kernels over flat buffers, with NumPy references.

Every activation has an integer code (a runtime choice, so one compiled training step serves all
of them) and an entry in `ACTIVATIONS` with its formula and flags (family, saturation, dead
units, matched init). Kinks follow PyTorch: ReLU'(0) = 0,
LeakyReLU'(0) = slope, ELU'(0) = alpha. `param` is the Leaky ReLU slope or the ELU alpha.
Softmax is an output-only activation: it acts on rows, see `softmax_rows_forward`.
float32 buffers use the vectorizing exp/tanh/sigmoid/erf of `vecmath` (a few ulps from NumPy);
float64 ones the exact `math` functions.
"""
from dataclasses import dataclass

import numpy as np

from . import vecmath as V
from ._jit import kernel
from .registry import Entry, build_registry, code_to_name, names_where
# INV_SQRT_2 is re-exported for kernels.cuda.
from .vecmath import GELU_CUBIC, INV_SQRT_2, INV_SQRT_2PI, SQRT_2_OVER_PI  # noqa: F401

IDENTITY, SIGMOID, TANH, RELU, LEAKY_RELU, ELU, GELU, GELU_TANH, SOFTMAX = range(9)


LINEAR, SIGMOID_LIKE, RELU_LIKE, OUTPUT = "linear", "sigmoid-like", "relu-like", "output"


@dataclass(frozen=True, kw_only=True)
class Activation(Entry):
    """Registry entry: code for the kernels, formula and derivative, default parameter, flags.

    family: "linear", "sigmoid-like" (bounded, both tails flat), "relu-like" (identity for
    h > 0, another branch for h <= 0) or "output" (softmax: output layers only).
    saturates: f' -> 0 in both tails, a bounded output (sigmoid, tanh; softmax too); ELU and
    GELU flatten on the left only.
    dead_capable: f' is exactly 0 on an interval, so a unit whose input stays there gets no
    gradient at all on any row: ReLU only (h <= 0). Leaky ReLU (f' = slope), ELU
    (f' = alpha e^h > 0) and GELU (f' = 0 at one point only) keep a gradient everywhere.
    non_decreasing: f(x) <= f(y) for x <= y, entry by entry (leaky ReLU and ELU: their parameter
    is non-negative; GELU dips below zero), so f's k-th smallest output is f of the k-th
    smallest input; kernels.layer_stats guesses its activation percentiles from that and proves
    each (vecmath's float32 tanh steps down by a few ulps in places).
    matched_init: the init that keeps the forward variance (He for relu-like, else Xavier).
    """
    derivative: str
    family: str
    saturates: bool = False
    dead_capable: bool = False
    non_decreasing: bool = False
    default_param: float = 0.0
    hidden: bool = True  # allowed on hidden layers (softmax is output-only)

    @property
    def matched_init(self):
        return "he_normal" if self.family == RELU_LIKE else "xavier_normal"


ACTIVATIONS = build_registry([
    Activation(name="identity", code=IDENTITY, formula="x", derivative="1", family=LINEAR,
               non_decreasing=True),
    Activation(name="sigmoid", code=SIGMOID, formula="1/(1+exp(-x))",
               derivative="s(x)(1-s(x))", family=SIGMOID_LIKE, saturates=True,
               non_decreasing=True),
    Activation(name="tanh", code=TANH, formula="tanh(x)", derivative="1-tanh(x)^2",
               family=SIGMOID_LIKE, saturates=True, non_decreasing=True),
    Activation(name="relu", code=RELU, formula="max(0,x)", derivative="1 if x>0 else 0",
               family=RELU_LIKE, dead_capable=True, non_decreasing=True),
    Activation(name="leaky_relu", code=LEAKY_RELU, formula="x if x>0 else slope*x",
               derivative="1 if x>0 else slope", family=RELU_LIKE, default_param=0.01,
               non_decreasing=True),
    Activation(name="elu", code=ELU, formula="x if x>0 else alpha(exp(x)-1)",
               derivative="1 if x>0 else alpha exp(x)", family=RELU_LIKE, default_param=1.0,
               non_decreasing=True),
    Activation(name="gelu", code=GELU, formula="x Phi(x) = x/2 (1+erf(x/sqrt2))",
               derivative="Phi(x) + x phi(x)", family=RELU_LIKE),
    Activation(name="gelu_tanh", code=GELU_TANH,
               formula="x/2 (1+tanh(sqrt(2/pi)(x+0.044715x^3)))",
               derivative="d/dx of the tanh form", family=RELU_LIKE),
    Activation(name="softmax", code=SOFTMAX, formula="exp(x_k)/sum_j exp(x_j) (per row)",
               derivative="J = diag(s) - s s^T", family=OUTPUT, saturates=True, hidden=False),
])
CODE_TO_NAME = code_to_name(ACTIVATIONS)
RELU_FAMILY = frozenset(names_where(ACTIVATIONS, family=RELU_LIKE))
PARAMETRIC = ("leaky_relu", "elu")  # activations that read `param`


@kernel
def activation_forward(out, h, code, param):
    """out = f(h) elementwise over flat buffers (softmax excluded: it acts on rows).
    Constants take the buffer's dtype, so float32 loops never widen to float64."""
    n = h.shape[0]
    zero, param = out.dtype.type(0.0), out.dtype.type(param)
    if code == IDENTITY:
        for i in range(n):
            out[i] = h[i]
    elif code == SIGMOID:
        for i in range(n):
            out[i] = V.sigmoid(h[i])
    elif code == TANH:
        for i in range(n):
            out[i] = V.tanh(h[i])
    elif code == RELU:
        for i in range(n):
            out[i] = h[i] if h[i] > zero else zero
    elif code == LEAKY_RELU:
        for i in range(n):
            out[i] = h[i] if h[i] > zero else param * h[i]
    elif code == ELU:
        for i in range(n):
            out[i] = h[i] if h[i] > zero else param * V.expm1(h[i])
    elif code == GELU:
        for i in range(n):
            out[i] = V.gelu(h[i])
    elif code == GELU_TANH:
        for i in range(n):
            out[i] = V.gelu_tanh(h[i])


@kernel
def activation_backward(dh, da, h, a, code, param):
    """dh = da * f'(h) elementwise; a = f(h) is reused where the derivative needs it.
    Constants take the buffer's dtype, so float32 loops never widen to float64."""
    n = h.shape[0]
    zero, one, param = dh.dtype.type(0.0), dh.dtype.type(1.0), dh.dtype.type(param)
    if code == IDENTITY:
        for i in range(n):
            dh[i] = da[i]
    elif code == SIGMOID:
        for i in range(n):
            dh[i] = da[i] * a[i] * (one - a[i])
    elif code == TANH:
        for i in range(n):
            dh[i] = da[i] * (one - a[i] * a[i])
    elif code == RELU:
        for i in range(n):
            dh[i] = da[i] if h[i] > zero else zero
    elif code == LEAKY_RELU:
        for i in range(n):
            dh[i] = da[i] if h[i] > zero else param * da[i]
    elif code == ELU:
        for i in range(n):
            dh[i] = da[i] if h[i] > zero else da[i] * param * V.exp(h[i])
    elif code == GELU:
        for i in range(n):
            dh[i] = da[i] * V.gelu_derivative(h[i])
    elif code == GELU_TANH:
        for i in range(n):
            dh[i] = da[i] * V.gelu_tanh_derivative(h[i])


@kernel
def softmax_rows_forward(out, h):
    """out[i] = exp(h[i] - lse(h[i])) per row of a (batch, k) array; returns nothing."""
    for i in range(h.shape[0]):
        m = h[i, 0]
        for k in range(1, h.shape[1]):
            m = max(m, h[i, k])
        s = 0.0
        for k in range(h.shape[1]):
            e = V.exp(h[i, k] - m)
            out[i, k] = e
            s += e
        inv = 1.0 / s
        for k in range(h.shape[1]):
            out[i, k] *= inv


@kernel
def softmax_rows_backward(dh, da, a):
    """dh = J^T da per row with J = diag(a) - a a^T: dh_k = a_k (da_k - sum_j a_j da_j)."""
    for i in range(a.shape[0]):
        s = 0.0
        for k in range(a.shape[1]):
            s += a[i, k] * da[i, k]
        for k in range(a.shape[1]):
            dh[i, k] = a[i, k] * (da[i, k] - s)


# ---------------------------------------------------------------- NumPy references
def forward_reference(name, h, param=None):
    """f(h) in plain NumPy (float64 oracle for the kernels)."""
    from scipy import special  # imported here: it costs ~0.3 s of every import of the kernels
    p = ACTIVATIONS[name].default_param if param is None else param
    h = np.asarray(h, dtype=np.float64)
    if name == "identity":
        return h.copy()
    if name == "sigmoid":
        return special.expit(h)
    if name == "tanh":
        return np.tanh(h)
    if name == "relu":
        return np.maximum(h, 0.0)
    if name == "leaky_relu":
        return np.where(h > 0, h, p * h)
    if name == "elu":
        return np.where(h > 0, h, p * np.expm1(np.minimum(h, 0.0)))
    if name == "gelu":
        return 0.5 * h * (1.0 + special.erf(h / np.sqrt(2.0)))
    if name == "gelu_tanh":
        return 0.5 * h * (1.0 + np.tanh(SQRT_2_OVER_PI * (h + GELU_CUBIC * h**3)))
    if name == "softmax":
        e = np.exp(h - h.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    raise KeyError(name)


def derivative_reference(name, h, param=None):
    """f'(h) in plain NumPy (elementwise activations only)."""
    from scipy import special
    p = ACTIVATIONS[name].default_param if param is None else param
    h = np.asarray(h, dtype=np.float64)
    if name == "identity":
        return np.ones_like(h)
    if name == "sigmoid":
        s = special.expit(h)
        return s * (1.0 - s)
    if name == "tanh":
        return 1.0 - np.tanh(h) ** 2
    if name == "relu":
        return (h > 0).astype(np.float64)
    if name == "leaky_relu":
        return np.where(h > 0, 1.0, p)
    if name == "elu":
        return np.where(h > 0, 1.0, p * np.exp(np.minimum(h, 0.0)))
    if name == "gelu":
        return special.ndtr(h) + h * np.exp(-0.5 * h * h) * INV_SQRT_2PI
    if name == "gelu_tanh":
        t = np.tanh(SQRT_2_OVER_PI * (h + GELU_CUBIC * h**3))
        return 0.5 * (1 + t) + 0.5 * h * (1 - t * t) * SQRT_2_OVER_PI * (1 + 3 * GELU_CUBIC * h**2)
    raise KeyError(name)
