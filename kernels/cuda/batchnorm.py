"""Batch normalization on the device: one thread per (unit, run), looping over the batch rows, so
a warp reads consecutive units of a row (coalesced). Formulas as kernels.batchnorm:
xhat = (z - mu_B)/sqrt(var_B + eps) (biased batch variance), h = gamma xhat + beta, a = f(h);
running r <- (1-m) r + m s with the unbiased variance."""
import math

from numba import cuda

from ._jit import device, kernel
from .elementwise import act_forward
from .tables import ACT, ACT_PARAM, BETA_OFF, BN, BN_EPS, BN_MOM, FLAG, G_OFF, MEAN, N_OUT, \
    S_A, S_DH, S_DZ, S_H, S_XHAT, S_Z, THETA, GRAD, U_OFF, UNIT, VAR


@device
def _batch_stats(units, r, off, n, j, n_batch):
    """(mean, biased variance) of column j of the (n_batch, n) block at `off`."""
    s = 0.0
    for i in range(n_batch):
        s += units[S_Z, r, off + i * n + j]
    mean = s / n_batch
    q = 0.0
    for i in range(n_batch):
        d = units[S_Z, r, off + i * n + j] - mean
        q += d * d
    return mean, q / n_batch


@kernel
def batchnorm_forward(units, state, bnstat, running, net, netf, layer, n_batch, training):
    """h = gamma (z - mu)/sqrt(var + eps) + beta and a = f(h) for unit j = thread, run = block y;
    (mu, var) are the batch statistics (kept in bnstat) when training, else the running ones."""
    j = cuda.grid(1)
    r = cuda.blockIdx.y
    n = net[layer, N_OUT]
    if j >= n:
        return
    off = net[layer, U_OFF]
    u = net[layer, UNIT] + j
    eps = netf[layer, BN_EPS]
    if training:
        mean, var = _batch_stats(units, r, off, n, j, n_batch)
        bnstat[MEAN, r, u] = mean
        bnstat[VAR, r, u] = var
        mean = bnstat[MEAN, r, u]
        var = bnstat[VAR, r, u]
    else:
        mean = running[r, u]
        var = running[r, running.shape[1] // 2 + u]
    gamma = state[THETA, r, net[layer, G_OFF] + j]
    beta = state[THETA, r, net[layer, BETA_OFF] + j]
    code = net[layer, ACT]
    p = netf[layer, ACT_PARAM]
    for i in range(n_batch):
        idx = off + i * n + j
        if training:
            units[S_XHAT, r, idx] = (units[S_Z, r, idx] - mean) / math.sqrt(var + eps)
            units[S_H, r, idx] = gamma * units[S_XHAT, r, idx] + beta
        else:
            units[S_H, r, idx] = gamma * (units[S_Z, r, idx] - mean) / math.sqrt(var + eps) + beta
        units[S_A, r, idx] = act_forward(units[S_H, r, idx], code, p)


@kernel
def batchnorm_backward(units, state, bnstat, net, netf, layer, n_batch):
    """dgamma = sum_i dh xhat, dbeta = sum_i dh,
    dz = gamma/(B sigma) (B dh - dbeta - xhat dgamma) with sigma = sqrt(var_B + eps)."""
    j = cuda.grid(1)
    r = cuda.blockIdx.y
    n = net[layer, N_OUT]
    if j >= n:
        return
    off = net[layer, U_OFF]
    dgamma = 0.0
    dbeta = 0.0
    for i in range(n_batch):
        dh = units[S_DH, r, off + i * n + j]
        dbeta += dh
        dgamma += dh * units[S_XHAT, r, off + i * n + j]
    state[GRAD, r, net[layer, G_OFF] + j] = dgamma
    state[GRAD, r, net[layer, BETA_OFF] + j] = dbeta
    dgamma = state[GRAD, r, net[layer, G_OFF] + j]
    dbeta = state[GRAD, r, net[layer, BETA_OFF] + j]
    var = bnstat[VAR, r, net[layer, UNIT] + j]
    scale = state[THETA, r, net[layer, G_OFF] + j] / (
        n_batch * math.sqrt(var + netf[layer, BN_EPS]))
    for i in range(n_batch):
        idx = off + i * n + j
        units[S_DZ, r, idx] = scale * (n_batch * units[S_DH, r, idx] - dbeta
                                       - units[S_XHAT, r, idx] * dgamma)


@kernel
def batchnorm_update_running(running, bnstat, tstat, net, netf, n_batch):
    """r <- (1-m) r + m s for every batch-norm unit (thread) of run block y, the variance
    unbiased by B/(B-1); skipped for a run whose step was not finite."""
    u = cuda.grid(1)
    r = cuda.blockIdx.y
    units = running.shape[1] // 2
    if u >= units or tstat[r, FLAG] != 0:
        return
    for layer in range(net.shape[0]):
        lo = net[layer, UNIT]
        if lo <= u < lo + net[layer, N_OUT] and net[layer, BN] != 0:
            m = netf[layer, BN_MOM]
            unbias = n_batch / (n_batch - 1.0) if n_batch > 1 else 1.0
            running[r, u] = (1.0 - m) * running[r, u] + m * bnstat[MEAN, r, u]
            running[r, units + u] = (1.0 - m) * running[r, units + u] \
                + m * bnstat[VAR, r, u] * unbias
