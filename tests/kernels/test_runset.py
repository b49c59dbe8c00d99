"""kernels.runset: the checks and properties every multi-run group shares (MultiMLP here; the
device groups in tests/kernels/test_cuda_api.py)."""
import numpy as np
import pytest

from kernels import MLP
from kernels.multirun import MultiMLP, _check_same_architecture, _per_run
from kernels.runset import RunSet, check_orders, check_same_architecture, per_run


def test_multirun_keeps_the_shared_names():
    assert _check_same_architecture is check_same_architecture and _per_run is per_run
    assert issubclass(MultiMLP, RunSet)


@pytest.mark.parametrize("other", [dict(sizes=[3, 5, 2]), dict(activation="tanh"),
                                   dict(activation="leaky_relu", activation_param=0.2),
                                   dict(loss="mse"), dict(batchnorm=True),
                                   dict(dtype="float32")])
def test_architecture_differences_are_refused(other):
    base = dict(sizes=[3, 4, 2], activation="leaky_relu")
    a, b = MLP(**base), MLP(**{**base, **other})
    with pytest.raises(ValueError, match="^nets: every network of a multi-run group needs the "
                                         "same architecture"):
        check_same_architecture(a, b)
    check_same_architecture(a, MLP(**base, seed=5, init="orthogonal"))  # init and seed may differ


def test_per_run():
    assert per_run(1, 3, "x") == [1, 1, 1]
    assert per_run([1, 2, 3], 3, "x") == [1, 2, 3] and per_run((4, 5), 2, "x") == [4, 5]
    with pytest.raises(ValueError, match="^seeds: expected one or 3 values, got 2"):
        per_run([0, 1], 3, "seeds")


def test_check_orders():
    np.testing.assert_array_equal(check_orders(None, 4, 2), [[0, 1, 2, 3]])
    shared = check_orders(np.array([3, 1, 0], np.int32), 4, 2)
    assert shared.dtype == np.int64 and shared.shape == (1, 3) and shared.flags.c_contiguous
    assert check_orders(np.zeros((2, 5), int), 1, 2).shape == (2, 5)
    assert check_orders(np.zeros((1, 5), int), 1, 2).shape == (1, 5)
    for order, message in ((np.zeros((3, 5), int), r"order: expected 2 rows \(one per run\)"),
                           (np.array([0.5, 1.0]), "order: expected a non-empty integer array"),
                           (np.zeros(0, int), "order: expected a non-empty integer array"),
                           (np.zeros((2, 2, 2), int), "order: expected a non-empty integer"),
                           (np.array([0, 4]), r"order: indices must lie in \[0, 3\]"),
                           (np.array([-1, 0]), r"order: indices must lie in \[0, 3\]")):
        with pytest.raises(ValueError, match=f"^{message}"):
            check_orders(order, 4, 2)


def test_properties_and_templates():
    nets = [MLP([3, 4, 2], seed=s, batchnorm=True, loss="mse") for s in range(3)]
    group = MultiMLP(nets)
    assert (group.runs, group.sizes, group.n_layers, group.n_params) == (3, [3, 4, 2], 2,
                                                                         nets[0].n_params)
    assert group.dtype == np.float64 and group.batchnorm and not group.classification
    assert group.spec is group.template.spec and group.template is not nets[0]
    np.testing.assert_array_equal(group.templates[2].params, nets[2].params)
    for bad, message in (([], "nets: expected a non-empty list of kernels.MLP"),
                         (nets + [None], "nets: expected a non-empty list of kernels.MLP"),
                         (nets + [MLP([3, 4, 2])], "nets: every network")):
        with pytest.raises(ValueError, match=f"^{message}"):
            MultiMLP(bad)
