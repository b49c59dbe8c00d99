"""Bad input raises ValueError naming the argument and what was expected."""
import numpy as np
import pytest

from kernels import MLP
from kernels.clipping import Clip, GlobalNorm
from kernels.optimizers import SGD, Adam, Momentum, RMSProp, make_optimizer
from kernels.schedules import Cosine, Step, make_schedule


@pytest.mark.parametrize("kwargs,message", [
    (dict(sizes=[4]), "sizes: expected at least two"),
    (dict(sizes=[4, 0, 2]), "sizes: expected at least two positive integer"),
    (dict(sizes=[4, 2.5, 2]), "sizes"),
    (dict(sizes="abc"), "sizes"),
    (dict(activation="tanhh"), r"activation: unknown name 'tanhh' \(did you mean 'tanh'\?\)"),
    (dict(activation=["relu", "tanh"]), "activation: expected one name or a list of 1"),
    (dict(activation="softmax"), "activation: unknown name 'softmax'"),
    (dict(loss="hinge"), r"loss: unknown name 'hinge'.*'cross_entropy', 'mse'"),
    (dict(init="kaiming"), "init: unknown name 'kaiming'"),
    (dict(init="naive_normal"), "init_scale: init 'naive_normal' needs a scale"),
    (dict(init="naive_normal", init_scale=-1.0), "init_scale: expected a positive number"),
    (dict(dtype="float16"), "dtype: unknown name 'float16'"),
    (dict(loss="cross_entropy", output_activation="sigmoid"), "output_activation: cross_entropy"),
    (dict(gain=0.0), "gain: expected a positive number"),
    (dict(bias_scale=float("nan")), "bias_scale: expected a finite number"),
    (dict(device="tpu"), "device: unknown name 'tpu'"),
])
def test_bad_constructor_arguments(kwargs, message):
    args = dict(sizes=[4, 5, 3])
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        MLP(args.pop("sizes"), **args)


def net_and_batch(loss="cross_entropy"):
    net = MLP([4, 5, 3], activation="relu", loss=loss, seed=0)
    return net, np.ones((6, 4)), np.array([0, 1, 2, 0, 1, 2])


@pytest.mark.parametrize("x,y,message", [
    (np.ones((6, 5)), None, r"x: expected shape \(batch, 4\), got \(6, 5\)"),
    (np.ones(4), None, r"x: expected shape \(batch, 4\)"),
    (np.ones((0, 4)), np.zeros(0, int), "x: expected at least one row"),
    (np.full((6, 4), np.nan), None, "x: contains NaN or Inf"),
    (np.full((6, 4), np.inf), None, "x: contains NaN or Inf"),
    (np.array([["a"] * 4] * 6), None, "x: expected a real numeric array"),
    (None, np.array([0, 1, 2, 0, 1, 3]), r"y: labels out of range: expected integers in \[0, 2\]"),
    (None, np.array([0, 1, 2, 0, 1, -1]), "y: labels out of range"),
    (None, np.array([0, 1, 2]), "y: expected 6 rows to match x"),
    (None, np.array([0.5, 1, 2, 0, 1, 2]), "y: class labels must be integers"),
    (None, np.ones((6, 2)), r"y: expected integer labels of shape \(6,\) or one-hot"),
    (None, np.full((6, 3), 0.5), "y: one-hot .* sum to 1"),
])
def test_bad_batches(x, y, message):
    net, x0, y0 = net_and_batch()
    x = x0 if x is None else x
    y = y0 if y is None else y
    for call in (lambda: net.loss_and_grads(x, y), lambda: net.train_step(x, y, SGD(0.1))):
        with pytest.raises(ValueError, match=message):
            call()


def test_one_hot_labels_are_accepted():
    net, x, y = net_and_batch()
    onehot = np.eye(3)[y]
    assert net.loss_and_grads(x, y)[0] == net.loss_and_grads(x, onehot)[0]


def test_bad_regression_targets():
    net, x, _ = net_and_batch("mse")
    with pytest.raises(ValueError, match=r"y: expected targets of shape \(6, 3\)"):
        net.loss_and_grads(x, np.ones((6, 2)))
    with pytest.raises(ValueError, match="y: contains NaN or Inf"):
        net.loss_and_grads(x, np.full((6, 3), np.nan))


@pytest.mark.parametrize("make,message", [
    (lambda: SGD(lr=0.0), "lr: expected a positive number, got 0.0"),
    (lambda: SGD(lr=-1), "lr: expected a positive number"),
    (lambda: SGD(lr="fast"), "lr: expected a number"),
    (lambda: Adam(lr=float("inf")), "lr: expected a finite number"),
    (lambda: Momentum(lr=0.1, momentum=1.0), r"momentum: expected a number in \[0, 1\)"),
    (lambda: RMSProp(rho=-0.1), "rho: expected a non-negative number"),
    (lambda: Adam(beta2=1.5), r"beta2: expected a number in \[0, 1\)"),
    (lambda: Adam(eps=0), "eps: expected a positive number"),
    (lambda: SGD(lr=0.1, weight_decay=-1), "weight_decay: expected a non-negative number"),
    (lambda: make_optimizer("adamw"), r"optimizer: unknown name 'adamw' \(did you mean 'adam'\?\)"),
    (lambda: SGD(lr=0.1, schedule="cosine"), "schedule: expected a kernels.schedules.Schedule"),
    (lambda: Cosine(t_max=0), "t_max: expected a positive number of steps"),
    (lambda: Step(step_size=10, gamma=-1), "gamma: expected a positive factor"),
    (lambda: make_schedule("linear"), "schedule: unknown name 'linear'"),
    (lambda: Cosine(t_max=10, warmup=1.5), "warmup: expected a non-negative integer"),
    (lambda: Clip("norm", 1.0), "clip mode: unknown name 'norm'"),
    (lambda: GlobalNorm(0.0), "clip threshold: expected a positive finite number"),
])
def test_bad_optimizer_schedule_and_clip_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_bad_training_arguments():
    net, x, y = net_and_batch()
    with pytest.raises(ValueError, match="opt: expected an optimizer"):
        net.train_step(x, y, "adam")
    with pytest.raises(ValueError, match="clip: expected a kernels.clipping.Clip"):
        net.train_step(x, y, SGD(0.1), clip=1.0)
    with pytest.raises(ValueError, match="batch_size: expected a positive integer"):
        net.fit(x, y, SGD(0.1), batch_size=0)
    with pytest.raises(ValueError, match="batch_size: expected at most the 6 training rows"):
        net.fit(x, y, SGD(0.1), batch_size=7)
    with pytest.raises(ValueError, match="epochs: expected a positive integer"):
        net.fit(x, y, SGD(0.1), epochs=-1)
    other = MLP([4, 5, 3], seed=1)
    opt = SGD(0.1)
    net.train_step(x, y, opt)
    with pytest.raises(ValueError, match="optimizer: this optimizer already holds the state"):
        other.train_step(x, y, opt)


def test_batchnorm_needs_two_rows():
    net = MLP([4, 5, 3], batchnorm=True, seed=0)
    with pytest.raises(ValueError, match="batch norm needs at least 2 rows"):
        net.train_step(np.ones((1, 4)), np.array([0]), SGD(0.1))
    with pytest.raises(ValueError, match="batch_size: batch norm needs at least 2 rows"):
        net.fit(np.ones((6, 4)), np.zeros(6, int), SGD(0.1), batch_size=1)
    assert net.forward(np.ones((1, 4))).shape == (1, 3)  # evaluation mode is per row
