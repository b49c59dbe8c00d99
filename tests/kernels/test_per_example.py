"""Per-example gradient norms and noise statistics (kernels.per_example) against torch.func
per-sample gradients (vmap of grad over functional_call of a twin built from our weights)."""
import numpy as np
import pytest

from kernels import MLP
from kernels.activations import ACTIVATIONS
from kernels.per_example import noise_statistics, per_example_sq_reference
from kernels.reference import reference_trace_of
from kernels.tolerance import assert_close
from _torch_twin import torch_per_example_grads

HIDDEN = [name for name, a in ACTIVATIONS.items() if a.hidden]


def make(activation="tanh", loss="cross_entropy", output=None, dtype="float64",
         sizes=(4, 7, 5, 3), n_rows=9, seed=0):
    net = MLP(list(sizes), activation=activation, loss=loss, output_activation=output,
              dtype=dtype, seed=seed, bias_scale=0.3)
    rng = np.random.default_rng(seed + 1)
    x = rng.normal(size=(n_rows, sizes[0]))
    if net.classification:
        return net, x, np.eye(sizes[-1])[rng.integers(0, sizes[-1], n_rows)]
    return net, x, rng.normal(size=(n_rows, sizes[-1]))


def layer_slices(net):
    return [slice(net.spec.seg_start[l], net.spec.seg_start[l + 1]) for l in range(net.n_layers)]


def max_rel(actual, ref):
    return float(np.abs(np.asarray(actual) - ref).max() / np.abs(ref).max())


@pytest.mark.parametrize("activation", HIDDEN)
@pytest.mark.parametrize("head", [("cross_entropy", None), ("mse", "identity"),
                                  ("mse", "softmax")])
def test_per_example_norms_match_torch_func(activation, head):
    net, x, y = make(activation, *head)
    grads = torch_per_example_grads(net, x, y)
    np.testing.assert_allclose(grads.mean(axis=0), (net.loss_and_grads(x, y), net.grads)[1],
                               rtol=1e-10, atol=1e-13)  # the batch gradient is mean_i g_i
    ref_layers = np.stack([np.linalg.norm(grads[:, s], axis=1) for s in layer_slices(net)], 1)
    per_layer = net.per_example_grad_norms(x, y, per_layer=True)
    total = net.per_example_grad_norms(x, y)
    err = max(max_rel(per_layer, ref_layers), max_rel(total, np.linalg.norm(grads, axis=1)))
    assert per_layer.shape == (len(x), net.n_layers) and total.shape == (len(x),)
    assert err < 1e-10


def test_reference_matches_the_kernel():
    net, x, y = make("gelu", "mse")
    ref = np.sqrt(per_example_sq_reference(reference_trace_of(net, x, y), x))
    assert_close(net.per_example_grad_norms(x, y, per_layer=True), ref)


def test_noise_statistics_match_their_definitions_on_torch_gradients():
    net, x, y = make("elu", "cross_entropy", n_rows=12)
    grads = torch_per_example_grads(net, x, y)
    stats = net.gradient_noise(x, y)
    big_g = grads.mean(axis=0)
    n = len(x)
    trace = ((grads - big_g) ** 2).sum() / (n - 1)
    assert stats["batch"] == n
    assert np.isclose(stats["trace_sigma"], trace, rtol=1e-10)
    assert np.isclose(stats["grad_sq"], big_g @ big_g, rtol=1e-10)
    assert np.isclose(stats["b_simple"], trace / (big_g @ big_g), rtol=1e-10)
    assert np.isclose(stats["grad_sq_unbiased"], big_g @ big_g - trace / n, rtol=1e-9)
    for l, s in enumerate(layer_slices(net)):
        trace_l = ((grads[:, s] - big_g[s]) ** 2).sum() / (n - 1)
        assert np.isclose(stats["trace_sigma_layers"][l], trace_l, rtol=1e-10)
        assert np.isclose(stats["snr_layers"][l], (big_g[s] @ big_g[s]) / (trace_l / n),
                          rtol=1e-10)


def test_identical_examples_have_no_noise():
    net, x, y = make("tanh", "mse", n_rows=2)
    x[1], y[1] = x[0], y[0]
    stats = net.gradient_noise(x, y)
    assert abs(stats["trace_sigma"]) <= 1e-12 * stats["grad_sq"]
    norms = net.per_example_grad_norms(x, y)
    assert norms[0] == norms[1]


def test_float32_norms_match_float64():
    net64, x, y = make("sigmoid", "cross_entropy", sizes=(8, 32, 16, 4), n_rows=32)
    net32 = MLP([8, 32, 16, 4], activation="sigmoid", dtype="float32", bias_scale=0.3)
    net32.params[...] = net64.params
    ref = net64.per_example_grad_norms(x, y, per_layer=True)
    got = net32.per_example_grad_norms(x, y, per_layer=True)
    assert_close(got / ref.max(), ref / ref.max(), np.float32, "per-example norms float32")


def test_batch_norm_and_tiny_batches_are_refused():
    net = MLP([3, 4, 2], batchnorm=True)
    x, y = np.ones((4, 3)), np.array([0, 1, 0, 1])
    with pytest.raises(ValueError, match="not defined with batch norm"):
        net.per_example_grad_norms(x, y)
    with pytest.raises(ValueError, match="not defined with batch norm"):
        net.gradient_noise(x, y)
    with pytest.raises(ValueError, match="at least 2 examples"):
        MLP([3, 4, 2]).gradient_noise(x[:1], y[:1])
    with pytest.raises(ValueError, match="at least 2 examples"):
        noise_statistics(np.ones((1, 2)), np.ones(2))
