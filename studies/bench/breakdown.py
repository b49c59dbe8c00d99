"""Where a train step's time goes, and how the backward pass scales with the parameter count.

`step_breakdown` times each kind of kernel of the fused step on the network's own workspace,
each in one compiled loop of `reps` calls (no Python between calls): gather, dense forward,
activation forward, loss (softmax cross-entropy and its gradient), dense backward (dW, db and
the per-row delta norms), dense backward input (da = dz W), activation backward, statistics (the
gradient norms the step records) and the optimizer update (Adam, with ||W||), the GEMMs on the
step's own BLAS thread count (`kernels.gemm_threads`). Their sum next to the fused step's time
shows the fusion's own cost (or gain). `backward_scaling` times `step.backward_batch` for
networks of growing width and fits t = a + b P by least squares, with R^2 (the report's sec. 4.2
claim).
"""
import math
import time

import numpy as np

from kernels._jit import kernel
from kernels.activations import SOFTMAX, activation_backward, activation_forward
from kernels.clipping import Clip
from kernels.dense import dense_backward, dense_backward_input, dense_forward
from kernels.gemm_threads import hold_one_thread, release, step_flops
from kernels.layout import allocate_record
from kernels.optimizers import Adam, optimizer_update, optimizer_update_norms
from kernels.step import _block, _dh_target, _gather, _layer_input, _pre_activation, \
    _sum_squares, _vector, _weights, backward_batch, loss_and_output_grad

from studies.bench.cases import STEP_LR, network

PARTS = ("gather", "dense_forward", "activation_forward", "loss", "dense_backward",
         "dense_backward_input", "activation_backward", "statistics", "optimizer")


@kernel
def _time_part(part, net, model, opt, work, data, reps):
    """reps calls of one kind of kernel over every layer, as the fused step makes them."""
    params, grads, _ = model
    codes, hyper, m, v = opt
    x, y, order, n = data
    n_layers = net.sizes.shape[0] - 1
    total = 0.0
    for _ in range(reps):
        if part == 0:
            _gather(work.x, x, order, 0, n)
            _gather(work.y, y, order, 0, n)
        for layer in range(n_layers):
            n_out = net.sizes[layer + 1]
            z = _block(work.z, net, work, layer, n)
            if part == 1:
                dense_forward(z, _layer_input(net, work, layer, n), _weights(params, net, layer),
                              _vector(params, net.b_off[layer], n_out))
            elif part == 2 and net.act_code[layer] != SOFTMAX:
                activation_forward(_block(work.a, net, work, layer, n).ravel(),
                                   _pre_activation(net, work, layer, n).ravel(),
                                   net.act_code[layer], net.act_param[layer])
            elif part == 4:
                dense_backward(_weights(grads, net, layer), _vector(grads, net.b_off[layer],
                                                                    n_out),
                               _block(work.dz, net, work, layer, n),
                               _layer_input(net, work, layer, n))
            elif part == 5 and layer > 0:
                da = work.da[:n * net.sizes[layer]].reshape(n, net.sizes[layer])
                dense_backward_input(da, _block(work.dz, net, work, layer, n),
                                     _weights(params, net, layer))
            elif part == 6 and layer > 0:
                prev = layer - 1
                da = work.da[:n * net.sizes[layer]].reshape(n, net.sizes[layer])
                activation_backward(_dh_target(net, work, prev, n).ravel(), da.ravel(),
                                    _pre_activation(net, work, prev, n).ravel(),
                                    _block(work.a, net, work, prev, n).ravel(),
                                    net.act_code[prev], net.act_param[prev])
            elif part == 7:
                total += _sum_squares(_weights(grads, net, layer).ravel())
                total += _sum_squares(_vector(grads, net.b_off[layer], n_out))
            elif part == 8:
                w_lo, w_hi = net.w_off[layer], net.b_off[layer]
                upd, w_sq = optimizer_update_norms(params, grads, m, v, np.uint64(w_lo),
                                                   np.uint64(w_hi), codes, hyper, 1e-12, 1)
                total += upd + w_sq
                total += optimizer_update(params, grads, m, v, np.uint64(w_hi),
                                          np.uint64(net.seg_start[layer + 1]), codes, hyper,
                                          1e-12, 1)
        if part == 3:
            total += loss_and_output_grad(net, work, n, n)
    return total


@kernel
def _time_backward(net, model, work, n, rec, reps):
    params, grads, _ = model
    for _ in range(reps):
        backward_batch(net, params, grads, work, n, rec, 0, True)


def _prepared(sizes, batch, dtype, seed=0):
    """A network one step into training (so every buffer holds real values) and its data."""
    rng = np.random.default_rng(seed)
    net = network(sizes, dtype)
    x, labels = rng.normal(size=(batch, sizes[0])).astype(dtype), \
        rng.integers(0, sizes[-1], batch)
    opt = Adam(lr=STEP_LR, eps_inside_sqrt=False)
    net.train_step(x, labels, opt)  # leaves the step's intermediates in the workspace
    xk, yk = net.check_batch(x, labels)
    work = net.workspace(batch)
    codes, hyper = opt.codes_and_hyper(Clip())
    return net, (xk, yk, np.arange(batch, dtype=np.int64), batch), (codes, hyper) + \
        tuple(opt.state[:2]), work


def _best_per_call(fn, min_time, repeats):
    """Best time per rep of fn(reps) over `repeats` samples of at least min_time seconds."""
    fn(1)
    reps, best = 1, math.inf
    while True:
        start = time.perf_counter()
        fn(reps)
        elapsed = time.perf_counter() - start
        if elapsed >= min_time or reps >= 1 << 20:
            break
        reps = max(reps * 2, int(reps * min_time / max(elapsed, 1e-9)) + 1)
    for _ in range(repeats):
        start = time.perf_counter()
        fn(reps)
        best = min(best, (time.perf_counter() - start) / reps)
    return best


def step_breakdown(sizes, batch, dtype, min_time=0.01, repeats=5):
    """{part: seconds per step} for the parts of one train step of this network."""
    net, data, opt, work = _prepared(sizes, batch, dtype)
    model = (net.params.copy(), net.grads, net.running)
    out = {}
    held = hold_one_thread(step_flops(sizes, batch))  # the step's own BLAS thread count
    try:
        for index, part in enumerate(PARTS):
            out[part] = _best_per_call(
                lambda reps, i=index: _time_part(i, net.spec, model, opt, work, data, reps),
                min_time, repeats)
    finally:
        release(held)
    return out


def backward_scaling(widths, batch, dtype, n_in=100, n_out=10, depth=3, min_time=0.01,
                     repeats=5):
    """Rows (width, params, seconds) of backward_batch for [n_in, w x depth, n_out] networks,
    and the least-squares fit {slope, intercept, r2} of seconds against parameters."""
    rows = []
    for width in widths:
        sizes = [n_in] + [width] * depth + [n_out]
        net, _, _, work = _prepared(sizes, batch, dtype)
        rec = allocate_record(1, net.n_layers)
        model = (net.params, net.grads, net.running)
        held = hold_one_thread(step_flops(sizes, batch))
        try:
            seconds = _best_per_call(
                lambda reps, net=net, model=model, work=work, rec=rec: _time_backward(
                    net.spec, model, work, batch, rec, reps), min_time, repeats)
        finally:
            release(held)
        rows.append({"width": width, "params": net.n_params, "seconds": seconds,
                     "sizes": str(sizes), "batch": batch, "dtype": str(np.dtype(dtype))})
    return rows, linear_fit([r["params"] for r in rows], [r["seconds"] for r in rows])


def linear_fit(x, y):
    """Least squares y = intercept + slope x, with R^2 = 1 - SS_res / SS_tot."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (intercept + slope * x)
    total = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float((residual ** 2).sum()) / total if total > 0 else math.nan
    return {"slope": float(slope), "intercept": float(intercept), "r2": r2}
