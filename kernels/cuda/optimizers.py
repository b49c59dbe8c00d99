"""Gradient norms, clipping, learning-rate schedules and optimizer updates on the device.

Per step, with no host round trip:
1. grad_sumsq: each block tree-reduces the squared gradients of one chunk of one layer segment
   (float64) into part[r, chunk];
2. finalize_step (one block per run): per-layer sums of the partials, the global norm, the
   finiteness check (a non-finite step sets FLAG and is not applied), t += 1, lr(t - 1) by the
   formula of kernels.schedules, and the clip coefficient of every layer
   (global_norm: min(1, c/(||g|| + 1e-6)); layer_norm: min(1, c/(||g_l|| + 1e-6)));
   the schedule is kernels.schedules.lr_at compiled as a device function;
3. optimizer_update: clipping (scale, or clamp to [-c, c]) fused with the update of
   kernels.optimizers (same codes and formulas: sgd, momentum/nesterov, rmsprop, adam, eps
   inside or outside the square root, L2 weight decay g += wd theta).
"""
import math

from numba import cuda, float64

from ..clipping import CLIP_EPS, GLOBAL_NORM, LAYER_NORM, VALUE
from ..optimizers import ADAM_CODE, C_CLIP, C_EPS_INSIDE, C_NESTEROV, C_OPTIMIZER, C_SCHEDULE, \
    C_WARMUP, H_CLIP, H_DECAY, H_EPS, H_LR, H_MOMENTUM, H_SCHED_P1, H_SCHED_P2, H_WEIGHT_DECAY, \
    MOMENTUM_CODE, RMSPROP_CODE, SGD_CODE
from ..schedules import lr_at
from ._jit import BLOCK, MAX_LAYERS, REDUCE, device, kernel
from .elementwise import block_sum
from .tables import CH_HI, CH_LAYER, CH_LO, FLAG, FLAG_STEP, GRAD, MOM1, MOM2, PART_HI, \
    PART_LO, REC_LOSS, REC_NORM, T, THETA


# lr at step t (from 0): kernels.schedules.lr_at, the very function the CPU step compiles.
scheduled_lr = device(lr_at)


@kernel
def grad_sumsq(part, state, chunks):
    """part[r, c] = sum of g_i^2 over chunk c = block x of run r = block y (float64)."""
    shared = cuda.shared.array(REDUCE, float64)
    c = cuda.blockIdx.x
    r = cuda.blockIdx.y
    acc = 0.0
    for i in range(chunks[c, CH_LO] + cuda.threadIdx.x, chunks[c, CH_HI], REDUCE):
        g = float(state[GRAD, r, i])
        acc += g * g
    total = block_sum(shared, acc)
    if cuda.threadIdx.x == 0:
        part[r, c] = total


@kernel
def finalize_step(part, rec, tstat, ctrl, codes, hyper, net, step):
    """Run = block x: global norm -> rec[REC_NORM]; FLAG on a non-finite loss or norm; else
    t += 1, ctrl[r, L] = lr(t - 1) and ctrl[r, l] = clip coefficient of layer l."""
    seg = cuda.shared.array(MAX_LAYERS, float64)
    r = cuda.blockIdx.x
    n_layers = net.shape[0]
    for layer in range(cuda.threadIdx.x, n_layers, REDUCE):
        s = 0.0
        for c in range(net[layer, PART_LO], net[layer, PART_HI]):
            s += part[r, c]
        seg[layer] = s
    cuda.syncthreads()
    if cuda.threadIdx.x != 0 or tstat[r, FLAG] != 0:
        return
    total = 0.0
    for layer in range(n_layers):
        total += seg[layer]
    norm = math.sqrt(total)
    rec[REC_NORM, r, step] = norm
    loss = rec[REC_LOSS, r, step]
    if not (math.isfinite(loss) and math.isfinite(norm)):
        tstat[r, FLAG] = 1
        tstat[r, FLAG_STEP] = step
        return
    t = tstat[r, T] + 1
    tstat[r, T] = t
    ctrl[r, n_layers] = scheduled_lr(hyper[r, H_LR], codes[r, C_SCHEDULE], hyper[r, H_SCHED_P1],
                                     hyper[r, H_SCHED_P2], codes[r, C_WARMUP], t - 1)
    clip = codes[r, C_CLIP]
    c = hyper[r, H_CLIP]
    for layer in range(n_layers):
        coef = 1.0
        if clip == GLOBAL_NORM:
            coef = c / (norm + CLIP_EPS)
        elif clip == LAYER_NORM:
            coef = c / (math.sqrt(seg[layer]) + CLIP_EPS)
        ctrl[r, layer] = coef if coef < 1.0 else 1.0


@device
def _clipped(state, r, i, clip, c, coef):
    """The gradient after clipping, written back in place (as kernels.clipping does)."""
    g = state[GRAD, r, i]
    if clip == VALUE:
        if g > c:
            state[GRAD, r, i] = c
        elif g < -c:
            state[GRAD, r, i] = -c
    elif coef < 1.0:
        state[GRAD, r, i] = g * coef
    return state[GRAD, r, i]


@kernel
def optimizer_update(state, ctrl, tstat, codes, hyper, chunks):
    """theta -= lr * step(g) over chunk = block x of run = block y (see the module docstring)."""
    c = cuda.blockIdx.x
    r = cuda.blockIdx.y
    if tstat[r, FLAG] != 0:
        return
    n_layers = ctrl.shape[1] - 1
    lr = ctrl[r, n_layers]
    coef = ctrl[r, chunks[c, CH_LAYER]]
    clip = codes[r, C_CLIP]
    cval = hyper[r, H_CLIP]
    opt = codes[r, C_OPTIMIZER]
    wd = hyper[r, H_WEIGHT_DECAY]
    mu = hyper[r, H_MOMENTUM]
    decay = hyper[r, H_DECAY]
    eps = hyper[r, H_EPS]
    eps_inside = codes[r, C_EPS_INSIDE] != 0
    nesterov = codes[r, C_NESTEROV] != 0
    t = tstat[r, T]
    bc1 = 1.0 - mu ** t
    bc2 = 1.0 - decay ** t
    for i in range(chunks[c, CH_LO] + cuda.threadIdx.x, chunks[c, CH_HI], BLOCK):
        g = _clipped(state, r, i, clip, cval, coef)
        if opt == SGD_CODE:
            state[THETA, r, i] -= lr * (g + wd * state[THETA, r, i])
            continue
        g = g + wd * state[THETA, r, i]
        if opt == MOMENTUM_CODE:
            state[MOM2, r, i] = mu * state[MOM2, r, i] + g
            v = state[MOM2, r, i]
            d = lr * (g + mu * v if nesterov else v)
        elif opt == RMSPROP_CODE:
            state[MOM2, r, i] = decay * state[MOM2, r, i] + (1.0 - decay) * g * g
            v = state[MOM2, r, i]
            d = lr * g / (math.sqrt(v + eps) if eps_inside else math.sqrt(v) + eps)
        elif opt == ADAM_CODE:
            state[MOM1, r, i] = mu * state[MOM1, r, i] + (1.0 - mu) * g
            state[MOM2, r, i] = decay * state[MOM2, r, i] + (1.0 - decay) * g * g
            vhat = state[MOM2, r, i] / bc2
            denom = math.sqrt(vhat + eps) if eps_inside else math.sqrt(vhat) + eps
            d = lr * (state[MOM1, r, i] / bc1) / denom
        else:
            d = 0.0
        state[THETA, r, i] -= d
