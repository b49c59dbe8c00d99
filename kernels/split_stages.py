"""The pieces of a split train step (`split_step`), each run on one side's share: half of
the batch, or one of the two parameter ranges [0, s) and [s, P) that meet at `split_point`.

Stage 1, `half_pass`: forward, loss and backward of rows [lo, hi) on the side's workspace and
gradient buffer, the output delta scaled for a mean over the whole batch, so the halves'
gradients sum to the batch's. Stage 2, `combine_range`: g += g_1 on the range with the
per-layer sums of squares (and, when the clipping needs no norm, the clipping and the
update's finiteness pass). Stage 3, `decide_step` (the caller): the loss, the norms, the
records, whether the step goes on. Stage 4, `clip_and_check` (norm clipping only). Stage 5,
`update_range`, then `finish_step`'s records. The sides meet through `exchange`, a float64
buffer per network: scalars, then blocks of one value per layer (one block per side where
each side adds its part). Sums over a range are accumulated in LANES partial sums in order,
so their bits do not depend on which thread runs the piece.
"""
import math

import numpy as np

from ._jit import LANES, kernel, kernel_ordered
from .clipping import NO_CLIP, VALUE, clamp_segment, clip_coefficients, clip_range
from .layout import DIVERGED_GRADIENT, DIVERGED_LOSS, DIVERGED_UPDATE
from .optimizers import C_CLIP, C_SCHEDULE, C_WARMUP, H_CLIP, H_LR, H_SCHED_P1, H_SCHED_P2, \
    optimizer_update, optimizer_update_finite, optimizer_update_norms
from .schedules import scheduled_lr
from .step import _gather, backward_batch, forward_batch, loss_and_output_grad

CHUNK = 4096  # entries of a stage-2 pass while they are in cache

# exchange (float64, one per network): scalars, then blocks of one value per layer.
(E_LOSS1, E_AFTER0, E_AFTER1, E_FINITE0, E_FINITE1, E_GO_ON, E_LR, E_T, E_BN_EPS,
 E_BN_MOMENTUM) = range(10)
E_LAYERS = 16
B_WSQ, B_BSQ, B_COEF, B_WNORM, B_UPD = 0, 2, 4, 5, 7  # two blocks each (one per side) but COEF


def exchange_length(n_layers):
    return E_LAYERS + 9 * n_layers


def split_point(sizes):
    """Where the parameter ranges of the two sides meet: half the parameters, rounded down
    to a multiple of LANES (a property of the architecture only)."""
    n_params = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
    return n_params // 2 // LANES * LANES


@kernel
def exchange_block(exch, block, side, n_layers):
    start = E_LAYERS + (block + side) * n_layers
    return exch[start:start + n_layers]


@kernel
def both_sides(exch, block, n_layers, layer):
    """The two sides' parts of one layer's value in `block`, added."""
    return exchange_block(exch, block, 0, n_layers)[layer] + \
        exchange_block(exch, block, 1, n_layers)[layer]


@kernel
def half_pass(net, model, work, rec, row, data, lo, hi, n_total):
    """Rows order[lo:hi] of the batch: forward, loss and backward on `work` into model's
    grads, the output delta scaled for a mean over n_total rows; delta norms into rec row
    `row`. Returns the mean loss of these rows (0 for no rows, with zero gradients)."""
    params, grads, running = model
    x, y, order = data
    n = hi - lo
    if n == 0:
        grads[:] = 0.0
        rec.delta_norm[row, :] = 0.0
        return 0.0
    _gather(work.x, x, order, lo, hi)
    _gather(work.y, y, order, lo, hi)
    forward_batch(net, params, running, work, n, True)
    loss = loss_and_output_grad(net, work, n, n_total)
    backward_batch(net, params, grads, work, n, rec, row, False)
    return loss


@kernel_ordered
def add_squares(g, g1, lo, hi):
    """g[lo:hi] += g1[lo:hi]; returns the sum of squares of the sums (LANES partial sums in
    order, as the optimizer passes sum; unsigned indices, so the loop vectorizes)."""
    acc = np.zeros(LANES)
    start = np.uint64(lo)
    n = np.uint64(hi - lo if hi > lo else 0)
    stride = np.uint64(LANES)
    full = n // stride * stride
    for base in range(start, start + full, stride):
        for j in range(LANES):
            i = base + np.uint64(j)
            s = g[i] + g1[i]
            g[i] = s
            acc[j] += float(s) * float(s)
    for j in range(n - full):
        i = start + full + np.uint64(j)
        s = g[i] + g1[i]
        g[i] = s
        acc[j] += float(s) * float(s)
    total = 0.0
    for j in range(LANES):
        total += acc[j]
    return total


@kernel
def checks_early(codes):
    """True when the clipping (none, or value: elementwise) needs no norm, so that stage 2
    also clips and runs the update's finiteness pass, and stage 4 is skipped."""
    return codes[C_CLIP] == NO_CLIP or codes[C_CLIP] == VALUE


@kernel
def combine_range(net, params, grads, grads1, opt, lo, hi, exch, side):
    """Stage 2 on [lo, hi): g += g_1 and the per-layer sums of squares of dW and db; when the
    clipping needs no norm, also the clipping and the update's finiteness pass, CHUNK entries
    at a time while they are in cache (1.0 into the side's flag when every chunk passes)."""
    codes, hyper, m, v = opt
    n_layers = net.sizes.shape[0] - 1
    wsq = exchange_block(exch, B_WSQ, side, n_layers)
    bsq = exchange_block(exch, B_BSQ, side, n_layers)
    early = checks_early(codes)
    lr, t = exch[E_LR], int(exch[E_T])
    after, finite = 0.0, True
    for layer in range(n_layers):
        w_lo, b_lo, end = net.w_off[layer], net.b_off[layer], net.seg_start[layer + 1]
        for piece in range(2):
            a, b = (max(lo, w_lo), min(hi, b_lo)) if piece == 0 else (max(lo, b_lo),
                                                                      min(hi, end))
            sq = 0.0
            for c in range(a, b, CHUNK):
                c_end = min(b, c + CHUNK)
                sq += add_squares(grads, grads1, c, c_end)
                if early:
                    if codes[C_CLIP] == VALUE:
                        after += clamp_segment(grads, c, c_end, hyper[H_CLIP])
                    finite &= optimizer_update_finite(params, grads, m, v, np.uint64(c),
                                                      np.uint64(c_end), codes, hyper, lr, t)
            if piece == 0:
                wsq[layer] = sq
            else:
                bsq[layer] = sq
    exch[E_AFTER0 + side] = after
    exch[E_FINITE0 + side] = 1.0 if finite else 0.0


@kernel
def clip_and_check(net, params, grads, opt, lo, hi, exch, side):
    """Stage 4 on [lo, hi) for norm clipping: the factors decided in stage 3, then the
    update's finiteness pass (1.0 into the side's flag when it passes)."""
    codes, hyper, m, v = opt
    n_layers = net.sizes.shape[0] - 1
    clip_range(grads, lo, hi, net.seg_start, exchange_block(exch, B_COEF, 0, n_layers),
               codes[C_CLIP], hyper[H_CLIP])
    finite = optimizer_update_finite(params, grads, m, v, np.uint64(lo), np.uint64(hi), codes,
                                     hyper, exch[E_LR], int(exch[E_T]))
    exch[E_FINITE0 + side] = 1.0 if finite else 0.0


@kernel
def update_range(net, params, grads, opt, lo, hi, exch, side):
    """Stage 5 on [lo, hi): the update, with each layer's parts of ||W||^2 (before) and
    ||Delta W||^2."""
    codes, hyper, m, v = opt
    n_layers = net.sizes.shape[0] - 1
    w_norm = exchange_block(exch, B_WNORM, side, n_layers)
    upd = exchange_block(exch, B_UPD, side, n_layers)
    lr, t = exch[E_LR], int(exch[E_T])
    for layer in range(n_layers):
        w_lo, b_lo, end = net.w_off[layer], net.b_off[layer], net.seg_start[layer + 1]
        a, b = max(lo, w_lo), min(hi, b_lo)
        if a < b:
            upd[layer], w_norm[layer] = optimizer_update_norms(
                params, grads, m, v, np.uint64(a), np.uint64(b), codes, hyper, lr, t)
        else:
            upd[layer], w_norm[layer] = 0.0, 0.0
        a, b = max(lo, b_lo), min(hi, end)
        if a < b:
            optimizer_update(params, grads, m, v, np.uint64(a), np.uint64(b), codes, hyper, lr,
                             t)


@kernel
def begin_step(opt_state, exch):
    """Before a step (the caller): its optimizer step t and learning rate, for both sides."""
    codes, hyper, t_state = opt_state
    t = t_state[0] + 1
    exch[E_T] = t
    exch[E_LR] = scheduled_lr(hyper[H_LR], codes[C_SCHEDULE], hyper[H_SCHED_P1],
                              hyper[H_SCHED_P2], codes[C_WARMUP], t - 1)


@kernel
def decide_step(net, rec, rec1, step, n0, n1, loss0, opt_state, exch):
    """Stage 3 (the caller): the step's loss, norms and records from both sides; whether it
    goes on (into exch[E_GO_ON]); for norm clipping, the factors. Returns the divergence cause
    (0: none; the update's only when stage 2 ran its finiteness pass)."""
    codes, hyper, t_state = opt_state
    n_layers = net.sizes.shape[0] - 1
    n = n0 + n1
    loss = (n0 * loss0 + n1 * exch[E_LOSS1]) / n
    seg_sq = np.empty(n_layers)
    total = 0.0
    for layer in range(n_layers):
        w_sq = both_sides(exch, B_WSQ, n_layers, layer)
        b_sq = both_sides(exch, B_BSQ, n_layers, layer)
        seg_sq[layer] = w_sq + b_sq
        total += seg_sq[layer]
        rec.w_grad_norm[step, layer] = math.sqrt(w_sq)
        rec.b_grad_norm[step, layer] = math.sqrt(b_sq)
        rec.delta_norm[step, layer] += rec1.delta_norm[0, layer]
    norm = math.sqrt(total)
    rec.loss[step] = loss
    rec.grad_norm[step] = norm
    exch[E_GO_ON] = 0.0
    if not (math.isfinite(loss) and math.isfinite(norm)):
        return DIVERGED_LOSS if not math.isfinite(loss) else DIVERGED_GRADIENT
    rec.lr[step] = exch[E_LR]
    clipped = clip_coefficients(seg_sq, codes[C_CLIP], hyper[H_CLIP],
                                exchange_block(exch, B_COEF, 0, n_layers))
    rec.grad_norm_clipped[step] = math.sqrt(exch[E_AFTER0] + exch[E_AFTER1]) \
        if codes[C_CLIP] == VALUE else clipped
    if checks_early(codes) and (exch[E_FINITE0] == 0.0 or exch[E_FINITE1] == 0.0):
        return DIVERGED_UPDATE
    exch[E_GO_ON] = 1.0
    return 0


@kernel
def finish_step(net, rec, step, exch):
    """After stage 5 (the caller): the step's ||W|| and ||Delta W|| from both sides' parts."""
    n_layers = net.sizes.shape[0] - 1
    for layer in range(n_layers):
        w_sq = both_sides(exch, B_WNORM, n_layers, layer)
        upd = both_sides(exch, B_UPD, n_layers, layer)
        rec.w_norm[step, layer] = math.sqrt(w_sq)
        rec.w_update_norm[step, layer] = math.sqrt(upd)
