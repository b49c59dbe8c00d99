"""CUDA kernels (kernels.cuda) against the NumPy references and the CPU MLP.

Runs on a GPU, or under the numba-cuda simulator (tests/kernels/test_cuda_sim.py runs this file in a
subprocess with NUMBA_ENABLE_CUDASIM=1); skips otherwise. Shapes are tiny (the simulator runs
one Python thread per CUDA thread) but span several tiles and chunks there.
"""
import numpy as np
import pytest

import kernels.cuda as kcuda
from kernels import MLP
from kernels.activations import ACTIVATIONS, derivative_reference, forward_reference
from kernels.batchnorm import BN_EPS, batchnorm_backward_reference, batchnorm_forward_reference
from kernels.clipping import Clip, clip_reference
from kernels.dense import dense_backward_reference, dense_forward_reference
from kernels.losses import cross_entropy_reference, mse_reference
from kernels.mlp import DivergenceError
from kernels.optimizers import SGD, Adam, Momentum, RMSProp, update_reference
from kernels.schedules import Cosine, Exponential, InverseTime, Step
from kernels.tolerance import assert_close

SKIP_REASON = ("no CUDA GPU and NUMBA_ENABLE_CUDASIM is not set (tests/kernels/test_cuda_sim.py runs "
               "this file under the simulator)")


@pytest.fixture(autouse=True)
def _needs_cuda(request):
    """Every test but the availability ones needs a GPU or the simulator."""
    if not request.node.name.startswith("test_unavailable") and not kcuda.available():
        pytest.skip(SKIP_REASON)

HIDDEN = [name for name, a in ACTIVATIONS.items() if a.hidden]


def _device():
    """The kernel modules, imported only when CUDA is available."""
    from kernels.cuda import batchnorm, dense, elementwise, optimizers, step, tables
    return batchnorm, dense, elementwise, optimizers, step, tables


def make_engine(sizes, runs=1, batch=6, dtype="float64", seed=0, **mlp_args):
    """CPU nets with distinct random parameters and an Engine holding them."""
    _, _, _, _, step, _ = _device()
    nets = [MLP(sizes, dtype=dtype, seed=seed + r, bias_scale=0.2, **mlp_args)
            for r in range(runs)]
    rng = np.random.default_rng(seed)
    for net in nets:
        for g, b in zip(net.gammas, net.betas):
            if g is not None:
                g[...] = rng.uniform(0.5, 1.5, g.shape)
                b[...] = rng.normal(0, 0.3, b.shape)
    eng = step.Engine(nets[0].spec, nets[0].dtype, np.stack([n.params for n in nets]),
                      np.stack([n.running for n in nets]))
    eng.reserve(batch)
    return nets, eng


def block(units_host, eng, slot, layer, n_batch, run=0):
    """Layer `layer`'s (n_batch, width) block of a per-unit workspace slot (host copy)."""
    start = eng.cap * int(eng.spec.unit_start[layer])
    width = eng.sizes[layer + 1]
    return units_host[slot, run, start:start + n_batch * width].reshape(n_batch, width)


def put_block(units_host, eng, slot, layer, values, run=0):
    start = eng.cap * int(eng.spec.unit_start[layer])
    units_host[slot, run, start:start + values.size] = values.ravel()


# ---------------------------------------------------------------- elementwise
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", HIDDEN)
def test_activation_kernels_match_reference(name, dtype):
    _, _, elementwise, _, _, _ = _device()
    from numba import cuda
    from kernels.cuda._jit import BLOCK, blocks
    h = np.array([-3.0, -1.2, -0.3, 0.0, 0.2, 0.7, 1.5, 2.5, 4.0], dtype)
    param = 0.2 if name in ("leaky_relu", "elu") else ACTIVATIONS[name].default_param
    a = forward_reference(name, h, param).astype(dtype)
    da = np.linspace(-1, 1, h.size).astype(dtype)
    out, dh = cuda.device_array_like(h), cuda.device_array_like(h)
    code = ACTIVATIONS[name].code
    elementwise.activation_forward[blocks(h.size, BLOCK), BLOCK](out, cuda.to_device(h), code,
                                                                 param)
    elementwise.activation_backward[blocks(h.size, BLOCK), BLOCK](
        dh, cuda.to_device(da), cuda.to_device(h), cuda.to_device(a), code, param)
    assert_close(out.copy_to_host(), forward_reference(name, h, param), dtype, f"{name} f")
    assert_close(dh.copy_to_host(), da * derivative_reference(name, h, param), dtype,
                 f"{name} f'")


def test_gather_rows():
    _, _, elementwise, _, _, _ = _device()
    from numba import cuda
    rng = np.random.default_rng(1)
    src = rng.normal(size=(2, 7, 3))
    order = np.array([[4, 1, 6, 0, 2, 5, 3], [0, 6, 5, 4, 3, 2, 1]], np.int64)
    dst = cuda.to_device(np.zeros((2, 12)))
    elementwise.gather_rows[(3, 2), 8](dst, cuda.to_device(src), cuda.to_device(order), 2, 4)
    expected = np.stack([src[r, order[r, 2:6]].ravel() for r in range(2)])
    np.testing.assert_array_equal(dst.copy_to_host(), expected)


# ---------------------------------------------------------------- dense
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_dense_kernels_match_reference(dtype):
    """Z = A W^T + b with the fused activation, [dW | db] = dZ^T [A | 1] and
    dh_prev = (dZ W) f'(h_prev), on two runs, shapes spanning two tiles in the simulator."""
    _, dense, _, _, _, tables = _device()
    from kernels.cuda._jit import THREADS_2D, TILE, blocks
    n_batch = 9
    nets, eng = make_engine([5, 9, 6], runs=2, batch=n_batch, dtype=dtype, activation="gelu",
                            loss="mse", output_activation="sigmoid")
    rng = np.random.default_rng(2)
    units = eng.units.copy_to_host()
    a_prev = [rng.normal(size=(n_batch, 9)).astype(dtype) for _ in range(2)]
    z_prev = [rng.normal(size=(n_batch, 9)).astype(dtype) for _ in range(2)]
    dz = [rng.normal(size=(n_batch, 6)).astype(dtype) for _ in range(2)]
    for r in range(2):
        put_block(units, eng, tables.S_A, 0, a_prev[r], r)
        put_block(units, eng, tables.S_Z, 0, z_prev[r], r)
        put_block(units, eng, tables.S_DZ, 1, dz[r], r)
    eng.units.copy_to_device(units)
    grid = (blocks(6, TILE), blocks(n_batch, TILE), 2)
    dense.dense_forward[grid, (THREADS_2D, THREADS_2D)](eng.units, eng.units[tables.S_A],
                                                        eng.state, eng.net, eng.netf, 1, n_batch)
    dense.dense_backward_weights[(blocks(10, TILE), blocks(6, TILE), 2), (THREADS_2D,) * 2](
        eng.state, eng.units, eng.units[tables.S_A], eng.net, 1, n_batch)
    dense.dense_backward_input[(blocks(9, TILE), blocks(n_batch, TILE), 2), (THREADS_2D,) * 2](
        eng.units, eng.state, eng.net, eng.netf, 1, n_batch)
    units, grads = eng.units.copy_to_host(), eng.grads_host()
    for r, net in enumerate(nets):
        w, b = net.weights[1], net.biases[1]
        z = dense_forward_reference(a_prev[r], w, b)
        assert_close(block(units, eng, tables.S_Z, 1, n_batch, r), z, dtype, "Z")
        assert_close(block(units, eng, tables.S_A, 1, n_batch, r),
                     forward_reference("sigmoid", z), dtype, "A")
        dw, db, da = dense_backward_reference(dz[r], a_prev[r], w)
        g = net.grads_by_name(grads[r].astype(np.float64))
        assert_close(g["W"][1], dw, dtype, "dW")
        assert_close(g["b"][1], db, dtype, "db")
        assert_close(block(units, eng, tables.S_DZ, 0, n_batch, r),
                     da * derivative_reference("gelu", z_prev[r]), dtype, "dh_prev")


# ---------------------------------------------------------------- losses
@pytest.mark.parametrize("loss,output", [("cross_entropy", "softmax"), ("mse", "identity"),
                                         ("mse", "tanh"), ("mse", "softmax")])
def test_loss_kernel_matches_reference(loss, output):
    _, _, elementwise, _, _, tables = _device()
    from kernels.cuda._jit import REDUCE
    n_batch, k = 7, 4
    nets, eng = make_engine([3, k], batch=n_batch, loss=loss, output_activation=output)
    rng = np.random.default_rng(3)
    z = rng.normal(size=(n_batch, k)) * 3
    y = np.eye(k)[rng.integers(0, k, n_batch)] if loss == "cross_entropy" \
        else rng.normal(size=(n_batch, k))
    a = forward_reference(output, z)
    units = eng.units.copy_to_host()
    put_block(units, eng, tables.S_Z, 0, z)
    put_block(units, eng, tables.S_A, 0, a if output != "softmax" else np.zeros_like(z))
    eng.units.copy_to_device(units)
    eng._records(1)
    _, yin = eng.upload_batch(np.zeros((1, n_batch, 3)), y[None])
    elementwise.loss_forward_backward[(1, 1), REDUCE](eng.units, yin, eng.rec, eng.net, eng.netf,
                                                      n_batch, 0)
    units, (loss_rec, _) = eng.units.copy_to_host(), eng.records(1)
    if loss == "cross_entropy":
        ref_loss, _, ref_dz = cross_entropy_reference(z, y)
    else:
        ref_loss, da = mse_reference(a, y)
        if output == "softmax":
            ref_dz = a * (da - (a * da).sum(axis=1, keepdims=True))
        else:
            ref_dz = da * derivative_reference(output, z)
    assert_close(loss_rec[0, 0], ref_loss, name="loss")
    assert_close(block(units, eng, tables.S_A, 0, n_batch), a, name="output")
    assert_close(block(units, eng, tables.S_DZ, 0, n_batch), ref_dz, name="dL/dz")


# ---------------------------------------------------------------- batch norm
def test_batchnorm_kernels_match_reference():
    batchnorm, _, _, _, _, tables = _device()
    from kernels.cuda._jit import BLOCK, blocks
    n_batch, n = 6, 9
    nets, eng = make_engine([4, n, 3], batch=n_batch, batchnorm=True, activation="elu")
    net = nets[0]
    rng = np.random.default_rng(4)
    z, dh = rng.normal(1.0, 2.0, size=(n_batch, n)), rng.normal(size=(n_batch, n))
    units = eng.units.copy_to_host()
    put_block(units, eng, tables.S_Z, 0, z)
    put_block(units, eng, tables.S_DH, 0, dh)
    eng.units.copy_to_device(units)
    grid = (blocks(n, BLOCK), 1)
    batchnorm.batchnorm_forward[grid, BLOCK](eng.units, eng.state, eng.bnstat, eng.running,
                                             eng.net, eng.netf, 0, n_batch, True)
    batchnorm.batchnorm_backward[grid, BLOCK](eng.units, eng.state, eng.bnstat, eng.net,
                                              eng.netf, 0, n_batch)
    eng.tstat.copy_to_device(np.zeros((1, 3), np.int64))
    batchnorm.batchnorm_update_running[(blocks(eng.n_units, BLOCK), 1), BLOCK](
        eng.running, eng.bnstat, eng.tstat, eng.net, eng.netf, n_batch)
    units, grads, running = eng.units.copy_to_host(), eng.grads_host()[0], eng.running_host()[0]
    gamma, beta = net.gammas[0], net.betas[0]
    h, xhat, mean, var = batchnorm_forward_reference(z, gamma, beta)
    assert_close(block(units, eng, tables.S_XHAT, 0, n_batch), xhat, name="xhat")
    assert_close(block(units, eng, tables.S_H, 0, n_batch), h, name="h")
    assert_close(block(units, eng, tables.S_A, 0, n_batch), forward_reference("elu", h), name="a")
    dz, dgamma, dbeta = batchnorm_backward_reference(dh, xhat, gamma, var)
    g = net.grads_by_name(grads)
    assert_close(block(units, eng, tables.S_DZ, 0, n_batch), dz, name="dz")
    assert_close(g["gamma"][0], dgamma, name="dgamma")
    assert_close(g["beta"][0], dbeta, name="dbeta")
    assert_close(running[:n], 0.1 * mean, name="running mean")
    assert_close(running[12:12 + n], 0.9 + 0.1 * var * n_batch / (n_batch - 1), name="running var")
    # evaluation mode normalizes with the running statistics
    batchnorm.batchnorm_forward[grid, BLOCK](eng.units, eng.state, eng.bnstat, eng.running,
                                             eng.net, eng.netf, 0, n_batch, False)
    h_eval = gamma * (z - running[:n]) / np.sqrt(running[12:12 + n] + BN_EPS) + beta
    assert_close(block(eng.units.copy_to_host(), eng, tables.S_H, 0, n_batch), h_eval,
                 name="h eval")


# ---------------------------------------------------------------- norms, clipping, optimizers
OPTIMIZER_CASES = [
    ("sgd", SGD(0.1, weight_decay=0.05)),
    ("momentum", Momentum(0.05, 0.8, weight_decay=0.1)),
    ("nesterov", Momentum(0.05, 0.8, nesterov=True)),
    ("rmsprop", RMSProp(0.01, 0.9, 1e-4, eps_inside_sqrt=True)),
    ("rmsprop", RMSProp(0.01, 0.9, 1e-4, eps_inside_sqrt=False, weight_decay=0.1)),
    ("adam", Adam(0.01, 0.8, 0.95, 1e-4, eps_inside_sqrt=True)),
    ("adam", Adam(0.01, 0.8, 0.95, 1e-4, eps_inside_sqrt=False, weight_decay=0.1)),
]
CLIPS = [Clip(), Clip("global_norm", 0.5), Clip("layer_norm", 0.3), Clip("value", 0.05)]


def _update_on_device(eng, grads, m, v, t, opt, clip, loss=1.0):
    """Injects (grads, m, v, t - 1 steps taken) and runs norm -> finalize -> update."""
    _, _, _, optimizers, _, tables = _device()
    from numba import cuda
    from kernels.cuda._jit import BLOCK, REDUCE
    eng.bind_optimizers([opt], [clip])
    theta = eng.params_host()[0]
    eng.state.copy_to_device(np.stack([theta, grads, m, v])[:, None].astype(eng.dtype))
    eng.tstat.copy_to_device(np.array([[t - 1, 0, 0]], np.int64))
    rec = np.zeros((2, 1, 1))
    rec[tables.REC_LOSS] = loss
    eng.rec = cuda.to_device(rec)
    n_chunks = eng.chunks.shape[0]
    optimizers.grad_sumsq[(n_chunks, 1), REDUCE](eng.part, eng.state, eng.chunks)
    optimizers.finalize_step[1, REDUCE](eng.part, eng.rec, eng.tstat, eng.ctrl, eng.codes,
                                        eng.hyper, eng.net, 0)
    optimizers.optimizer_update[(n_chunks, 1), BLOCK](eng.state, eng.ctrl, eng.tstat, eng.codes,
                                                      eng.hyper, eng.chunks)
    return eng.records(1)[1][0, 0]


@pytest.mark.parametrize("clip", CLIPS, ids=lambda c: c.mode)
@pytest.mark.parametrize("case", OPTIMIZER_CASES, ids=lambda c: c[0])
def test_norm_clip_and_update_match_reference(case, clip):
    name, opt = case
    nets, eng = make_engine([4, 5, 3], batchnorm=True)
    net = nets[0]
    rng = np.random.default_rng(5)
    n = net.n_params
    grads, m, v = rng.normal(0, 0.3, n), rng.normal(0, 0.1, n), rng.uniform(0, 0.1, n)
    t = 3
    theta = net.params.copy()
    norm = _update_on_device(eng, grads, m, v, t, opt, clip)
    segments = np.split(grads, net.spec.seg_start[1:-1])
    assert_close(norm, np.linalg.norm(grads), name="global gradient norm")
    g_clipped = np.concatenate(clip_reference(segments, clip.mode, clip.threshold))
    expected, (m_ref, v_ref) = update_reference(
        name.replace("nesterov", "momentum"), theta, g_clipped, (m, v), t,
        opt.schedule.lr(opt.lr, t - 1), opt.momentum, opt.decay, opt.eps, opt.nesterov,
        opt.eps_inside_sqrt, opt.weight_decay)
    m_dev, v_dev = eng.moments_host()
    assert_close(eng.params_host()[0], expected, name=f"{name} theta")
    if name == "adam":
        assert_close(m_dev[0], m_ref, name="m")
    if name != "sgd":
        assert_close(v_dev[0], v_ref, name="v (momentum buffer or second moment)")


@pytest.mark.parametrize("schedule", [Step(2, 0.5, warmup=2), Exponential(0.9),
                                      InverseTime(0.3, warmup=1), Cosine(4, 1e-3)],
                         ids=lambda s: s.name)
def test_schedule_lr_on_device(schedule):
    """lr(t) computed on the device for steps t = 0..5 equals Schedule.lr."""
    nets, eng = make_engine([2, 2])
    opt = SGD(0.1, schedule=schedule)
    theta = eng.params_host()[0]
    zeros = np.zeros(eng.n_params)
    for t in range(1, 7):
        eng.state[0].copy_to_device(theta[None])  # every step starts from the same theta
        _update_on_device(eng, np.ones(eng.n_params), zeros, zeros, t, opt, Clip())
        step = theta - eng.params_host()[0]
        assert_close(step, np.full(eng.n_params, schedule.lr(0.1, t - 1)), name=f"lr at {t}")


def test_non_finite_step_is_flagged_and_not_applied():
    nets, eng = make_engine([3, 2])
    theta = eng.params_host()[0]
    _update_on_device(eng, np.ones(eng.n_params), np.zeros(eng.n_params),
                      np.zeros(eng.n_params), 1, SGD(0.1), Clip(), loss=np.nan)
    steps, diverged = eng.status()
    assert steps[0] == 0 and diverged[0] == 0
    np.testing.assert_array_equal(eng.params_host()[0], theta)


# ---------------------------------------------------------------- full steps against the CPU
STEP_CONFIGS = {
    "tanh-ce-adam": dict(mlp=dict(activation="tanh", loss="cross_entropy"),
                         opt=lambda: Adam(0.02), clip=None),
    "relu-mse-bn-momentum-clip": dict(mlp=dict(activation="relu", loss="mse", batchnorm=True),
                                      opt=lambda: Momentum(0.05, 0.9),
                                      clip=Clip("global_norm", 0.5)),
}


def _batch(sizes, loss, n, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, sizes[0]))
    if loss == "cross_entropy":
        return x, rng.integers(0, sizes[-1], n)
    return x, rng.normal(size=(n, sizes[-1]))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("config", list(STEP_CONFIGS))
def test_train_step_equals_cpu(config, dtype):
    cfg = STEP_CONFIGS[config]
    sizes = [5, 9, 4]
    cpu = MLP(sizes, dtype=dtype, seed=3, bias_scale=0.1, **cfg["mlp"])
    gpu = kcuda.CudaMLP(cpu.copy())
    opt_cpu, opt_gpu = cfg["opt"](), cfg["opt"]()
    for s in range(3):
        x, y = _batch(sizes, cfg["mlp"]["loss"], 7, seed=s)
        loss_cpu = cpu.train_step(x, y, opt_cpu, cfg["clip"])
        loss_gpu = gpu.train_step(x, y, opt_gpu, cfg["clip"])
        assert_close(loss_gpu, loss_cpu, dtype, f"loss at step {s}")
        assert_close(gpu.params, cpu.params, dtype, f"params after step {s}")
    assert_close(gpu.running, cpu.running, dtype, "running statistics")
    assert gpu.step_count == opt_cpu.step_count == 3
    x, y = _batch(sizes, cfg["mlp"]["loss"], 5, seed=9)
    assert_close(gpu.forward(x), cpu.forward(x), dtype, "forward (evaluation)")
    loss_gpu, dw_gpu, db_gpu = gpu.loss_and_grads(x, y)
    loss_cpu, dw_cpu, db_cpu = cpu.loss_and_grads(x, y)
    assert_close(loss_gpu, loss_cpu, dtype, "loss_and_grads loss")
    for a, b in zip(dw_gpu + db_gpu, dw_cpu + db_cpu):
        assert_close(a, b, dtype, "loss_and_grads gradients")
    back = gpu.to_cpu()
    np.testing.assert_array_equal(back.params, gpu.params)


def test_train_epoch_equals_cpu_steps():
    """An epoch over a shuffled order with a short last batch: no host round trip per step."""
    sizes = [4, 6, 3]
    cpu = MLP(sizes, activation="sigmoid", loss="cross_entropy", batchnorm=True, seed=1)
    gpu = kcuda.CudaMLP(cpu)
    x, y = _batch(sizes, "cross_entropy", 11, seed=4)
    order = np.random.default_rng(0).permutation(11)
    opt_cpu, opt_gpu = RMSProp(0.01, schedule=Step(1, 0.5)), RMSProp(0.01, schedule=Step(1, 0.5))
    losses = gpu.train_epoch(gpu.upload(x, y), None, opt_gpu, batch_size=4, order=order,
                             clip=Clip("value", 0.1))
    expected = [cpu.train_step(x[order[lo:lo + 4]], y[order[lo:lo + 4]], opt_cpu,
                               Clip("value", 0.1)) for lo in range(0, 11, 4)]
    assert_close(losses, np.array(expected), name="epoch losses")
    assert_close(gpu.params, cpu.params, name="params after the epoch")
    assert_close(gpu.running, cpu.running, name="running statistics")


def test_continues_the_cpu_optimizer_state():
    """A CPU-trained network and its optimizer (m, v, t) carry over to the device."""
    sizes = [3, 4, 2]
    cpu = MLP(sizes, activation="gelu_tanh", loss="mse", seed=2)
    x, y = _batch(sizes, "mse", 5, seed=1)
    opt = Adam(0.05, schedule=Exponential(0.5))
    cpu.train_step(x, y, opt)
    gpu = kcuda.CudaMLP(cpu)
    twin, twin_opt = cpu.copy(), Adam(0.05, schedule=Exponential(0.5))
    twin_opt.bind(twin, twin.n_params, twin.dtype)
    twin_opt.state = tuple(s.copy() for s in opt.state)
    assert_close(gpu.train_step(x, y, opt), twin.train_step(x, y, twin_opt), name="loss")
    assert_close(gpu.params, twin.params, name="params after the second step")
    m, v, t = gpu.optimizer_state_host()
    assert t == 2
    assert_close(m, twin_opt.state[0], name="m")
    assert_close(v, twin_opt.state[1], name="v")


def test_divergence_raises_and_skips_the_step():
    net = MLP([3, 2], loss="mse", seed=0)
    gpu = kcuda.CudaMLP(net)
    before = gpu.params.copy()
    with pytest.raises(DivergenceError) as info:
        gpu.train_step(np.ones((2, 3)), np.full((2, 2), 1e200), SGD(0.1))
    assert info.value.step == 0
    np.testing.assert_array_equal(gpu.params, before)
    gpu.train_step(np.ones((2, 3)), np.zeros((2, 2)), SGD(0.1))  # trains again afterwards


# ---------------------------------------------------------------- multi-run
def test_multirun_equals_single_runs():
    """Three networks, their own optimizers and clipping, per-run then shared batches."""
    sizes = [4, 5, 3]
    nets = [MLP(sizes, activation="leaky_relu", loss="cross_entropy", seed=s) for s in range(3)]
    singles = [n.copy() for n in nets]
    multi = kcuda.CudaMultiMLP(nets)
    makers = [lambda: Adam(0.01), lambda: SGD(0.1), lambda: Momentum(0.05, nesterov=True)]
    opts_multi, opts_single = [m() for m in makers], [m() for m in makers]
    clips = [None, Clip("global_norm", 0.2), Clip("value", 0.05)]
    xs, ys = zip(*[_batch(sizes, "cross_entropy", 6, seed=10 + r) for r in range(3)])
    losses = multi.train_step(np.stack(xs), np.stack(ys), opts_multi, clips)
    expected = [s.train_step(x, y, o, c) for s, x, y, o, c in
                zip(singles, xs, ys, opts_single, clips)]
    assert_close(losses, np.array(expected), name="per-run batch losses")
    x, y = _batch(sizes, "cross_entropy", 9, seed=20)
    order = np.stack([np.random.default_rng(r).permutation(9) for r in range(3)])
    losses = multi.train_epoch(x, y, opts_multi, batch_size=5, clip=clips, order=order)
    for r, single in enumerate(singles):
        for s, lo in enumerate(range(0, 9, 5)):
            rows = order[r, lo:lo + 5]
            loss = single.train_step(x[rows], y[rows], opts_single[r], clips[r])
            assert_close(losses[r, s], loss, name=f"run {r} epoch loss {s}")
    for back, single in zip(multi.to_cpu(), singles):
        assert_close(back.params, single.params, name="multi-run params")
    assert_close(multi.forward(x), np.stack([s.forward(x) for s in singles]), name="forward")


def test_multirun_freezes_a_diverged_run():
    nets = [MLP([2, 2], loss="mse", seed=s) for s in range(2)]
    multi = kcuda.CudaMultiMLP(nets)
    before = multi.params_host()
    y = np.stack([np.zeros((3, 2)), np.full((3, 2), 1e200)])
    multi.train_step(np.ones((2, 3, 2)), y, SGD(0.1))
    assert list(multi.diverged) == [-1, 0]
    after = multi.params_host()
    assert not np.array_equal(after[0], before[0])
    np.testing.assert_array_equal(after[1], before[1])


def test_multirun_rejects_mixed_architectures():
    with pytest.raises(ValueError, match="same architecture"):
        kcuda.CudaMultiMLP([MLP([2, 3, 2]), MLP([2, 4, 2])])


# ---------------------------------------------------------------- availability
def test_device_name():
    assert isinstance(kcuda.device_name(), str) and kcuda.device_name()


def test_unavailable_error_is_one_line(monkeypatch):
    monkeypatch.setattr(kcuda, "_reason", lambda: "no CUDA GPU or driver was found")
    assert not kcuda.available()
    with pytest.raises(kcuda.CudaUnavailableError) as info:
        kcuda.CudaMLP([3, 2])
    assert isinstance(info.value, ValueError) and "\n" not in str(info.value)
    with pytest.raises(kcuda.CudaUnavailableError):
        kcuda.device_name()


# ---------------------------------------------------------------- device="cuda" end to end
def test_mlp_device_cuda_builds_a_device_network_equal_to_cpu():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(6, 3)), rng.integers(0, 2, 6)
    cpu = MLP([3, 4, 2], activation="tanh", dtype="float64", seed=1)
    dev = MLP([3, 4, 2], activation="tanh", dtype="float64", seed=1, device="cuda")
    assert isinstance(dev, kcuda.CudaMLP)
    opt_cpu, opt_dev = Adam(lr=0.01), Adam(lr=0.01)
    for _ in range(3):
        assert_close(dev.train_step(x, y, opt_dev), cpu.train_step(x, y, opt_cpu), atol=1e-12)
    assert_close(dev.params_host(), cpu.params, atol=1e-10)


def test_study_runs_on_cuda_match_cpu(tmp_path):
    from studies.run.execute import train_run
    from studies.spec import parse_spec
    raw = {"name": "dev", "seeds": [0],
           "fixed": {"dataset": "blobs", "n_samples": 40, "width": 4, "depth": 1, "steps": 4,
                     "metrics_every": 2, "batch_size": 8, "eval_rows": 16, "dtype": "float64",
                     "optimizer": "adam", "lr": 0.05},
           "axes": {"device": ["cpu", "cuda"]}}
    cpu_config, cuda_config = parse_spec(raw, "dev.toml").grid("smoke")
    assert (cpu_config["device"], cuda_config["device"]) == ("cpu", "cuda")
    cpu_run, cpu_hist, cpu_layers = train_run(cpu_config)
    dev_run, dev_hist, dev_layers = train_run(cuda_config)
    assert dev_run["status"] == cpu_run["status"] == "completed"
    for column in ("loss", "train_loss", "test_accuracy"):
        assert_close(dev_hist[column], cpu_hist[column], atol=1e-10, name=column)
    for column in ("w_grad_norm", "delta_norm", "a_mean"):
        assert_close(dev_layers[column], cpu_layers[column], atol=1e-10, name=column)


def test_gradlab_train_on_cuda(capsys, tmp_path):
    """The CLI end to end on the device, on 80 rows of scikit-learn's blobs (the simulator runs
    every GPU thread in Python, so a few steps)."""
    from sklearn.datasets import make_blobs
    from studies.cli.main import main
    x, y = make_blobs(n_samples=100, centers=3, n_features=2, random_state=0)
    data = tmp_path / "blobs.npz"
    np.savez(data, x_train=x[:80], y_train=y[:80], x_test=x[80:], y_test=y[80:])
    code = main(["train", "--dataset", str(data), "--hidden", "4", "--epochs", "2",
                 "--batch-size", "20", "--device", "cuda", "--dtype", "float64", "--every", "1"])
    out = capsys.readouterr().out
    assert code == 0 and "final test accuracy" in out
    assert "per-layer gradients: not recorded by this device's step" in out and "nan" not in out
