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


@pytest.mark.parametrize("sizes", ["43", b"43", [4, True, 3], [4, float("inf"), 3],
                                   [4, float("nan"), 3], [4, 1 << 21, 3], [4, 10**30, 3],
                                   [4, "3"], 7, None, np.ones((2, 2), int)])
def test_sizes_are_integers_in_range(sizes):
    with pytest.raises(ValueError, match=r"^sizes: expected at least two positive integer "
                                         r"widths <= 1048576"):
        MLP(sizes)


def test_integral_sizes_of_any_integer_type_are_accepted():
    assert MLP(np.array([4, 3])).sizes == [4, 3]
    assert MLP((4, np.int32(5), 3.0)).sizes == [4, 5, 3]


@pytest.mark.parametrize("activation", [5, None, 1.5, {"relu"}])
def test_activation_of_a_wrong_type_is_a_value_error(activation):
    with pytest.raises(ValueError, match="^activation: expected a name or a list of 1 names"):
        MLP([4, 5, 3], activation=activation)
    with pytest.raises(ValueError, match="^activation: unknown name 5"):
        MLP([4, 5, 3], activation=[5])


@pytest.mark.parametrize("seed", [-1, 1.5, "0", None, True, 2**63, float("nan")])
def test_seed_errors_name_the_seed(seed):
    with pytest.raises(ValueError, match=r"^seed: expected an integer in \[0, 2\*\*63\)"):
        MLP([4, 3], seed=seed)
    if seed is not None:  # reset_parameters(None) redraws from the network's own seed
        with pytest.raises(ValueError, match=r"^seed: expected an integer"):
            MLP([4, 3]).reset_parameters(seed)
    assert MLP([4, 3], seed=2**63 - 1).seed == 2**63 - 1


def test_batchnorm_must_be_a_bool():
    with pytest.raises(ValueError, match="^batchnorm: expected true or false, got 'no'"):
        MLP([4, 5, 3], batchnorm="no")


# ---------------------------------------------------------------- optimizers, when used
def _step(opt, dtype="float64", x=None):
    net = MLP([4, 5, 3], dtype=dtype, seed=0)
    x = np.ones((6, 4)) if x is None else x
    return net, lambda: net.train_step(x, np.array([0, 1, 2, 0, 1, 2]), opt)


@pytest.mark.parametrize("make,attribute,value,message", [
    (lambda: SGD(0.1), "lr", float("nan"), "lr: expected a finite number"),
    (lambda: SGD(0.1), "lr", 0.0, "lr: expected a positive number"),
    (lambda: SGD(0.1), "lr", "fast", "lr: expected a number"),
    (lambda: SGD(0.1), "weight_decay", -1.0, "weight_decay: expected a non-negative"),
    (lambda: Momentum(0.1), "momentum", 1.0, r"momentum: expected a number in \[0, 1\)"),
    (lambda: Momentum(0.1), "nesterov", "yes", "nesterov: expected true or false"),
    (lambda: RMSProp(0.1), "decay", 1.5, r"rho: expected a number in \[0, 1\)"),
    (lambda: RMSProp(0.1), "eps", 0.0, "eps: expected a positive number"),
    (lambda: Adam(0.1), "momentum", -0.1, "beta1: expected a non-negative number"),
    (lambda: Adam(0.1), "decay", 1.0, r"beta2: expected a number in \[0, 1\)"),
    (lambda: Adam(0.1), "eps", float("inf"), "eps: expected a finite number"),
    (lambda: Adam(0.1), "schedule", "cosine", "schedule: expected a kernels.schedules.Schedule"),
])
def test_hyperparameters_changed_after_construction_are_checked_when_used(make, attribute,
                                                                           value, message):
    opt = make()
    net, step = _step(opt)
    step()  # a valid step first: the checked vectors are cached
    before = net.params.copy()
    setattr(opt, attribute, value)
    with pytest.raises(ValueError, match=f"^{message}"):
        step()
    np.testing.assert_array_equal(net.params, before)


def test_an_eps_that_rounds_to_zero_in_float32_is_refused_when_bound():
    """A float32 eps of 1e-46 is 0: Adam on an all-zero input column gave 0/0 = NaN weights."""
    x = np.ones((6, 4), np.float32)
    x[:, 0] = 0.0
    opt = Adam(0.01, eps=1e-46)
    net, step = _step(opt, "float32", x)
    with pytest.raises(ValueError, match=r"^eps: 1e-46 rounds to 0 in float32; expected at "
                                         r"least 1.4e-45"):
        step()
    assert np.isfinite(net.params).all()
    opt64 = Adam(0.01, eps=1e-46)  # representable in float64: trains
    _, step64 = _step(opt64, "float64", x.astype(np.float64))
    step64()
    small = Adam(0.01, eps=1e-44)  # a float32 subnormal, not zero: trains
    net32, step32 = _step(small, "float32", x)
    step32()
    assert np.isfinite(net32.params).all()


def test_an_lr_that_overflows_float32_is_refused():
    with pytest.raises(ValueError, match=r"^lr: 1e\+300 overflows float32"):
        _step(SGD(1e300), "float32")[1]()


def test_make_optimizer_names_the_bad_argument():
    with pytest.raises(ValueError, match=r"^rho: not a hyperparameter of optimizer 'adam'; "
                                         r"expected one of \['beta1', 'beta2', 'eps'"):
        make_optimizer("adam", lr=0.1, rho=0.9)
    with pytest.raises(ValueError, match="^optimizer: unknown name 5"):
        make_optimizer(5)
    nesterov = make_optimizer("nesterov", lr=0.1, momentum=0.5)
    assert isinstance(nesterov, Momentum) and nesterov.nesterov and nesterov.momentum == 0.5
    assert make_optimizer("adam").lr == Adam().lr


def test_schedules_built_directly_are_checked():
    from kernels.schedules import Schedule
    with pytest.raises(ValueError, match="^step_size: expected a positive number of steps"):
        Schedule("step", 0.0, 0.5)
    with pytest.raises(ValueError, match="^gamma: expected a positive factor"):
        Schedule("exponential", 0.0, float("nan"))
    with pytest.raises(ValueError, match="^warmup: expected a non-negative integer"):
        Schedule("constant", warmup=-2)


def test_make_clip():
    from kernels.clipping import make_clip
    assert make_clip("none", 5.0) == Clip() and make_clip() == Clip()
    assert make_clip("value", 2) == Clip("value", 2.0)
    with pytest.raises(ValueError, match=r"^clip mode: unknown name 'norm'; expected one of"):
        make_clip("norm", 1.0)
    with pytest.raises(ValueError, match="^clip threshold: clip 'global_norm' needs"):
        make_clip("global_norm")
    with pytest.raises(ValueError, match="^clip threshold: expected a positive finite"):
        make_clip("layer_norm", float("inf"))


def test_an_input_too_large_for_float32_says_it_overflows_not_that_it_is_nan():
    import warnings

    from kernels.validation import check_inputs
    x = np.ones((2, 3))
    x[0, 0] = 1e39
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=r"^x: values up to 1e\+39 overflow float32"):
            check_inputs(x, 3, np.float32)
    assert check_inputs(x, 3, np.float64)[0, 0] == 1e39
    x[1, 1] = np.nan
    with pytest.raises(ValueError, match="^x: contains NaN or Inf$"):
        check_inputs(x, 3, np.float64)
