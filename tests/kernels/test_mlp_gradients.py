"""Gradients of the fused kernel against float64 central differences, PyTorch autograd and the
NumPy reference, for every activation x loss x batch norm on several depths and widths."""
import itertools

import numpy as np
import pytest

from kernels import MLP
from kernels.activations import ACTIVATIONS
from kernels.reference import reference_trace_of
from kernels.tolerance import assert_close, relative_error
from _torch_twin import torch_trace

HIDDEN = [name for name, a in ACTIVATIONS.items() if a.hidden]
ARCHITECTURES = [[3, 4, 2], [4, 5, 3, 3], [3, 6, 4, 5, 2]]
FD_STEP = 1e-6
FD_TOLERANCE = 1e-6


def make_case(activation, loss, batchnorm, sizes, seed=0, batch=5, output=None):
    rng = np.random.default_rng(seed)
    net = MLP(sizes, activation=activation, loss=loss, batchnorm=batchnorm, seed=seed,
              output_activation=output, bias_scale=0.1)
    if batchnorm:  # non-trivial gamma/beta so their gradients are exercised
        for g, b in zip(net.gammas[:-1], net.betas[:-1]):
            g[...] = rng.uniform(0.5, 1.5, g.shape)
            b[...] = rng.normal(0, 0.2, b.shape)
    x = rng.normal(size=(batch, sizes[0]))
    if loss == "cross_entropy":
        y = rng.integers(0, sizes[-1], batch)
    else:
        y = rng.normal(size=(batch, sizes[-1]))
    return net, x, y


def finite_differences(net, x, y):
    """Central differences of the batch loss for every entry of the flat parameter vector."""
    grad = np.zeros(net.n_params)
    for i in range(net.n_params):
        keep = net.params[i]
        net.params[i] = keep + FD_STEP
        up = net.loss_and_grads(x, y)[0]
        net.params[i] = keep - FD_STEP
        down = net.loss_and_grads(x, y)[0]
        net.params[i] = keep
        grad[i] = (up - down) / (2 * FD_STEP)
    return grad


CASES = list(itertools.product(HIDDEN, ["cross_entropy", "mse"], [False, True]))


@pytest.mark.parametrize("activation,loss,batchnorm", CASES)
def test_gradients_match_central_differences(activation, loss, batchnorm):
    for depth_index, sizes in enumerate(ARCHITECTURES):
        net, x, y = make_case(activation, loss, batchnorm, sizes, seed=depth_index)
        net.loss_and_grads(x, y)
        analytic = net.grads.copy()
        numeric = finite_differences(net, x, y)
        groups = net.grads_by_name(analytic)
        fd_groups = net.grads_by_name(numeric)
        for kind, layers in groups.items():
            for layer, g in enumerate(layers):
                if g is None:
                    continue
                fd = fd_groups[kind][layer]
                if np.abs(fd).max() < 1e-8:
                    # The loss does not depend on this tensor (a bias under batch norm, or a beta
                    # whose shift the next batch norm removes): a true zero has no relative
                    # error, so the analytic gradient must be zero to rounding.
                    assert np.abs(g).max() < 1e-12, f"{kind}{layer + 1}: expected zero gradient"
                    continue
                err = relative_error(g, fd)
                assert err < FD_TOLERANCE, f"{kind}{layer + 1} {sizes}: relative error {err:.2e}"


@pytest.mark.parametrize("activation,loss,batchnorm", CASES)
def test_every_intermediate_matches_torch_and_reference(activation, loss, batchnorm):
    for seed, sizes in enumerate(ARCHITECTURES):
        net, x, y = make_case(activation, loss, batchnorm, sizes, seed=seed, batch=7)
        ours = net.trace(x, y)
        _, y_kernel = net.check_batch(x, y)
        theirs = torch_trace(net, x, y_kernel)
        reference = reference_trace_of(net, x, y)
        assert set(theirs) <= set(ours)
        for name, expected in theirs.items():
            assert_close(ours[name], expected, name=f"{name} vs torch")
            assert_close(ours[name], reference[name], name=f"{name} vs reference")
        yhat = net.forward(x, training=True)
        assert_close(yhat, theirs[f"a{net.n_layers}"], name="forward output")


@pytest.mark.parametrize("output", ["sigmoid", "tanh", "softmax"])
def test_mse_with_saturating_or_softmax_output(output):
    net, x, y = make_case("tanh", "mse", False, [3, 5, 3], output=output, seed=3)
    net.loss_and_grads(x, y)
    analytic = net.grads.copy()
    assert relative_error(analytic, finite_differences(net, x, y)) < FD_TOLERANCE
    _, y_kernel = net.check_batch(x, y)
    theirs = torch_trace(net, x, y_kernel)
    ours = net.trace(x, y)
    for name, expected in theirs.items():
        assert_close(ours[name], expected, name=name)


def test_loss_and_grads_returns_shaped_lists():
    net, x, y = make_case("relu", "cross_entropy", False, [4, 5, 3, 3])
    loss, dW, db = net.loss_and_grads(x, y)
    assert isinstance(loss, float)
    assert [g.shape for g in dW] == [w.shape for w in net.weights]
    assert [g.shape for g in db] == [b.shape for b in net.biases]
    ref = reference_trace_of(net, x, y)
    for layer in range(net.n_layers):
        assert_close(dW[layer], ref[f"dW{layer + 1}"])
        assert_close(db[layer], ref[f"db{layer + 1}"])


def test_loss_and_grads_changes_nothing():
    net, x, y = make_case("tanh", "mse", True, [3, 4, 2])
    before = (net.params.copy(), net.running.copy())
    net.loss_and_grads(x, y)
    assert np.array_equal(net.params, before[0]) and np.array_equal(net.running, before[1])


def test_step_statistics_match_reference_norms():
    net, x, y = make_case("tanh", "cross_entropy", True, [4, 6, 5, 3], batch=9)
    ref = reference_trace_of(net, x, y)
    net.loss_and_grads(x, y)
    stats = net.last_step_stats()
    for layer in range(net.n_layers):
        k = layer + 1
        assert_close(stats["w_grad_norm"][layer], np.linalg.norm(ref[f"dW{k}"]))
        assert_close(stats["b_grad_norm"][layer], np.linalg.norm(ref[f"db{k}"]), atol=1e-12)
        per_sample = np.linalg.norm(ref[f"delta{k}"], axis=1).mean() * len(x)
        assert_close(stats["delta_norm"][layer], per_sample)
