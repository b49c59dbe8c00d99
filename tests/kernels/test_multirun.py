"""MultiMLP: R networks trained in one compiled call equal each network trained alone with MLP,
bitwise (parameters, records, histories), with one or two threads, every optimizer, clipping,
batch norm, per-run data orders; divergence freezes one run only; split() hands the runs back."""
import numpy as np
import pytest

from kernels import MLP
from kernels.clipping import GlobalNorm, LayerNorm
from kernels.layout import allocate_record
from kernels.multirun import MultiMLP
from kernels.optimizers import SGD, Adam, Momentum, RMSProp

INITS = ["he_normal", "xavier_uniform", "he_uniform", "lecun_normal", "orthogonal"]


def data(n=60, d=6, k=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)), rng.integers(0, k, n)


def nets(dtype="float64", batchnorm=False, runs=5, activation="tanh"):
    return [MLP([6, 12, 10, 3], activation=activation, init=INITS[r % 5], seed=r, dtype=dtype,
                batchnorm=batchnorm, bias_scale=0.1) for r in range(runs)]


def optimizers():
    return [Adam(lr=1e-2), SGD(lr=0.1), Momentum(lr=0.05, nesterov=True),
            RMSProp(lr=1e-3, eps_inside_sqrt=False), Adam(lr=3e-3, weight_decay=1e-3)]


CLIPS = [None, GlobalNorm(0.5), None, LayerNorm(0.3), GlobalNorm(1.0)]


def assert_same_history(a, b):
    assert a.epochs == b.epochs and (a.diverged, a.diverged_step) == (b.diverged, b.diverged_step)
    for key in a.steps:
        assert np.array_equal(a.steps[key], b.steps[key], equal_nan=True), key


@pytest.mark.parametrize("dtype,threads,batchnorm", [("float64", 1, False), ("float64", 2, True),
                                                     ("float32", 2, False)])
def test_fit_equals_each_network_alone_bitwise(dtype, threads, batchnorm):
    x, y = data()
    group = nets(dtype, batchnorm)
    multi = MultiMLP(group, threads=threads)
    histories = multi.fit(x, y, optimizers(), epochs=3, batch_size=16, seeds=[0, 1, 2, 3, 4],
                          clip=CLIPS)
    for r, (net, opt, clip) in enumerate(zip(group, optimizers(), CLIPS)):
        alone = net.copy()
        history = alone.fit(x, y, opt, epochs=3, batch_size=16, seed=r, clip=clip)
        assert np.array_equal(alone.params, multi.params[r])
        assert np.array_equal(alone.running, multi.running[r])
        assert_same_history(history, histories[r])
        assert multi.step_counts[r] == opt.step_count


def test_train_step_and_epoch_with_per_run_orders_equal_mlp():
    x, y = data()
    group = nets(runs=3)
    multi = MultiMLP(group, threads=2)
    alone = [n.copy() for n in group]
    opts = [Adam(lr=1e-2) for _ in group]
    losses = multi.train_step(x[:8], y[:8], Adam(lr=1e-2))  # one optimizer: shared settings
    assert losses.shape == (3,)
    for r, net in enumerate(alone):
        assert losses[r] == net.train_step(x[:8], y[:8], opts[r])
    orders = np.stack([np.random.default_rng(r).permutation(len(x)) for r in range(3)])
    epoch = multi.train_epoch(x, y, Adam(lr=1e-2), batch_size=16, order=orders)
    assert epoch.shape == (3, 4)  # ceil(60 / 16) steps, the last one partial
    for r, net in enumerate(alone):
        rec = allocate_record(4, net.n_layers)
        xk, yk = net.check_batch(x, y)
        net.run_steps(xk, yk, orders[r], 16, opts[r], None, rec)
        assert np.array_equal(rec.loss, epoch[r])
        assert np.array_equal(net.params, multi.params[r])


def test_run_steps_fills_the_records_of_every_run():
    x, y = data()
    group = nets(runs=2)
    multi = MultiMLP(group, threads=1)
    xk, yk = group[0].check_batch(x, y)
    recs = [allocate_record(3, 3) for _ in group]
    done = multi.run_steps(xk, yk, np.arange(len(x)), 10, [SGD(lr=0.1)] * 2, None, recs)
    assert list(done) == [3, 3]
    for net, rec in zip(group, recs):
        want = allocate_record(3, 3)
        net.copy().run_steps(xk, yk, np.arange(len(x)), 10, SGD(lr=0.1), None, want)
        for field in want._fields:
            assert np.array_equal(getattr(want, field), getattr(rec, field)), field


def test_a_diverged_run_is_frozen_and_the_others_go_on():
    x, y = data()
    group = nets(runs=3, activation="relu")
    group[1].weights[0][0, 0] = np.inf
    multi = MultiMLP(group, threads=2)
    opts = [SGD(lr=0.1)] * 3
    first = multi.train_step(x[:8], y[:8], opts)
    assert list(multi.diverged) == [-1, 0, -1] and list(multi.step_counts) == [1, 0, 1]
    frozen = multi.params[1].copy()
    second = multi.train_step(x[:8], y[:8], opts)
    assert np.isnan(second[1]) and np.isfinite(second[[0, 2]]).all()
    assert np.array_equal(multi.params[1], frozen, equal_nan=True)
    for r in (0, 2):
        alone = group[r].copy()
        opt = SGD(lr=0.1)
        assert [alone.train_step(x[:8], y[:8], opt) for _ in range(2)] == [first[r], second[r]]
        assert np.array_equal(alone.params, multi.params[r])
    multi.params[1, 0] = 0.0
    multi.reset_diverged()
    assert np.isfinite(multi.train_step(x[:8], y[:8], opts)).all()


def test_split_with_optimizers_goes_on_exactly_as_training_alone():
    x, y = data()
    group = nets(runs=2)
    make = [lambda: Adam(lr=1e-2), lambda: RMSProp(lr=1e-3)]
    multi = MultiMLP(group)
    multi.train_epoch(x, y, [m() for m in make], batch_size=20)  # rows 0-19, 20-39, 40-59
    opts = [m() for m in make]
    split = multi.split(opts)
    for r, (net, opt) in enumerate(zip(split, opts)):
        net.train_step(x[:20], y[:20], opt)
        alone, alone_opt = group[r].copy(), make[r]()
        for lo in (0, 20, 40, 0):
            alone.train_step(x[lo:lo + 20], y[lo:lo + 20], alone_opt)
        assert np.array_equal(net.params, alone.params)
        assert not np.shares_memory(net.params, multi.params)


def test_forward_and_gradients_equal_each_network():
    x, y = data()
    group = nets(runs=3, batchnorm=True)
    multi = MultiMLP(group)
    out = multi.forward(x[:7])
    losses, grads = multi.loss_and_grads(x[:9], y[:9])
    for r, net in enumerate(group):
        assert np.array_equal(out[r], net.forward(x[:7]))
        loss, _, _ = net.loss_and_grads(x[:9], y[:9])
        assert losses[r] == loss and np.array_equal(grads[r], net.grads)


def test_from_configs_and_argument_checks():
    multi = MultiMLP.from_configs([{"seed": 0}, {"seed": 1, "init": "he_uniform"}],
                                  sizes=[4, 8, 2], activation="relu")
    assert multi.runs == 2 and multi.sizes == [4, 8, 2] and "MultiMLP(2 x" in repr(multi)
    with pytest.raises(ValueError, match="same architecture"):
        MultiMLP([MLP([4, 8, 2]), MLP([4, 9, 2])])
    with pytest.raises(ValueError, match="non-empty list"):
        MultiMLP([])
    x, y = data(10, 4, 2)
    with pytest.raises(ValueError, match="one or 2 values"):
        multi.train_step(x, y, [SGD(), SGD(), SGD()])
    with pytest.raises(ValueError, match="order"):
        multi.train_epoch(x, y, SGD(), order=np.zeros((3, 10), np.int64))
    with pytest.raises(ValueError, match="indices"):
        multi.train_epoch(x, y, SGD(), order=np.array([0, 10]))
    with pytest.raises(ValueError, match="optimizers"):
        multi.train_step(x, y, "adam")
