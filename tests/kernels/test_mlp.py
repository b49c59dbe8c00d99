"""The MLP API: views into the flat buffer, edge cases, determinism, batch-norm running
statistics against torch.nn.BatchNorm1d, dtypes, divergence and the kernel cache."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from kernels import MLP, DivergenceError
from kernels.layout import DIVERGED_GRADIENT, DIVERGED_LOSS, DIVERGED_UPDATE
from kernels.optimizers import SGD, Adam, Momentum
from kernels.tolerance import assert_close
from _fresh_cache import fresh_and_cached


def data(n=16, d=4, k=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)), rng.integers(0, k, n)


def test_weights_and_biases_are_views_of_the_flat_buffer():
    net = MLP([40, 128, 128, 10], activation="tanh", init="xavier_normal",
              loss="cross_entropy", dtype="float64", seed=0)
    assert [w.shape for w in net.weights] == [(128, 40), (128, 128), (10, 128)]
    assert [b.shape for b in net.biases] == [(128,), (128,), (10,)]
    assert net.n_params == 40 * 128 + 128 + 128 * 128 + 128 + 128 * 10 + 10
    net.weights[1][0, 0] = 123.0
    net.biases[2][...] = 7.0
    assert net.params[net.spec.w_off[1]] == 123.0
    assert np.all(net.params[net.spec.b_off[2]:net.spec.b_off[2] + 10] == 7.0)
    x, _ = data(5, 40, 10)
    assert np.allclose(net.forward(x).sum(axis=1), 1.0)


def test_init_statistics_follow_the_formula():
    net = MLP([400, 300, 300, 10], activation="relu", init="he_normal", seed=1)
    assert abs(net.weights[1].std() - np.sqrt(2 / 300)) < 0.01 * np.sqrt(2 / 300) * 5
    net = MLP([400, 300, 10], activation="tanh", init="xavier_uniform", gain=5 / 3, seed=1)
    bound = 5 / 3 * np.sqrt(6 / 700)
    assert np.abs(net.weights[0]).max() <= bound and np.abs(net.weights[0]).max() > 0.99 * bound
    net = MLP([50, 60, 10], activation="tanh", init="orthogonal", seed=1)
    w = net.weights[0]
    assert_close(w.T @ w, np.eye(50), atol=1e-10)
    net = MLP([50, 60, 10], activation="tanh", init="lecun_normal", bias_scale=0.3, seed=2)
    assert 0.2 < net.biases[0].std() < 0.4


def test_cross_entropy_logits_of_1e4_stay_finite():
    net = MLP([2, 3], activation=[], loss="cross_entropy", seed=0)
    net.weights[0][...] = [[1e4, 0], [0, 1e4], [-1e4, 0]]
    x = np.array([[1.0, 0.0], [0.0, 1.0]])
    loss, dW, db = net.loss_and_grads(x, np.array([2, 0]))
    assert np.isfinite(loss) and loss > 1e3
    assert all(np.isfinite(g).all() for g in dW + db)
    probs = net.forward(x)
    assert np.isfinite(probs).all() and np.allclose(probs.sum(axis=1), 1)


@pytest.mark.parametrize("activation", ["sigmoid", "tanh"])
def test_saturated_units_give_zero_not_nan(activation):
    net = MLP([1, 2, 1], activation=activation, loss="mse", seed=0)
    net.weights[0][...] = [[1e3], [-1e3]]
    x = np.array([[50.0], [-50.0]])
    trace = net.trace(x, np.zeros((2, 1)))
    assert np.isfinite(trace["dW1"]).all() and np.all(trace["dW1"] == 0)
    assert np.all(np.abs(trace["a1"]) <= 1)


def test_relu_derivative_at_zero_is_zero():
    net = MLP([1, 1, 1], activation="relu", loss="mse", seed=0)
    net.weights[0][...] = 1.0
    net.biases[0][...] = 0.0
    net.weights[1][...] = 1.0
    trace = net.trace(np.zeros((1, 1)), np.ones((1, 1)))
    assert trace["a1"][0, 0] == 0 and trace["dW1"][0, 0] == 0 and trace["db1"][0] == 0


def test_same_seed_gives_bitwise_identical_training():
    x, y = data(64, 5, 3)
    runs = []
    for _ in range(2):
        net = MLP([5, 16, 16, 3], activation="relu", batchnorm=True, seed=7)
        net.fit(x, y, Adam(lr=1e-2), epochs=3, batch_size=10, seed=3)
        runs.append(net.params.copy())
    assert np.array_equal(runs[0], runs[1])
    other = MLP([5, 16, 16, 3], activation="relu", batchnorm=True, seed=8)
    other.fit(x, y, Adam(lr=1e-2), epochs=3, batch_size=10, seed=3)
    assert not np.array_equal(runs[0], other.params)


def test_float32_agrees_with_float64():
    x, y = data(32, 6, 4)
    nets = {dt: MLP([6, 20, 20, 4], activation="gelu", dtype=dt, seed=0)
            for dt in ("float32", "float64")}
    assert nets["float32"].params.dtype == np.float32
    assert_close(nets["float32"].params, nets["float64"].params, dtype=np.float32)
    losses = {}
    for dt, net in nets.items():
        opt = Momentum(lr=0.05, momentum=0.9)
        losses[dt] = [net.train_step(x, y, opt) for _ in range(10)]
    assert_close(losses["float32"], losses["float64"], dtype=np.float32)
    assert_close(nets["float32"].params, nets["float64"].params, dtype=np.float32, atol=1e-4)


def test_batchnorm_running_statistics_match_torch():
    rng = np.random.default_rng(0)
    x = rng.normal(2.0, 3.0, size=(24, 5))
    y = rng.integers(0, 3, 24)
    net = MLP([5, 6, 3], activation="relu", batchnorm=True, seed=0)
    linear = torch.nn.Linear(5, 6).double()
    bn = torch.nn.BatchNorm1d(6).double()
    head = torch.nn.Linear(6, 3).double()
    with torch.no_grad():
        linear.weight.copy_(torch.tensor(net.weights[0]))
        linear.bias.copy_(torch.tensor(net.biases[0]))
        head.weight.copy_(torch.tensor(net.weights[1]))
        head.bias.copy_(torch.tensor(net.biases[1]))
    model = torch.nn.Sequential(linear, bn, torch.nn.ReLU(), head)
    topt = torch.optim.SGD(model.parameters(), lr=0.1)
    opt = SGD(lr=0.1)
    for step in range(20):
        rows = rng.permutation(24)[:8]
        net.train_step(x[rows], y[rows], opt)
        topt.zero_grad()
        torch.nn.functional.cross_entropy(model(torch.tensor(x[rows])),
                                          torch.tensor(y[rows])).backward()
        topt.step()
        assert_close(net.running_mean[0], bn.running_mean.numpy(), name=f"mean@{step}")
        assert_close(net.running_var[0], bn.running_var.numpy(), name=f"var@{step}")
    assert_close(net.gammas[0], bn.weight.detach().numpy())
    model.eval()
    with torch.no_grad():
        expected = torch.softmax(model(torch.tensor(x)), dim=1).numpy()
    assert_close(net.forward(x), expected, name="evaluation-mode forward")


def test_non_finite_step_is_refused_and_reported():
    x, y = data(8, 3, 2)
    net = MLP([3, 4, 2], activation="relu", seed=0)
    net.weights[0][0, 0] = np.inf
    before = net.params.copy()
    with pytest.raises(DivergenceError, match="non-finite"):
        net.train_step(x, y, SGD(lr=0.1))
    assert np.array_equal(net.params, before, equal_nan=True)


def test_an_eps_that_rounds_to_zero_in_the_dtype_is_refused_before_any_update():
    """Adam in float32 with eps = 1e-50 (0 in float32) would give a weight whose gradient is
    exactly 0 the update 0 / (sqrt(0) + 0) = NaN although loss and gradient are finite: the
    optimizer is refused when used, naming eps, and nothing changes."""
    x, y = data(8, 3, 2)
    net = MLP([3, 4, 2], activation="relu", dtype="float32", seed=0)
    net.weights[0][0, :] = -1.0  # a unit dead on every row: its weights' gradient is exactly 0
    net.biases[0][0] = -100.0
    opt = Adam(lr=1e-3, eps=1e-50, eps_inside_sqrt=False)
    before = net.params.copy()
    with pytest.raises(ValueError, match="eps"):
        net.train_step(x.astype(np.float32), y, opt)
    assert np.array_equal(net.params, before) and opt.step_count == 0


def test_non_finite_update_is_refused_and_named():
    """SGD with weight decay on a weight of 1.7e308: loss and gradient are finite, the update
    lr (g + wd theta) overflows; the step raises, names the update, and leaves parameters,
    moments and step count as they were."""
    x, y = data(8, 3, 2)
    net = MLP([3, 4, 2], activation="tanh", seed=0)
    net.weights[0][0, 0] = 1.7e308
    opt = SGD(lr=3.0, weight_decay=1.0)
    before = net.params.copy()
    with pytest.raises(DivergenceError, match="non-finite update") as info:
        net.train_step(x, y, opt)
    assert "gradient" not in str(info.value).split("(")[0]
    assert np.array_equal(net.params, before)
    assert opt.step_count == 0
    assert net.last_step_stats()["status"] == DIVERGED_UPDATE
    assert np.isfinite(net.last_step_stats()["grad_norm"])


def test_divergence_status_tells_loss_gradient_and_update_apart():
    x, y = data(8, 3, 2)
    causes = {}
    for name, edit, opt in (
            ("loss", lambda n: n.weights[1].__setitem__((0, 0), np.nan), SGD(lr=0.1)),
            ("gradient", lambda n: n.weights[1].__setitem__((0, 0), 1e300), SGD(lr=0.1)),
            ("update", lambda n: n.weights[0].__setitem__((0, 0), 1.7e308),
             SGD(lr=3.0, weight_decay=1.0))):
        net = MLP([3, 4, 2], activation="tanh", seed=0)
        edit(net)
        before = net.params.copy()
        with pytest.raises(DivergenceError) as info:
            net.train_step(x, y, opt)
        causes[name] = (net.last_step_stats()["status"], str(info.value))
        assert np.array_equal(net.params, before, equal_nan=True)
    assert causes["loss"][0] == DIVERGED_LOSS and "non-finite loss" in causes["loss"][1]
    assert causes["gradient"][0] == DIVERGED_GRADIENT
    assert "non-finite gradient" in causes["gradient"][1]
    assert causes["update"][0] == DIVERGED_UPDATE and "non-finite update" in causes["update"][1]


def test_fit_records_divergence_as_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 4)) * 10
    y = rng.normal(size=(32, 1)) * 100
    net = MLP([4, 32, 32, 1], activation="relu", loss="mse", seed=0)
    history = net.fit(x, y, SGD(lr=10.0), epochs=50, batch_size=8)
    assert history.diverged and history.n_steps <= 200
    loss, norm = history.steps["loss"][-1], history.steps["grad_norm"][-1]
    assert not np.isfinite(loss) or not np.isfinite(norm)
    expected = "non-finite loss" if not np.isfinite(loss) else "non-finite gradient"
    assert history.divergence_cause == expected
    assert history.n_steps == history.diverged_step + 1  # the refused step is the last row


@pytest.mark.parametrize("batch_size,steps", [(None, 1), (1, 20), (6, 4)])
def test_gradient_descent_variants_by_batch_size(batch_size, steps):
    x, y = data(20, 3, 2)
    net = MLP([3, 5, 2], activation="tanh", seed=0)
    history = net.fit(x, y, SGD(lr=0.1), epochs=2, batch_size=batch_size, seed=0)
    assert history.n_steps == 2 * steps
    assert history.epochs[-1]["step"] == 2 * steps


def test_full_batch_step_equals_loss_and_grads_update():
    x, y = data(12, 3, 2)
    net = MLP([3, 5, 2], activation="tanh", seed=0)
    expected = net.params - 0.5 * np.concatenate(
        [np.concatenate([w.ravel(), b]) for w, b in zip(*net.loss_and_grads(x, y)[1:])])
    net.fit(x, y, SGD(lr=0.5), epochs=1, shuffle=False)
    assert_close(net.params, expected)


def test_warm_cache_does_not_recompile(tmp_path):
    code = ("import numpy as np\n"
            "from kernels import MLP, step\n"
            "from kernels.optimizers import Adam\n"
            "net = MLP([4, 8, 3], activation='tanh', seed=0)\n"
            "x = np.ones((5, 4)); y = np.array([0, 1, 2, 0, 1])\n"
            "net.train_step(x, y, Adam())\n"
            "print(sum(step.train_batches.stats.cache_misses.values()),"
            " sum(step.train_batches.stats.cache_hits.values()))\n")
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    run = lambda: subprocess.run([sys.executable, "-c", code], cwd=root, env=env,
                                 capture_output=True, text=True, check=True).stdout.split()
    run()
    misses, hits = run()
    assert (misses, hits) == ("0", "1")


def test_fresh_compile_and_cached_kernels_give_the_same_bits(tmp_path):
    """Reproducible across processes: a process that compiles the kernels (empty cache) and one
    that loads them from the cache train to the same bits, parameters and every record (the
    norms' sums included), for every optimizer with clipping, in float32, and split steps."""
    code = ("import hashlib, numpy as np\n"
            "from kernels import MLP\n"
            "from kernels.clipping import GlobalNorm\n"
            "from kernels.layout import allocate_record\n"
            "from kernels.optimizers import SGD, Momentum, RMSProp, Adam\n"
            "rng = np.random.default_rng(0)\n"
            "x = rng.normal(size=(64, 13)).astype(np.float32); y = rng.integers(0, 3, 64)\n"
            "digest = hashlib.sha256()\n"
            "for opt in (SGD(lr=0.3), Momentum(lr=0.1, nesterov=True), RMSProp(lr=0.01),\n"
            "            Adam(lr=0.01, eps_inside_sqrt=False)):\n"
            "    net = MLP([13, 37, 21, 3], activation='tanh', dtype='float32', seed=1)\n"
            "    rec = allocate_record(12, net.n_layers)\n"
            "    xk, yk = net.check_batch(x, y)\n"
            "    order = rng.permutation(np.tile(np.arange(64), 3))[:12 * 16].astype(np.int64)\n"
            "    net.run_steps(xk, yk, order, 16, opt, GlobalNorm(0.5), rec)\n"
            "    digest.update(net.params.tobytes())\n"
            "    for field in rec:\n"
            "        digest.update(np.ascontiguousarray(field).tobytes())\n"
            "from kernels import step_helper\n"
            "from kernels.gemm_threads import set_blas_threads\n"
            "set_blas_threads(2); step_helper.SPLIT_FLOPS = 0.0  # and split steps\n"
            "step_helper.enable_split_steps()\n"
            "for clip in (GlobalNorm(0.5), None):\n"
            "    net = MLP([13, 37, 21, 3], activation='tanh', dtype='float32', seed=1)\n"
            "    rec = allocate_record(12, net.n_layers)\n"
            "    xk, yk = net.check_batch(x, y)\n"
            "    net.run_steps(xk, yk, order, 16, Adam(lr=0.01), clip, rec)\n"
            "    assert net._second is not None\n"
            "    digest.update(net.params.tobytes())\n"
            "    for field in rec:\n"
            "        digest.update(np.ascontiguousarray(field).tobytes())\n"
            "print(digest.hexdigest())\n")
    fresh, cached = fresh_and_cached(code, tmp_path / "cache")
    assert any((tmp_path / "cache").rglob("*.nbi"))  # the first process filled the cache
    assert cached == fresh


def test_evaluation_loss_is_exact_for_confidently_wrong_float32_networks():
    net = MLP([2, 3], activation=[], dtype="float32", seed=0)
    net.weights[0][...] = [[1e4, 0], [0, 1e4], [-1e4, 0]]
    x = np.array([[1.0, 0.0], [0.0, 1.0]])
    y = np.array([2, 0])
    loss, accuracy = net.evaluate(x, y)
    # logits [1e4, 0, -1e4] with label 2: lse - z_2 = 2e4 (probabilities underflow to 0)
    assert abs(loss - 0.5 * (2e4 + 1e4)) < 1.0 and accuracy == 0.0
    assert net.loss_and_grads(x, y)[0] == pytest.approx(loss, rel=1e-6)
    assert net.forward(x, logits=True)[0, 0] == pytest.approx(1e4)
