"""Tests for kernels.optimizers: the flat-buffer update kernel against torch.optim (same gradient
sequence, parameters compared after every step), the eps placement switch, injected states,
the fused MLP.train_step against a torch twin, float32 and argument checks (convergence:
test_optimizer_convergence.py)."""
import math

import numpy as np
import pytest
import torch

from _torch_helpers import log_uniform_gradients, random_batch
from _torch_twin import (torch_flat_grads, torch_flat_params, torch_forward_backward,
                         torch_linears, torch_twin)
from kernels.tolerance import assert_close
from kernels import MLP
from kernels.clipping import Clip
from kernels.optimizers import (OPTIMIZERS, SGD, Adam, Momentum, RMSProp, make_optimizer,
                                optimizer_update, optimizer_update_norms,
                                update_reference)

N_STEPS = 60
N_PARAMS = 37

# Hyperparameters away from the defaults and from each other, so a swapped or ignored slot shows.
# eps = 1e-4 against gradients down to 1e-4 makes the eps placement matter.
LR_SGD, MU, WD = 0.05, 0.85, 0.1
LR_RMS, RHO, EPS = 0.01, 0.9, 1e-4
LR_ADAM, B1, B2 = 0.01, 0.8, 0.95


def ours(name, wd=0.0, eps_inside_sqrt=False):
    """Our optimizer for case `name` (eps_inside_sqrt only matters for rmsprop/adam)."""
    if name == "sgd":
        return SGD(LR_SGD, weight_decay=wd)
    if name in ("momentum", "nesterov"):
        return Momentum(LR_SGD, MU, nesterov=name == "nesterov", weight_decay=wd)
    if name == "rmsprop":
        return RMSProp(LR_RMS, RHO, EPS, eps_inside_sqrt=eps_inside_sqrt, weight_decay=wd)
    return Adam(LR_ADAM, B1, B2, EPS, eps_inside_sqrt=eps_inside_sqrt, weight_decay=wd)


def torch_optimizer(name, params, wd=0.0):
    """torch.optim twin of ours(name, wd, eps_inside_sqrt=False)."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=LR_SGD, weight_decay=wd)
    if name in ("momentum", "nesterov"):
        return torch.optim.SGD(params, lr=LR_SGD, momentum=MU, nesterov=name == "nesterov",
                               weight_decay=wd)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=LR_RMS, alpha=RHO, eps=EPS, weight_decay=wd)
    return torch.optim.Adam(params, lr=LR_ADAM, betas=(B1, B2), eps=EPS, weight_decay=wd)


NAMES = ["sgd", "momentum", "nesterov", "rmsprop", "adam"]
TORCH_CASES = [(name, wd) for name in NAMES for wd in (0.0, WD)]


def case_id(case):
    name, wd = case
    return f"{name}-wd{wd:g}"


def kernel_state(n, dtype=np.float64):
    return np.zeros(n, dtype), np.zeros(n, dtype)


def kernel_step(opt, params, grads, m, v, t, split=None):
    """One update through the kernel with the optimizer's own schedule; `split` updates the
    vector as two segments [0, split) and [split, n) as the fused step does per layer."""
    codes, hyper = opt.codes_and_hyper(Clip())
    lr = opt.schedule.lr(opt.lr, t - 1)
    n = params.shape[0]
    bounds = [(0, n)] if split is None else [(0, split), (split, n)]
    return sum(optimizer_update(params, grads, m, v, lo, hi, codes, hyper, lr, t)
               for lo, hi in bounds)


def hand_update(name, theta, g, m, v, t, lr, mu=0.0, rho=0.0, eps=0.0, wd=0.0,
                eps_inside_sqrt=True, nesterov=False):
    """The update written out from the formulas of docs/conventions.md, one optimizer at a time (independent of
    update_reference). Returns (new theta, new m, new v, the step d with theta_new = theta - d)."""
    g = g + wd * theta
    m, v = m.copy(), v.copy()
    if name == "sgd":
        d = lr * g
    elif name == "momentum":
        v = mu * v + g
        d = lr * (g + mu * v) if nesterov else lr * v
    elif name == "rmsprop":
        v = rho * v + (1 - rho) * g ** 2
        d = lr * g / (np.sqrt(v + eps) if eps_inside_sqrt else np.sqrt(v) + eps)
    else:
        m = mu * m + (1 - mu) * g
        v = rho * v + (1 - rho) * g ** 2
        mhat = m / (1 - mu ** t)
        vhat = v / (1 - rho ** t)
        d = lr * mhat / (np.sqrt(vhat + eps) if eps_inside_sqrt else np.sqrt(vhat) + eps)
    return theta - d, m, v, d


def hand_args(opt):
    """hand_update keyword arguments from an optimizer object."""
    name = opt.name
    mu = opt.momentum
    return dict(name=name, lr=opt.lr, mu=mu, rho=opt.decay, eps=opt.eps, wd=opt.weight_decay,
                eps_inside_sqrt=opt.eps_inside_sqrt, nesterov=opt.nesterov)


def reference_args(opt):
    return dict(name=opt.name, lr=opt.lr, momentum=opt.momentum, decay=opt.decay, eps=opt.eps,
                nesterov=opt.nesterov, eps_inside_sqrt=opt.eps_inside_sqrt,
                weight_decay=opt.weight_decay)


# ---------------------------------------------------------------- kernel against torch.optim


@pytest.mark.parametrize("case", TORCH_CASES, ids=case_id)
def test_kernel_matches_torch_optim_every_step(case):
    name, wd = case
    rng = np.random.default_rng(1)
    theta0 = rng.normal(size=N_PARAMS)
    grads = log_uniform_gradients(rng, N_STEPS, N_PARAMS)
    opt = ours(name, wd)
    params = theta0.copy()
    m, v = kernel_state(N_PARAMS)
    p = torch.nn.Parameter(torch.from_numpy(theta0.copy()))
    topt = torch_optimizer(name, [p], wd)
    for t in range(1, N_STEPS + 1):
        kernel_step(opt, params, grads[t - 1].copy(), m, v, t, split=N_PARAMS // 3)
        p.grad = torch.from_numpy(grads[t - 1].copy())
        topt.step()
        assert_close(params, p.detach().numpy(), np.float64, f"{name} step {t}", strict=True)
    state = topt.state[p]
    if name in ("momentum", "nesterov"):
        assert_close(v, state["momentum_buffer"].numpy(),
                     np.float64, "momentum buffer", strict=True)
    if name == "rmsprop":
        assert_close(v, state["square_avg"].numpy(), np.float64, "square_avg", strict=True)
    if name == "adam":
        assert_close(m, state["exp_avg"].numpy(), np.float64, "exp_avg", strict=True)
        assert_close(v, state["exp_avg_sq"].numpy(), np.float64, "exp_avg_sq", strict=True)
    # the run moved the parameters well beyond the tolerance (the comparison is not vacuous)
    assert np.abs(params - theta0).max() > 1e-2


@pytest.mark.parametrize("case", TORCH_CASES, ids=case_id)
def test_update_reference_matches_torch_optim(case):
    """The NumPy reference the other tests lean on agrees with torch too."""
    name, wd = case
    rng = np.random.default_rng(2)
    theta = rng.normal(size=N_PARAMS)
    grads = log_uniform_gradients(rng, N_STEPS, N_PARAMS)
    opt = ours(name, wd)
    state = kernel_state(N_PARAMS)
    p = torch.nn.Parameter(torch.from_numpy(theta.copy()))
    topt = torch_optimizer(name, [p], wd)
    for t in range(1, N_STEPS + 1):
        theta, state = update_reference(theta=theta, g=grads[t - 1], state=state, t=t,
                                        **reference_args(opt))
        p.grad = torch.from_numpy(grads[t - 1].copy())
        topt.step()
        assert_close(theta, p.detach().numpy(), np.float64, f"{name} step {t}", strict=True)


# ---------------------------------------------------------------- eps inside the square root


@pytest.mark.parametrize("wd", [0.0, WD])
@pytest.mark.parametrize("name", ["rmsprop", "adam"])
def test_eps_inside_sqrt_matches_reference_and_formula(name, wd):
    """torch has no eps-inside form: kernel vs update_reference vs the formula written here."""
    rng = np.random.default_rng(3)
    theta0 = rng.normal(size=N_PARAMS)
    grads = log_uniform_gradients(rng, N_STEPS, N_PARAMS)
    opt = ours(name, wd, eps_inside_sqrt=True)
    assert opt.eps_inside_sqrt
    params = theta0.copy()
    m, v = kernel_state(N_PARAMS)
    ref, ref_state = theta0.copy(), kernel_state(N_PARAMS)
    hand, hm, hv = theta0.copy(), *kernel_state(N_PARAMS)
    for t in range(1, N_STEPS + 1):
        g = grads[t - 1]
        sq = kernel_step(opt, params, g.copy(), m, v, t)
        ref, ref_state = update_reference(theta=ref, g=g, state=ref_state, t=t,
                                          **reference_args(opt))
        hand, hm, hv, d = hand_update(theta=hand, g=g, m=hm, v=hv, t=t, **hand_args(opt))
        assert_close(params, ref, np.float64, f"kernel vs reference, step {t}", strict=True)
        assert_close(params, hand, np.float64, f"kernel vs formula, step {t}", strict=True)
        assert_close(sq, np.sum(d * d),
                     np.float64, f"squared update, step {t}", strict=True, atol=0.0)
    assert_close(v, hv, np.float64, "v", strict=True)
    assert_close(m, hm, np.float64, "m", strict=True)


@pytest.mark.parametrize("name", ["rmsprop", "adam"])
def test_eps_placements_differ(name):
    """The switch is live: inside vs outside the root give different trajectories (by far more
    than the tolerance), and only the outside form is torch's."""
    rng = np.random.default_rng(4)
    theta0 = rng.normal(size=N_PARAMS)
    grads = log_uniform_gradients(rng, N_STEPS, N_PARAMS)
    runs = {}
    for inside in (True, False):
        opt = ours(name, eps_inside_sqrt=inside)
        params = theta0.copy()
        m, v = kernel_state(N_PARAMS)
        for t in range(1, N_STEPS + 1):
            kernel_step(opt, params, grads[t - 1].copy(), m, v, t)
        runs[inside] = params
    p = torch.nn.Parameter(torch.from_numpy(theta0.copy()))
    topt = torch_optimizer(name, [p])
    for t in range(1, N_STEPS + 1):
        p.grad = torch.from_numpy(grads[t - 1].copy())
        topt.step()
    torch_params = p.detach().numpy()
    assert_close(runs[False], torch_params, np.float64, "eps outside vs torch", strict=True)
    gap = np.abs(runs[True] - runs[False]).max()
    assert gap > 1e-3, f"eps placements gave nearly the same parameters (max gap {gap:.2e})"
    # and on one step, by the closed form: |g| / sqrt(v + eps) vs |g| / (sqrt(v) + eps)
    g = np.array([1e-4])
    one = {}
    for inside in (True, False):
        params, (m, v) = np.zeros(1), kernel_state(1)
        kernel_step(ours(name, eps_inside_sqrt=inside), params, g.copy(), m, v, 1)
        one[inside] = -params[0]
    lr = LR_RMS if name == "rmsprop" else LR_ADAM
    gv = 1e-4 if name == "adam" else math.sqrt(1 - RHO) * 1e-4  # sqrt of (bias-corrected) v
    assert_close(one[True], lr * 1e-4 / math.sqrt(gv ** 2 + EPS),
                 np.float64, "inside", strict=True, atol=0.0)
    assert_close(one[False], lr * 1e-4 / (gv + EPS), np.float64, "outside", strict=True, atol=0.0)
    assert one[True] < 0.05 * one[False]


def test_default_eps_placement_is_the_reports():
    assert RMSProp().eps_inside_sqrt and Adam().eps_inside_sqrt
    assert Adam().config()["eps_inside_sqrt"] is True


# ---------------------------------------------------------------- segments, state, dtype


@pytest.mark.parametrize("name", NAMES)
def test_segment_update_touches_only_its_range(name):
    rng = np.random.default_rng(5)
    opt = ours(name, WD)
    theta = rng.normal(size=N_PARAMS)
    g = rng.normal(size=N_PARAMS)
    m0, v0 = rng.normal(size=N_PARAMS), rng.uniform(0.1, 1.0, N_PARAMS)
    whole, wm, wv = theta.copy(), m0.copy(), v0.copy()
    kernel_step(opt, whole, g, wm, wv, 3)
    part, pm, pv = theta.copy(), m0.copy(), v0.copy()
    codes, hyper = opt.codes_and_hyper(Clip())
    optimizer_update(part, g, pm, pv, 10, 20, codes, hyper, opt.lr, 3)
    outside = np.r_[0:10, 20:N_PARAMS]
    for buf, before in ((part, theta), (pm, m0), (pv, v0)):
        assert np.array_equal(buf[outside], before[outside])
    for buf, full in ((part, whole), (pm, wm), (pv, wv)):
        assert np.array_equal(buf[10:20], full[10:20])
    assert not np.array_equal(part[10:20], theta[10:20])


VARIANTS = [(name, False) for name in NAMES] + [("rmsprop", True), ("adam", True)]


def variant_id(variant):
    return f"{variant[0]}-eps-{'inside' if variant[1] else 'outside'}"


@pytest.mark.parametrize("name, inside", VARIANTS, ids=[variant_id(c) for c in VARIANTS])
def test_injected_state_one_step_matches_formula(name, inside):
    """Optax-style: put the optimizer in a state (m, v, t), take one step, compare."""
    rng = np.random.default_rng(6)
    opt = ours(name, WD, eps_inside_sqrt=inside)
    theta = rng.normal(size=N_PARAMS)
    g = rng.normal(size=N_PARAMS)
    m0 = rng.normal(size=N_PARAMS)
    v0 = rng.uniform(1e-6, 1.0, N_PARAMS) if name in ("rmsprop", "adam") else \
        rng.normal(size=N_PARAMS)
    for t in (1, 7, 200):
        params, m, v = theta.copy(), m0.copy(), v0.copy()
        sq = kernel_step(opt, params, g, m, v, t)
        want, wm, wv, d = hand_update(theta=theta, g=g, m=m0, v=v0, t=t, **hand_args(opt))
        assert_close(params, want, np.float64, f"theta, t={t}", strict=True)
        assert_close(m, wm, np.float64, f"m, t={t}", strict=True)
        assert_close(v, wv, np.float64, f"v, t={t}", strict=True)
        assert_close(sq, np.sum(d * d),
                     np.float64, f"squared update, t={t}", strict=True, atol=0.0)


def test_adam_bias_correction_uses_t():
    """The same state at t=1 and at t=50 gives different Adam steps (t reaches the kernel)."""
    opt = Adam(0.1, 0.9, 0.999, 1e-8)
    steps = []
    for t in (1, 50):
        params, m, v = np.zeros(3), np.full(3, 0.1), np.full(3, 0.01)
        kernel_step(opt, params, np.ones(3), m, v, t)
        steps.append(params[0])
    assert abs(steps[0] - steps[1]) > 1e-3


@pytest.mark.parametrize("name, inside", VARIANTS, ids=[variant_id(c) for c in VARIANTS])
def test_float32_buffers_agree_with_float64(name, inside):
    rng = np.random.default_rng(7)
    theta0 = rng.normal(size=N_PARAMS).astype(np.float32)
    grads = log_uniform_gradients(rng, 50, N_PARAMS, 1e-3, 1.0).astype(np.float32)
    opt = ours(name, WD, eps_inside_sqrt=inside)
    runs = {}
    for dtype in (np.float32, np.float64):
        params = theta0.astype(dtype)
        m, v = kernel_state(N_PARAMS, dtype)
        for t in range(1, 51):
            kernel_step(opt, params, grads[t - 1].astype(dtype), m, v, t)
        assert params.dtype == dtype and m.dtype == dtype and v.dtype == dtype
        runs[dtype] = params
    # 50 steps of float32 rounding: a 10x wider band than one float32 operation
    assert_close(runs[np.float32], runs[np.float64],
                 np.float32, f"{name} float32", strict=True, scale=10.0)


@pytest.mark.parametrize("case", TORCH_CASES, ids=case_id)
def test_float32_kernel_tracks_torch_float32(case):
    """float32 buffers: our float32 arithmetic follows torch.optim's float32 run step by step
    (both round every operation to float32, so they stay within float32 tolerance)."""
    name, wd = case
    rng = np.random.default_rng(11)
    theta0 = rng.normal(size=N_PARAMS).astype(np.float32)
    grads = log_uniform_gradients(rng, 30, N_PARAMS, 1e-3, 1.0).astype(np.float32)
    opt = ours(name, wd)
    params = theta0.copy()
    m, v = kernel_state(N_PARAMS, np.float32)
    p = torch.nn.Parameter(torch.from_numpy(theta0.copy()))
    topt = torch_optimizer(name, [p], wd)
    for t in range(1, 31):
        kernel_step(opt, params, grads[t - 1].copy(), m, v, t, split=N_PARAMS // 3)
        p.grad = torch.from_numpy(grads[t - 1].copy())
        topt.step()
    assert params.dtype == np.float32
    assert_close(params, p.detach().numpy(),
                 np.float32, f"{name} float32 vs torch", strict=True, scale=10.0)
    assert np.abs(params - theta0).max() > 1e-2


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name, inside", VARIANTS, ids=[variant_id(c) for c in VARIANTS])
def test_update_norms_are_those_of_the_step_and_the_old_weights(name, inside, dtype):
    """optimizer_update_norms returns (||theta_new - theta_old||^2, ||theta_old||^2) of its
    segment, the sums the fused step records as ||Delta W|| and ||W||."""
    rng = np.random.default_rng(13)
    opt = ours(name, WD, eps_inside_sqrt=inside)
    codes, hyper = opt.codes_and_hyper(Clip())
    theta = rng.normal(size=N_PARAMS).astype(dtype)
    grads = rng.normal(size=N_PARAMS).astype(dtype)
    m, v = rng.normal(size=N_PARAMS).astype(dtype), rng.uniform(0.1, 1, N_PARAMS).astype(dtype)
    before = theta.copy()
    upd_sq, w_sq = optimizer_update_norms(theta, grads, m, v, np.uint64(5), np.uint64(30),
                                          codes, hyper, 0.03, 4)
    old = before[5:30].astype(np.float64)
    step = theta[5:30].astype(np.float64) - old
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    assert w_sq == pytest.approx(float(old @ old), rel=rtol)
    # float32: the update is rounded once more when subtracted from theta
    assert upd_sq == pytest.approx(float(step @ step), rel=rtol if dtype == np.float64 else 1e-3)
    assert upd_sq > 0 and np.array_equal(theta[:5], before[:5])


# ---------------------------------------------------------------- fused MLP.train_step vs torch

MLP_CASES = [("adam", 0.0, "mse"), ("adam", WD, "cross_entropy"), ("momentum", 0.0, "mse"),
             ("momentum", WD, "cross_entropy"), ("nesterov", WD, "mse"),
             ("rmsprop", 0.0, "cross_entropy"), ("sgd", WD, "mse")]


@pytest.mark.parametrize("case", MLP_CASES, ids=lambda c: f"{c[0]}-wd{c[1]:g}-{c[2]}")
def test_train_step_matches_torch(case):
    name, wd, loss = case
    rng = np.random.default_rng(8)
    net = MLP([5, 8, 6, 3], activation="tanh", loss=loss, dtype="float64", seed=3)
    model = torch_twin(net)
    opt = ours(name, wd)
    topt = torch_optimizer(name, model.parameters(), wd)
    start = net.params.copy()
    for step in range(50):
        x, y = random_batch(rng, net, 8)
        our_loss = net.train_step(x, y, opt)
        torch_loss = torch_forward_backward(model, loss, x, y)
        topt.step()
        assert_close(our_loss, torch_loss, np.float64, f"loss, step {step}", strict=True)
        assert_close(net.params, torch_flat_params(model),
                     np.float64, f"{name} params after step {step}", strict=True)
    assert opt.step_count == 50
    assert np.abs(net.params - start).max() > 1e-2
    for layer, lin in enumerate(torch_linears(model)):
        assert_close(net.weights[layer], lin.weight.detach().numpy(), np.float64, "W", strict=True)


@pytest.mark.parametrize("name", ["adam", "rmsprop"])
def test_train_step_eps_inside_matches_torch_gradients_and_reference(name):
    """eps inside the root through the fused step: torch gives the gradients, update_reference
    the update (torch.optim has no such variant)."""
    rng = np.random.default_rng(9)
    net = MLP([5, 8, 6, 3], activation="tanh", loss="mse", dtype="float64", seed=4)
    model = torch_twin(net)
    opt = ours(name, WD, eps_inside_sqrt=True)
    theta, state = net.params.copy(), kernel_state(net.n_params)
    for step in range(1, 51):
        x, y = random_batch(rng, net, 8)
        net.train_step(x, y, opt)
        torch_forward_backward(model, "mse", x, y)
        theta, state = update_reference(theta=theta, g=torch_flat_grads(model), state=state,
                                        t=step, **reference_args(opt))
        with torch.no_grad():
            flat = torch.from_numpy(theta)
            offset = 0
            for par in model.parameters():
                par.copy_(flat[offset:offset + par.numel()].view_as(par))
                offset += par.numel()
        assert_close(net.params, theta, np.float64, f"params after step {step}", strict=True)


@pytest.mark.parametrize("name", ["adam", "momentum", "rmsprop"])
def test_train_step_injected_state(name):
    """Inject (m, v, t) into the optimizer bound to a network, take one fused step, compare."""
    rng = np.random.default_rng(10)
    net = MLP([4, 6, 3], activation="tanh", loss="mse", dtype="float64", seed=5)
    opt = ours(name, WD, eps_inside_sqrt=True)
    m, v, t = opt.bind(net, net.n_params, net.dtype)
    m[:] = rng.normal(size=net.n_params)
    v[:] = rng.uniform(1e-4, 1.0, net.n_params)
    t[0] = 6
    m0, v0, theta = m.copy(), v.copy(), net.params.copy()
    x, y = random_batch(rng, net, 8)
    net.loss_and_grads(x, y)
    g = net.grads.copy()
    net.train_step(x, y, opt)
    want, wm, wv, d = hand_update(theta=theta, g=g, m=m0, v=v0, t=7, **hand_args(opt))
    assert opt.step_count == 7
    assert_close(net.params, want, np.float64, "theta", strict=True)
    assert_close(m, wm, np.float64, "m", strict=True)
    assert_close(v, wv, np.float64, "v", strict=True)


def test_optimizer_refuses_a_second_network():
    opt = Adam()
    a = MLP([2, 3, 1], activation="tanh", loss="mse", seed=0)
    b = MLP([2, 3, 1], activation="tanh", loss="mse", seed=0)
    x, y = np.ones((2, 2)), np.ones((2, 1))
    a.train_step(x, y, opt)
    with pytest.raises(ValueError, match="another network"):
        b.train_step(x, y, opt)


# ---------------------------------------------------------------- argument checks


@pytest.mark.parametrize("build, argument", [
    (lambda: SGD(lr=0.0), "lr"), (lambda: SGD(lr=float("nan")), "lr"),
    (lambda: SGD(0.1, weight_decay=-1.0), "weight_decay"),
    (lambda: SGD(0.1, schedule="cosine"), "schedule"),
    (lambda: Momentum(0.1, momentum=1.0), "momentum"),
    (lambda: RMSProp(0.1, rho=-0.1), "rho"), (lambda: RMSProp(0.1, eps=0.0), "eps"),
    (lambda: Adam(beta1=1.0), "beta1"), (lambda: Adam(beta2=1.5), "beta2"),
    (lambda: Adam(eps=-1e-8), "eps"), (lambda: make_optimizer("adamw"), "optimizer"),
])
def test_bad_hyperparameters_raise_naming_them(build, argument):
    with pytest.raises(ValueError, match=rf"^{argument}:"):
        build()


def test_registry_builds_every_optimizer():
    for name, entry in OPTIMIZERS.items():
        opt = make_optimizer(name, lr=0.01)
        assert isinstance(opt, entry.cls) and opt.name == (entry.variant_of or name)
        assert opt.lr == 0.01 and opt.nesterov == (name == "nesterov")
