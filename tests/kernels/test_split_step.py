"""Split train steps (kernels.split_step, kernels.step_helper): the batch in two halves and the
update in two parameter ranges, the second side on the process's helper thread. Against torch,
against the one-thread step, the same bits with and without the helper, divergence (the helper
thread itself: test_step_helper.py)."""
import numpy as np
import pytest

from _torch_helpers import random_batch
from _torch_twin import torch_flat_params, torch_forward_backward, torch_twin
from test_optimizers import MLP_CASES, ours, torch_optimizer
from kernels import MLP, DivergenceError
from kernels import step_helper
from kernels.clipping import Clip, GlobalNorm, LayerNorm, Value
from kernels.gemm_threads import set_blas_threads
from kernels.layout import DIVERGED_GRADIENT, DIVERGED_LOSS, DIVERGED_UPDATE, allocate_record
from kernels.optimizers import SGD, Adam, Momentum, RMSProp
from kernels.split_stages import LANES, split_point
from kernels.tolerance import assert_close

CLIPS = [Clip(), GlobalNorm(0.05), LayerNorm(0.02), Value(0.001)]


def train(net, opt, batches, clip=None):
    losses = [net.train_step(x, y, opt, clip) for x, y in batches]
    assert net._second is not None, "the steps did not split"
    return losses


def test_split_point_is_a_lane_multiple_near_the_middle():
    for sizes in ([5, 8, 6, 3], [40, 64, 64, 10], [784, 100, 100, 100, 10], [3, 1]):
        n = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
        s = split_point(sizes)
        assert s % LANES == 0 and 0 <= n // 2 - s < LANES


@pytest.mark.parametrize("case", MLP_CASES, ids=lambda c: f"{c[0]}-wd{c[1]:g}-{c[2]}")
def test_split_step_matches_torch(split_steps, case):
    name, wd, loss = case
    rng = np.random.default_rng(8)
    net = MLP([5, 8, 6, 3], activation="tanh", loss=loss, dtype="float64", seed=3)
    model = torch_twin(net)
    opt, topt = ours(name, wd), torch_optimizer(name, model.parameters(), wd)
    for step in range(30):
        x, y = random_batch(rng, net, 7 + step % 3)  # odd and even batches
        our_loss = train(net, opt, [(x, y)])[0]
        torch_loss = torch_forward_backward(model, loss, x, y)
        topt.step()
        assert_close(our_loss, torch_loss, np.float64, f"loss, step {step}", strict=True)
        assert_close(net.params, torch_flat_params(model), np.float64,
                     f"{name} params after step {step}", strict=True)


@pytest.mark.parametrize("clip", CLIPS, ids=lambda c: c.mode)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_split_step_agrees_with_the_one_thread_step(split_steps, clip, dtype):
    """Every record and the parameters, against the step that does not split (only the sums'
    grouping differs)."""
    rng = np.random.default_rng(1)
    split_net = MLP([13, 37, 21, 3], activation="tanh", dtype=dtype, seed=2)
    whole_net = split_net.copy()
    batches = [random_batch(rng, split_net, 16) for _ in range(12)]
    batches = [(x.astype(dtype), y) for x, y in batches]
    split_opt, whole_opt = Adam(lr=0.01), Adam(lr=0.01)
    scale = 1.0 if dtype == "float64" else 4.0
    for x, y in batches:
        train(split_net, split_opt, [(x, y)], clip)
        split_stats = split_net.last_step_stats()
        set_blas_threads(1)
        whole_net.train_step(x, y, whole_opt, clip)
        set_blas_threads(2)
        whole_stats = whole_net.last_step_stats()
        for key, value in whole_stats.items():
            assert_close(split_stats[key], value, dtype, key, scale=scale)
    assert whole_net._second is None
    assert_close(split_net.params, whole_net.params, dtype, "params", scale=scale)


def _run_steps(net, opt, x, y, batch, n_steps, clip, seed=0):
    """n_steps of run_steps over a shuffled repeat of x (a last batch of one row when batch
    does not divide it); returns the record."""
    rng = np.random.default_rng(seed)
    xk, yk = net.check_batch(x, y)
    order = rng.permutation(np.tile(np.arange(len(x)), 4))[:(n_steps - 1) * batch + 1]
    rec = allocate_record(n_steps, net.n_layers)
    assert net.run_steps(xk, yk, order.astype(np.int64), batch, opt, clip, rec) == n_steps
    return rec


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_helper_changes_no_bit(split_steps, dtype):
    """The same steps with the helper taking the second side and with the calling thread
    computing both: the same parameters and records, bit for bit, for every optimizer and
    clipping rule."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 13)).astype(dtype)
    y = rng.integers(0, 3, 64)
    before = step_helper.served_jobs()
    for opt_type, clip in zip((SGD, Momentum, RMSProp, Adam), CLIPS):
        results = []
        for disabled in (False, True):
            net = MLP([13, 37, 21, 3], activation="tanh", dtype=dtype, seed=1)
            opt = opt_type(lr=0.01)
            if disabled:
                with step_helper.helper_disabled():
                    rec = _run_steps(net, opt, x, y, 17, 9, clip)
            else:
                warm_up = MLP([13, 37, 21, 3], activation="tanh", dtype=dtype)
                warm_up.train_step(x[:8], y[:8], opt_type(lr=0.01))  # the helper is spinning
                rec = _run_steps(net, opt, x, y, 17, 9, clip)
            results.append([net.params.tobytes()] + [np.asarray(f).tobytes() for f in rec])
        assert results[0] == results[1], f"{opt_type.__name__}, {clip.mode}"
    assert step_helper.served_jobs() > before, "the helper took no step"


def test_divergence_applies_nothing_and_names_the_cause(split_steps):
    """Loss, gradient, and an update that overflows in either parameter range: nothing is
    applied, the cause is named, and the next steps split as before."""
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(9, 5)), rng.integers(0, 3, 9)
    net = MLP([5, 8, 6, 3], activation="tanh")
    assert 0 < split_point(net.sizes) <= net.spec.w_off[1] + 3 * 8  # W_2[3, 0]: second range
    for cause, edit, opt in (
            (DIVERGED_LOSS, lambda n: n.weights[2].__setitem__((0, 0), np.nan), SGD(lr=0.1)),
            (DIVERGED_GRADIENT, lambda n: n.weights[2].__setitem__((0, 0), 1e300), SGD(lr=0.1)),
            (DIVERGED_UPDATE, lambda n: n.weights[0].__setitem__((0, 0), 1.7e308),
             SGD(lr=3.0, weight_decay=1.0)),
            (DIVERGED_UPDATE, lambda n: n.weights[1].__setitem__((3, 0), 1.7e308),
             SGD(lr=3.0, weight_decay=1.0))):
        net = MLP([5, 8, 6, 3], activation="tanh")
        edit(net)
        before = net.params.copy()
        with pytest.raises(DivergenceError, match="not applied"):
            train(net, opt, [(x, y)])
        assert net.last_step_stats()["status"] == cause
        assert np.array_equal(net.params, before, equal_nan=True) and opt.step_count == 0
    net = MLP([5, 8, 6, 3], activation="tanh")
    assert np.isfinite(train(net, Adam(lr=0.01), [(x, y)] * 3)).all()
