"""CudaMLP offers the CPU MLP's public API (device methods, host copies where documented), the
device groups share the CPU multi-run base, and the device step uses the CPU's schedule
function and optimizer checks.

Runs on a GPU or under the numba-cuda simulator (tests/kernels/test_cuda_sim.py runs it in a
subprocess with NUMBA_ENABLE_CUDASIM=1); not collected otherwise (tests/conftest.py).
"""
import numpy as np
import pytest

import kernels.cuda as kcuda
from kernels import MLP
from kernels.clipping import Clip
from kernels.multirun import MultiMLP
from kernels.optimizers import SGD, Adam, Momentum
from kernels.runset import RunSet
from kernels.schedules import Step, lr_at
from kernels.tolerance import assert_close

# the public methods and attributes of the CPU MLP every device network must have too
MLP_API = ("sizes", "dtype", "n_params", "n_layers", "params", "weights", "biases", "gammas",
           "betas", "running", "running_mean", "running_var", "batchnorm", "classification",
           "loss_name", "activations", "hidden_activations", "output_activation", "init",
           "seed", "forward", "predict", "accuracy", "loss", "evaluate", "loss_and_grads",
           "grads_by_name", "trace", "train_step", "fit", "check_batch", "copy", "config")


@pytest.fixture(autouse=True)
def _needs_cuda():
    if not kcuda.available():
        pytest.skip("no CUDA GPU and NUMBA_ENABLE_CUDASIM is not set")


def _data(n, seed=0, n_in=3, n_out=2):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, n_in)), rng.integers(0, n_out, n)


def test_device_network_has_the_cpu_api():
    cpu = MLP([3, 4, 2], activation="tanh", seed=1)
    dev = MLP([3, 4, 2], activation="tanh", seed=1, device="cuda")
    missing = [name for name in MLP_API if not hasattr(dev, name) or not hasattr(cpu, name)]
    assert not missing, missing
    assert dev.device == "cuda" and cpu.device == "cpu"
    for a, b in zip(dev.weights + dev.biases, cpu.weights + cpu.biases):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(dev.params, cpu.params)
    assert dev.config() == cpu.config() and dev.n_layers == cpu.n_layers == 2


@pytest.mark.parametrize("mlp", [dict(activation="relu", loss="cross_entropy"),
                                 dict(activation="sigmoid", loss="mse",
                                      output_activation="sigmoid")])
def test_evaluation_methods_equal_the_cpu(mlp):
    cpu = MLP([3, 5, 2], seed=2, bias_scale=0.3, **mlp)
    dev = kcuda.CudaMLP(cpu)
    x, labels = _data(7, seed=3)
    y = labels if cpu.classification else np.random.default_rng(4).uniform(size=(7, 2))
    for logits in (False, True):
        assert_close(dev.forward(x, logits=logits), cpu.forward(x, logits=logits),
                     name=f"forward logits={logits}")
    assert_close(np.array(dev.evaluate(x, y)[0]), np.array(cpu.evaluate(x, y)[0]),
                 name="evaluate loss")
    assert dev.evaluate(x, y)[1] == cpu.evaluate(x, y)[1]
    assert_close(dev.loss(x, y), cpu.loss(x, y), name="loss")
    if cpu.classification:
        assert dev.accuracy(x, labels) == cpu.accuracy(x, labels)
        np.testing.assert_array_equal(dev.predict(x), cpu.predict(x))
    traced_dev, traced_cpu = dev.trace(x, y), cpu.trace(x, y)
    assert traced_dev.keys() == traced_cpu.keys()
    for key, value in traced_cpu.items():
        np.testing.assert_array_equal(traced_dev[key], value)
    loss_dev, dw_dev, db_dev = dev.loss_and_grads(x, y)
    loss_cpu, dw_cpu, db_cpu = cpu.loss_and_grads(x, y)
    assert_close(loss_dev, loss_cpu, name="loss_and_grads")
    for a, b in zip(dw_dev + db_dev, dw_cpu + db_cpu):
        assert_close(a, b, name="gradients")
    for a, b in zip(dev.grads_by_name()["W"], cpu.grads_by_name()["W"]):
        assert_close(a, b, name="grads_by_name")


@pytest.mark.parametrize("clip", [None, Clip("global_norm", 0.3)])
def test_fit_equals_the_cpu_fit(clip):
    cpu = MLP([3, 4, 2], activation="elu", seed=5)
    dev = kcuda.CudaMLP(cpu)
    x, y = _data(9, seed=6)
    xt, yt = _data(5, seed=7)
    args = dict(epochs=2, batch_size=4, seed=11, clip=clip, x_test=xt, y_test=yt)
    opt_cpu, opt_dev = Adam(0.05, schedule=Step(2, 0.5)), Adam(0.05, schedule=Step(2, 0.5))
    hist_cpu, hist_dev = cpu.fit(x, y, opt_cpu, **args), dev.fit(x, y, opt_dev, **args)
    assert not hist_dev.diverged and len(hist_dev.epochs) == len(hist_cpu.epochs) == 2
    for e_dev, e_cpu in zip(hist_dev.epochs, hist_cpu.epochs):
        assert e_dev.keys() == e_cpu.keys() and e_dev["step"] == e_cpu["step"]
        for key in e_cpu:
            assert_close(np.array(e_dev[key]), np.array(e_cpu[key]), name=f"epoch {key}")
    assert hist_dev.steps.keys() == hist_cpu.steps.keys()
    for key in ("loss", "grad_norm", "grad_norm_clipped", "lr"):
        assert_close(hist_dev.steps[key], hist_cpu.steps[key], name=f"steps {key}")
    assert np.isnan(hist_dev.steps["w_norm"]).all()
    assert_close(dev.params, cpu.params, name="params after fit")
    assert dev.step_count == opt_cpu.step_count == 6


def test_fit_records_a_divergence():
    net = MLP([3, 2], loss="mse", seed=0)
    dev = kcuda.CudaMLP(net)
    x = np.ones((4, 3))
    y = np.full((4, 2), 1e200)
    history = dev.fit(x, y, SGD(0.1), epochs=3, batch_size=2, shuffle=False)
    assert history.diverged and history.diverged_step == 0 and history.epochs == []
    assert len(history.steps["loss"]) == 1 and not np.isfinite(history.steps["loss"][0])


def test_the_groups_share_one_base():
    from kernels.cuda.mlp import DeviceNets
    for cls in (MultiMLP, DeviceNets, kcuda.CudaMLP, kcuda.CudaMultiMLP):
        assert issubclass(cls, RunSet)
    nets = [MLP([3, 4, 2], seed=s) for s in range(2)]
    cpu, dev = MultiMLP(nets), kcuda.CudaMultiMLP(nets)
    for group in (cpu, dev):
        assert (group.runs, group.sizes, group.n_params) == (2, [3, 4, 2], nets[0].n_params)
        for bad, message in (([], "nets: expected a non-empty list of kernels.MLP"),
                             (nets + ["net"], "nets: expected a non-empty list of kernels.MLP"),
                             (nets + [MLP([3, 5, 2])], "nets: every network .* same archit")):
            with pytest.raises(ValueError, match=message):
                type(group)(bad)
    x, y = _data(6, seed=1)
    for group in (cpu, dev):  # a (1, rows) order serves every run on both paths
        losses = group.train_epoch(x, y, SGD(0.1), batch_size=3, order=np.arange(6)[None])
        assert losses.shape == (2, 2)
        with pytest.raises(ValueError, match=r"order: expected 2 rows \(one per run\)"):
            group.train_epoch(x, y, SGD(0.1), order=np.zeros((3, 6), int))
        with pytest.raises(ValueError, match="^opts: expected one or 2 values, got 3"):
            group.train_step(x, y, [SGD(0.1)] * 3)


def test_schedule_is_the_cpu_function():
    from kernels.cuda import optimizers
    compiled = optimizers.scheduled_lr
    assert getattr(compiled, "py_func", getattr(compiled, "fn", None)) is lr_at


def test_optimizer_values_are_checked_on_the_device():
    dev = kcuda.CudaMLP(MLP([3, 4, 2], seed=0))
    x, y = _data(4)
    opt = Momentum(0.1)
    dev.train_step(x, y, opt)
    before = dev.params
    opt.lr = float("nan")
    with pytest.raises(ValueError, match="^lr: expected a finite number"):
        dev.train_step(x, y, opt)
    np.testing.assert_array_equal(dev.params, before)
    dev32 = kcuda.CudaMLP(MLP([3, 4, 2], seed=0, dtype="float32"))
    with pytest.raises(ValueError, match="^eps: 1e-46 rounds to 0 in float32"):
        dev32.train_step(x, y, Adam(0.01, eps=1e-46))
