"""Activations, softmax, losses and the batch gather on the device.

Activations are device functions selected by the runtime code of kernels.activations, fused
into the dense and batch-norm kernels; the kernels here apply them standalone, compute the
output layer's softmax, the loss and dL/dh (one block per run, a tree reduction for the loss),
and gather mini-batch rows from a device-resident data set.
"""
import math

from numba import cuda, float64

from ..activations import ELU, GELU, GELU_CUBIC, GELU_TANH, INV_SQRT_2, INV_SQRT_2PI, \
    LEAKY_RELU, RELU, SIGMOID, SOFTMAX, SQRT_2_OVER_PI, TANH
from ..losses import CROSS_ENTROPY
from ._jit import REDUCE, device, kernel
from .tables import ACT, ACT_PARAM, LOSS, N_OUT, REC_LOSS, S_A, S_DZ, S_Z, U_OFF


@device
def act_forward(x, code, p):
    """f(x) for activation `code` (p: Leaky ReLU slope or ELU alpha)."""
    if code == SIGMOID:
        if x >= 0.0:
            return 1.0 / (1.0 + math.exp(-x))
        e = math.exp(x)
        return e / (1.0 + e)
    if code == TANH:
        return math.tanh(x)
    if code == RELU:
        return x if x > 0.0 else 0.0
    if code == LEAKY_RELU:
        return x if x > 0.0 else p * x
    if code == ELU:
        return x if x > 0.0 else p * math.expm1(x)
    if code == GELU:
        return 0.5 * x * (1.0 + math.erf(x * INV_SQRT_2))
    if code == GELU_TANH:
        return 0.5 * x * (1.0 + math.tanh(SQRT_2_OVER_PI * (x + GELU_CUBIC * x * x * x)))
    return x


@device
def act_backward(da, h, a, code, p):
    """da * f'(h), reusing a = f(h) where the derivative needs it."""
    if code == SIGMOID:
        return da * a * (1.0 - a)
    if code == TANH:
        return da * (1.0 - a * a)
    if code == RELU:
        return da if h > 0.0 else 0.0
    if code == LEAKY_RELU:
        return da if h > 0.0 else p * da
    if code == ELU:
        return da if h > 0.0 else da * p * math.exp(h)
    if code == GELU:
        cdf = 0.5 * (1.0 + math.erf(h * INV_SQRT_2))
        return da * (cdf + h * INV_SQRT_2PI * math.exp(-0.5 * h * h))
    if code == GELU_TANH:
        t = math.tanh(SQRT_2_OVER_PI * (h + GELU_CUBIC * h * h * h))
        dt = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_CUBIC * h * h)
        return da * (0.5 * (1.0 + t) + 0.5 * h * (1.0 - t * t) * dt)
    return da


@kernel
def activation_forward(out, h, code, p):
    """out = f(h) elementwise over 1-D arrays (softmax excluded)."""
    i = cuda.grid(1)
    if i < h.shape[0]:
        out[i] = act_forward(h[i], code, p)


@kernel
def activation_backward(dh, da, h, a, code, p):
    """dh = da * f'(h) elementwise over 1-D arrays."""
    i = cuda.grid(1)
    if i < h.shape[0]:
        dh[i] = act_backward(da[i], h[i], a[i], code, p)


@device
def _softmax_row(units, r, base, n):
    """A[base:base+n] = exp(z - lse(z)) of row Z[base:base+n]; returns lse(z) in float64."""
    m = units[S_Z, r, base]
    for k in range(1, n):
        m = max(m, units[S_Z, r, base + k])
    s = 0.0
    for k in range(n):
        e = math.exp(units[S_Z, r, base + k] - m)
        units[S_A, r, base + k] = e
        s += e
    inv = 1.0 / s
    for k in range(n):
        units[S_A, r, base + k] *= inv
    return m + math.log(s)


@kernel
def softmax_output(units, net, n_batch):
    """A = softmax(Z) per row of the output layer (the output layer has no batch norm)."""
    i = cuda.grid(1)
    r = cuda.blockIdx.y
    last = net.shape[0] - 1
    if i < n_batch:
        n = net[last, N_OUT]
        _softmax_row(units, r, net[last, U_OFF] + i * n, n)


@device
def block_sum(part, value):
    """Sum of `value` over the REDUCE threads of a block (tree reduction in shared memory)."""
    tid = cuda.threadIdx.x
    part[tid] = value
    cuda.syncthreads()
    width = REDUCE // 2
    while width > 0:
        if tid < width:
            part[tid] += part[tid + width]
        cuda.syncthreads()
        width //= 2
    return part[0]


@device
def _row_loss(units, yin, r, ry, i, net, netf, n_batch):
    """Loss of output row i; writes A (softmax) and DZ = dL/dh of the row."""
    last = net.shape[0] - 1
    n = net[last, N_OUT]
    base = net[last, U_OFF] + i * n
    code = net[last, ACT]
    inv_b = 1.0 / n_batch
    row = 0.0
    if net[last, LOSS] == CROSS_ENTROPY:
        lse = _softmax_row(units, r, base, n)
        for k in range(n):
            y = yin[ry, i * n + k]
            row += float(y) * (lse - units[S_Z, r, base + k])
            units[S_DZ, r, base + k] = inv_b * (units[S_A, r, base + k] - y)
        return row
    if code == SOFTMAX:
        _softmax_row(units, r, base, n)
    scale = 2.0 / n_batch
    dot = 0.0
    for k in range(n):
        a = units[S_A, r, base + k]
        y = yin[ry, i * n + k]
        d = float(a) - float(y)
        row += d * d
        da = scale * (a - y)
        if code == SOFTMAX:
            units[S_DZ, r, base + k] = da
            dot += a * units[S_DZ, r, base + k]
        else:
            units[S_DZ, r, base + k] = act_backward(da, units[S_Z, r, base + k], a, code,
                                                    netf[last, ACT_PARAM])
    if code == SOFTMAX:
        for k in range(n):
            a = units[S_A, r, base + k]
            units[S_DZ, r, base + k] = a * (units[S_DZ, r, base + k] - dot)
    return row


@kernel
def loss_forward_backward(units, yin, rec, net, netf, n_batch, step):
    """Per run (block y): rec[REC_LOSS, r, step] = (1/B) sum_i l_i with l_i = lse(z_i) - y_i.z_i
    (cross-entropy) or ||a_i - y_i||^2 (MSE); writes softmax outputs and dL/dh of the output."""
    part = cuda.shared.array(REDUCE, float64)
    r = cuda.blockIdx.y
    ry = r if yin.shape[0] > 1 else 0
    total = 0.0
    for i in range(cuda.threadIdx.x, n_batch, REDUCE):
        total += _row_loss(units, yin, r, ry, i, net, netf, n_batch)
    total = block_sum(part, total)
    if cuda.threadIdx.x == 0:
        rec[REC_LOSS, r, step] = total / n_batch


@kernel
def gather_rows(dst, src, order, lo, n_batch):
    """dst[r, i*n + j] = src[r, order[r, lo + i], j] for i < n_batch (an input with one row
    serves every run)."""
    e = cuda.grid(1)
    r = cuda.blockIdx.y
    n = src.shape[2]
    if e < n_batch * n:
        i = e // n
        rs = r if src.shape[0] > 1 else 0
        ro = r if order.shape[0] > 1 else 0
        dst[r, e] = src[rs, order[ro, lo + i], e - i * n]

