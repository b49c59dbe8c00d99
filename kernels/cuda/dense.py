"""Affine layers on the device: one tiled shared-memory GEMM with three epilogues.

C = A B is computed in TILE x TILE output tiles per block (grid: column tiles, row tiles, runs);
the block stages TILE_K-deep slices of A and B in shared memory (loads coalesced along whichever
operand axis is contiguous) and each thread accumulates a MICRO x MICRO register tile at rows
ty + ii*THREADS_2D and columns tx + jj*THREADS_2D (conflict-free shared reads, coalesced stores).
- forward:          Z = A_prev W^T + b, and A = f(Z) fused when no batch norm follows
- backward weights: [dW | db] = dZ^T [A_prev | 1]   (db as an extra column of ones)
- backward input:   dh_prev = (dZ W) * f'(h_prev)   (activation backward fused)
"""
from numba import cuda

from ..activations import SOFTMAX
from ._jit import MICRO, THREADS_2D, TILE, TILE_K, device, kernel
from .elementwise import act_backward, act_forward
from .tables import ACT, ACT_PARAM, B_OFF, BN, GRAD, IN_OFF, N_IN, N_OUT, S_A, S_DH, S_DZ, S_H, \
    S_Z, THETA, U_OFF, W_OFF

TILE_PAD = TILE + 1
N_THREADS = THREADS_2D * THREADS_2D


@device
def _stage(tile, src, r, off, o_stride, k_stride, k_len, n_real, n_outer, outer0, k0, along_k):
    """tile[kk, oo] = element (o, k) = src[r, off + o*o_stride + k*k_stride] of an operand, with
    o = outer0 + oo, k = k0 + kk: 1 where n_real <= o < n_outer (a column of ones), 0 beyond.
    along_k: consecutive threads take consecutive k (coalesced when k_stride == 1)."""
    tid = cuda.threadIdx.y * THREADS_2D + cuda.threadIdx.x
    for e in range(tid, TILE_K * TILE, N_THREADS):
        if along_k:
            kk = e % TILE_K
            oo = e // TILE_K
        else:
            oo = e % TILE
            kk = e // TILE
        o = outer0 + oo
        k = k0 + kk
        if k < k_len and o < n_real:
            tile[kk, oo] = src[r, off + o * o_stride + k * k_stride]
        elif k < k_len and o < n_outer:
            tile[kk, oo] = 1.0
        else:
            tile[kk, oo] = 0.0


@device
def _gemm(acc, sa, sb, a, ra, a_off, a_rs, a_cs, b, rb, b_off, b_rs, b_cs, b_real, m, n, k_len):
    """acc[ii, jj] = sum_k A[i, k] B[k, j] for this thread's outputs, where
    A[i, k] = a[ra, a_off + i*a_rs + k*a_cs] (i < m) and B[k, j] = b[rb, b_off + k*b_rs + j*b_cs]
    for j < b_real, 1 for b_real <= j < n."""
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    row0 = cuda.blockIdx.y * TILE
    col0 = cuda.blockIdx.x * TILE
    ra_ = cuda.local.array(MICRO, acc.dtype)
    rb_ = cuda.local.array(MICRO, acc.dtype)
    for ii in range(MICRO):
        for jj in range(MICRO):
            acc[ii, jj] = 0.0
    for k0 in range(0, k_len, TILE_K):
        _stage(sa, a, ra, a_off, a_rs, a_cs, k_len, m, m, row0, k0, a_cs == 1)
        _stage(sb, b, rb, b_off, b_cs, b_rs, k_len, b_real, n, col0, k0, b_rs == 1)
        cuda.syncthreads()
        for kk in range(TILE_K):
            for ii in range(MICRO):
                ra_[ii] = sa[kk, ty + ii * THREADS_2D]
            for jj in range(MICRO):
                rb_[jj] = sb[kk, tx + jj * THREADS_2D]
            for ii in range(MICRO):
                for jj in range(MICRO):
                    acc[ii, jj] += ra_[ii] * rb_[jj]
        cuda.syncthreads()


@kernel
def dense_forward(units, xin, state, net, netf, layer, n_batch):
    """Z = A_prev W^T + b (rows of the batch x units of the layer), run = block z; with no batch
    norm and a non-softmax activation, A = f(Z) in the same pass."""
    sa = cuda.shared.array((TILE_K, TILE_PAD), units.dtype)
    sb = cuda.shared.array((TILE_K, TILE_PAD), units.dtype)
    acc = cuda.local.array((MICRO, MICRO), units.dtype)
    r = cuda.blockIdx.z
    n_in = net[layer, N_IN]
    n_out = net[layer, N_OUT]
    src = xin if layer == 0 else units[S_A]
    rs = r if (layer > 0 or xin.shape[0] > 1) else 0
    _gemm(acc, sa, sb, src, rs, net[layer, IN_OFF], n_in, 1, state[THETA], r, net[layer, W_OFF],
          1, n_in, n_out, n_batch, n_out, n_in)
    fuse = net[layer, BN] == 0 and net[layer, ACT] != SOFTMAX
    code = net[layer, ACT]
    p = netf[layer, ACT_PARAM]
    for ii in range(MICRO):
        i = cuda.blockIdx.y * TILE + cuda.threadIdx.y + ii * THREADS_2D
        for jj in range(MICRO):
            j = cuda.blockIdx.x * TILE + cuda.threadIdx.x + jj * THREADS_2D
            if i < n_batch and j < n_out:
                idx = net[layer, U_OFF] + i * n_out + j
                units[S_Z, r, idx] = acc[ii, jj] + state[THETA, r, net[layer, B_OFF] + j]
                if fuse:
                    units[S_A, r, idx] = act_forward(units[S_Z, r, idx], code, p)


@kernel
def dense_backward_weights(state, units, xin, net, layer, n_batch):
    """dW = dZ^T A_prev and db = sum_i dZ_i, as one GEMM with a column of ones appended to
    A_prev: output rows = units of the layer, columns = its inputs and the bias."""
    sa = cuda.shared.array((TILE_K, TILE_PAD), units.dtype)
    sb = cuda.shared.array((TILE_K, TILE_PAD), units.dtype)
    acc = cuda.local.array((MICRO, MICRO), units.dtype)
    r = cuda.blockIdx.z
    n_in = net[layer, N_IN]
    n_out = net[layer, N_OUT]
    src = xin if layer == 0 else units[S_A]
    rs = r if (layer > 0 or xin.shape[0] > 1) else 0
    _gemm(acc, sa, sb, units[S_DZ], r, net[layer, U_OFF], 1, n_out, src, rs, net[layer, IN_OFF],
          n_in, 1, n_in, n_out, n_in + 1, n_batch)
    for ii in range(MICRO):
        i = cuda.blockIdx.y * TILE + cuda.threadIdx.y + ii * THREADS_2D
        for jj in range(MICRO):
            j = cuda.blockIdx.x * TILE + cuda.threadIdx.x + jj * THREADS_2D
            if i < n_out and j < n_in:
                state[GRAD, r, net[layer, W_OFF] + i * n_in + j] = acc[ii, jj]
            elif i < n_out and j == n_in:
                state[GRAD, r, net[layer, B_OFF] + i] = acc[ii, jj]


@kernel
def dense_backward_input(units, state, net, netf, layer, n_batch):
    """dh_prev = (dZ W) * f'(h_prev) for layer > 0, written to DZ of the previous layer, or to
    its DH when a batch norm sits between its affine map and activation."""
    sa = cuda.shared.array((TILE_K, TILE_PAD), units.dtype)
    sb = cuda.shared.array((TILE_K, TILE_PAD), units.dtype)
    acc = cuda.local.array((MICRO, MICRO), units.dtype)
    r = cuda.blockIdx.z
    n_in = net[layer, N_IN]
    n_out = net[layer, N_OUT]
    _gemm(acc, sa, sb, units[S_DZ], r, net[layer, U_OFF], n_out, 1, state[THETA], r,
          net[layer, W_OFF], n_in, 1, n_in, n_batch, n_in, n_out)
    prev = layer - 1
    bn = net[prev, BN] != 0
    code = net[prev, ACT]
    p = netf[prev, ACT_PARAM]
    for ii in range(MICRO):
        i = cuda.blockIdx.y * TILE + cuda.threadIdx.y + ii * THREADS_2D
        for jj in range(MICRO):
            j = cuda.blockIdx.x * TILE + cuda.threadIdx.x + jj * THREADS_2D
            if i < n_batch and j < n_in:
                idx = net[prev, U_OFF] + i * n_in + j
                h = units[S_H, r, idx] if bn else units[S_Z, r, idx]
                dh = act_backward(acc[ii, jj], h, units[S_A, r, idx], code, p)
                if bn:
                    units[S_DH, r, idx] = dh
                else:
                    units[S_DZ, r, idx] = dh
