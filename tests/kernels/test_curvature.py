"""Exact Hessian-vector products (kernels.curvature) against torch double backward, the NumPy
reference, central differences of the gradient, and the full Hessian's spectrum."""
import itertools

import numpy as np
import pytest

from kernels import MLP
from kernels.activations import ACTIVATIONS
from kernels.curvature import hvp_reference
from kernels.tolerance import assert_close
from _torch_twin import torch_hessian, torch_hvp
from _fresh_cache import fresh_and_cached

HIDDEN = [name for name, a in ACTIVATIONS.items() if a.hidden]
# (loss, output activation): every output the MLP allows for MSE we test with one smooth,
# one saturating and the softmax output; cross-entropy takes softmax.
HEADS = [("mse", "identity"), ("mse", "tanh"), ("mse", "sigmoid"), ("mse", "softmax"),
         ("cross_entropy", "softmax")]


def make_net(activation, loss="cross_entropy", output=None, batchnorm=False, dtype="float64",
             sizes=(3, 5, 4, 3), seed=1):
    """A tiny net with nonzero biases (and random gamma, beta) so no term of H vanishes."""
    net = MLP(list(sizes), activation=activation, loss=loss, output_activation=output,
              batchnorm=batchnorm, dtype=dtype, seed=seed, bias_scale=0.3)
    rng = np.random.default_rng(seed + 100)
    for g, b in zip(net.gammas, net.betas):
        if g is not None:
            g[...] = rng.uniform(0.5, 1.5, len(g))
            b[...] = rng.normal(0.0, 0.3, len(b))
    return net


def make_batch(net, n_rows=6, seed=0):
    """x ~ N(0, 1) and kernel-form targets (one-hot rows, or non-negative regression targets)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_rows, net.sizes[0]))
    if net.classification:
        return x, np.eye(net.sizes[-1])[rng.integers(0, net.sizes[-1], n_rows)]
    return x, np.abs(rng.normal(size=(n_rows, net.sizes[-1])))


def max_rel(actual, ref):
    """max |actual - ref| / max |ref|."""
    return float(np.abs(np.asarray(actual) - ref).max() / np.abs(ref).max())


@pytest.mark.parametrize("activation,head,batchnorm",
                         list(itertools.product(HIDDEN, HEADS, [False, True])))
def test_hvp_matches_torch_double_backward(activation, head, batchnorm):
    net = make_net(activation, *head, batchnorm=batchnorm)
    x, y = make_batch(net)
    v = np.random.default_rng(2).normal(size=net.n_params)
    ours, ref = net.hvp(x, y, v), torch_hvp(net, x, y, v)
    err = max_rel(ours, ref)
    assert err < 1e-8, f"{activation} {head} bn={batchnorm}: max rel error {err:.2e}"
    err_np = max_rel(hvp_reference(net, x, y, v), ref)
    assert err_np < 1e-8, f"NumPy reference: {err_np:.2e}"


@pytest.mark.parametrize("batchnorm", [False, True])
def test_hvp_is_symmetric_and_linear(batchnorm):
    net = make_net("tanh", "mse", batchnorm=batchnorm)
    x, y = make_batch(net)
    rng = np.random.default_rng(3)
    u, v = rng.normal(size=(2, net.n_params))
    hu, hv = net.hvp(x, y, u), net.hvp(x, y, v)
    err = abs(u @ hv - v @ hu) / (abs(u @ hv) + abs(v @ hu))
    assert err < 1e-12
    assert_close(net.hvp(x, y, 2.0 * u - 3.0 * v), 2.0 * hu - 3.0 * hv, atol=1e-12, rtol=1e-10)


def flat_grad(net, x, y):
    net.loss_and_grads(x, y)
    return net.grads.astype(np.float64).copy()


@pytest.mark.parametrize("activation,batchnorm", [("gelu", False), ("sigmoid", True),
                                                  ("elu", True), ("relu", False)])
def test_hvp_matches_central_differences_of_the_gradient(activation, batchnorm):
    """(g(theta + eps v) - g(theta - eps v)) / (2 eps) = H v + O(eps^2)."""
    net = make_net(activation, "cross_entropy", batchnorm=batchnorm)
    x, y = make_batch(net)
    v = np.random.default_rng(4).normal(size=net.n_params)
    theta, eps = net.params.copy(), 1e-5
    net.params[...] = theta + eps * v
    plus = flat_grad(net, x, y)
    net.params[...] = theta - eps * v
    minus = flat_grad(net, x, y)
    net.params[...] = theta
    err = max_rel(net.hvp(x, y, v), (plus - minus) / (2 * eps))
    assert err < 1e-7


@pytest.mark.parametrize("activation,head,batchnorm", [("tanh", ("cross_entropy", None), False),
                                                       ("gelu_tanh", ("mse", "identity"), True),
                                                       ("sigmoid", ("mse", "softmax"), False),
                                                       ("elu", ("cross_entropy", None), True)])
def test_float32_hvp_matches_float64(activation, head, batchnorm):
    """float32 within the float32 tolerance rule, on H v scaled to unit max norm."""
    net64 = make_net(activation, *head, batchnorm=batchnorm, sizes=(6, 16, 12, 4))
    net32 = make_net(activation, *head, batchnorm=batchnorm, sizes=(6, 16, 12, 4),
                     dtype="float32")
    net32.params[...] = net64.params
    x, y = make_batch(net64, n_rows=16)
    v = np.random.default_rng(5).normal(size=net64.n_params)
    ref = net64.hvp(x, y, v)
    got = net32.hvp(x, y, v)
    assert got.dtype == np.float32
    scale = np.abs(ref).max()
    assert_close(got / scale, ref / scale, np.float32, "Hv float32")


def full_hessian(net, x, y):
    eye = np.eye(net.n_params)
    return np.stack([net.hvp(x, y, e) for e in eye], axis=1)


@pytest.mark.parametrize("activation,loss,batchnorm", [("tanh", "mse", False),
                                                       ("relu", "cross_entropy", False),
                                                       ("gelu", "cross_entropy", True)])
def test_full_hessian_matches_torch(activation, loss, batchnorm):
    net = make_net(activation, loss, batchnorm=batchnorm)
    x, y = make_batch(net)
    ours, ref = full_hessian(net, x, y), torch_hessian(net, x, y)
    err = max_rel(ours, ref)
    assert err < 1e-8
    assert max_rel(ours, ours.T) < 1e-12


@pytest.mark.parametrize("activation,loss,batchnorm", [("tanh", "mse", False),
                                                       ("elu", "cross_entropy", False),
                                                       ("sigmoid", "mse", True)])
def test_top_eigenvalues_match_eigvalsh(activation, loss, batchnorm):
    net = make_net(activation, loss, batchnorm=batchnorm)
    x, y = make_batch(net)
    exact = np.linalg.eigvalsh(torch_hessian(net, x, y))[::-1]
    top, info = net.hessian_eigenvalues(x, y, k=3, return_info=True)
    assert info.converged and info.iterations <= net.n_params
    err = float(np.abs(top - exact[:3]).max() / abs(exact[0]))
    assert err < 1e-6
    sharp = net.sharpness(x, y)
    assert abs(sharp - exact[0]) <= 1e-6 * abs(exact[0])
    # residual of the Ritz pairs: ||H u - theta u|| as reported
    for i in range(3):
        u = info.vectors[:, i]
        assert np.linalg.norm(net.hvp(x, y, u) - top[i] * u) <= 1e-6 * abs(exact[0])


def test_curvature_estimates_are_seeded():
    net = make_net("gelu", "cross_entropy", sizes=(4, 8, 3))
    x, y = make_batch(net, n_rows=10)
    assert net.sharpness(x, y, seed=3) == net.sharpness(x, y, seed=3)
    assert net.hessian_trace(x, y, 20, seed=5) == net.hessian_trace(x, y, 20, seed=5)
    assert net.hessian_trace(x, y, 20, seed=5) != net.hessian_trace(x, y, 20, seed=6)


def test_hessian_trace_estimate_within_its_error_of_the_exact_trace():
    net = make_net("tanh", "cross_entropy", batchnorm=True)
    x, y = make_batch(net)
    exact = float(np.trace(torch_hessian(net, x, y)))
    estimate, error = net.hessian_trace(x, y, samples=400, seed=0)
    assert error > 0
    assert abs(estimate - exact) < 4 * error


def test_sharpness_iteration_cap_reports_unconverged():
    net = make_net("tanh", "mse", sizes=(5, 12, 6))
    x, y = make_batch(net, n_rows=20)
    values, info = net.hessian_eigenvalues(x, y, k=2, tol=1e-14, max_iter=3, return_info=True)
    assert info.iterations == 3 and not info.converged and len(values) == 2


def test_bad_arguments_raise_one_line_value_errors():
    net = make_net("relu", "cross_entropy")
    x, y = make_batch(net)
    for bad, match in [(np.zeros(net.n_params + 1), "v: expected a real vector"),
                       (np.full(net.n_params, np.nan), "v: contains NaN"),
                       (np.array(["a"] * net.n_params), "v: expected a real vector")]:
        with pytest.raises(ValueError, match=match):
            net.hvp(x, y, bad)
    with pytest.raises(ValueError, match="k: expected at most"):
        net.hessian_eigenvalues(x, y, k=net.n_params + 1)
    with pytest.raises(ValueError, match="samples: expected at least 2"):
        net.hessian_trace(x, y, samples=1)
    with pytest.raises(ValueError, match="x: expected shape"):
        net.hvp(x[:, :2], y, np.zeros(net.n_params))


def test_copies_get_their_own_curvature_buffers():
    net = make_net("tanh", "mse")
    x, y = make_batch(net)
    v = np.random.default_rng(8).normal(size=net.n_params)
    before = net.hvp(x, y, v)
    other = net.copy()
    other.params[...] *= 2.0
    assert not np.array_equal(other.hvp(x, y, v), before)
    np.testing.assert_array_equal(net.hvp(x, y, v), before)


def test_cuda_nets_say_curvature_is_not_there_yet():
    from kernels.cuda.mlp import CudaMLP
    for name in ("hvp", "sharpness", "hessian_eigenvalues", "hessian_trace",
                 "per_example_grad_norms", "gradient_noise"):
        with pytest.raises(NotImplementedError, match="not on cuda yet"):
            getattr(CudaMLP, name)(object.__new__(CudaMLP), None, None)


@pytest.mark.parametrize("output", [n for n, a in ACTIVATIONS.items() if n != "softmax"])
def test_hvp_for_every_mse_output_activation(output):
    net = make_net("tanh", "mse", output, sizes=(3, 4, 3))
    x, y = make_batch(net)
    v = np.random.default_rng(9).normal(size=net.n_params)
    err = max_rel(net.hvp(x, y, v), torch_hvp(net, x, y, v))
    assert err < 1e-8


@pytest.mark.slow
def test_fresh_compile_and_cached_kernels_give_the_same_curvature_bits(tmp_path):
    """A process that compiles the curvature kernels (empty cache) and one that loads them give
    the same bits: Hv, sharpness, trace and per-example norms, float32 and float64."""
    code = ("import hashlib, numpy as np\n"
            "from kernels import MLP\n"
            "digest = hashlib.sha256()\n"
            "rng = np.random.default_rng(0)\n"
            "for dtype in ('float32', 'float64'):\n"
            "    for act, bn, loss in (('sigmoid', False, 'mse'), ('gelu', True, 'mse'),\n"
            "                          ('tanh', False, 'cross_entropy')):\n"
            "        net = MLP([13, 37, 21, 3], activation=act, batchnorm=bn, loss=loss,\n"
            "                  dtype=dtype, seed=1, bias_scale=0.2)\n"
            "        x = rng.normal(size=(32, 13))\n"
            "        y = rng.integers(0, 3, 32) if loss == 'cross_entropy' else \\\n"
            "            rng.normal(size=(32, 3))\n"
            "        digest.update(net.hvp(x, y, rng.normal(size=net.n_params)).tobytes())\n"
            "        digest.update(np.float64(net.sharpness(x, y)).tobytes())\n"
            "        digest.update(np.array(net.hessian_trace(x, y, 5)).tobytes())\n"
            "        if not bn:\n"
            "            digest.update(net.per_example_grad_norms(x, y, True).tobytes())\n"
            "print(digest.hexdigest())\n")
    fresh, cached = fresh_and_cached(code, tmp_path / "cache", OPENBLAS_NUM_THREADS="1")
    assert any((tmp_path / "cache").rglob("*.nbi"))
    assert cached == fresh
