"""kernels/batchnorm.py: the training and evaluation forward kernels, the running-average update
and the backward kernel against the NumPy references beside them, against
torch.nn.functional.batch_norm / torch.nn.BatchNorm1d (momentum 0.1, unbiased running variance,
eps 1e-5) and autograd, in float64 and float32; the backward against float64 central
differences; a batch of two and a constant feature."""
import numpy as np
import pytest
import torch

from kernels.batchnorm import BN_EPS, BN_MOMENTUM, batchnorm_backward, \
    batchnorm_backward_reference, batchnorm_forward_eval, batchnorm_forward_reference, \
    batchnorm_forward_train, batchnorm_update_running
from kernels.tolerance import assert_close, relative_error

torch.set_num_threads(1)

DTYPES = [np.float64, np.float32]
SHAPES = [(2, 3), (7, 5), (64, 9)]
# Central differences of a smooth O(1) function with step h: truncation ~h^2 |f'''|/6 ~ 1e-12,
# rounding ~eps_64 |L| / h ~ 1e-10; 1e-6 leaves a wide margin yet fails for any wrong term.
FD_STEP = 1e-6
FD_TOLERANCE = 1e-6


def make_case(shape, dtype, seed):
    """z with per-feature offsets and scales, gamma, beta and an upstream gradient dy."""
    rng = np.random.default_rng(seed)
    n_batch, n = shape
    z = (rng.normal(size=shape) * rng.uniform(0.5, 3.0, n) + rng.normal(0, 2.0, n)).astype(dtype)
    gamma = rng.uniform(0.5, 1.5, n).astype(dtype)
    beta = rng.normal(0, 0.5, n).astype(dtype)
    dy = rng.normal(size=shape).astype(dtype)
    return z, gamma, beta, dy


def forward_train(z, gamma, beta, eps=BN_EPS):
    """The kernel's (y, xhat, mean, var), every output prefilled with NaN."""
    y, xhat = np.full_like(z, np.nan), np.full_like(z, np.nan)
    mean, var = np.full_like(gamma, np.nan), np.full_like(gamma, np.nan)
    batchnorm_forward_train(y, xhat, mean, var, z, gamma, beta, eps)
    return y, xhat, mean, var


def backward(dy, xhat, gamma, var, eps=BN_EPS):
    dz, dgamma, dbeta = np.full_like(dy, np.nan), np.full_like(gamma, np.nan), \
        np.full_like(gamma, np.nan)
    batchnorm_backward(dz, dgamma, dbeta, dy, xhat, gamma, var, eps)
    return dz, dgamma, dbeta


def t64(v, grad=False):
    return torch.tensor(np.asarray(v, np.float64), requires_grad=grad)


def torch_train(z, gamma, beta, dy):
    """torch's training-mode batch norm in float64: y, and the autograd dz, dgamma, dbeta."""
    tz, tg, tb = t64(z, True), t64(gamma, True), t64(beta, True)
    out = torch.nn.functional.batch_norm(tz, None, None, tg, tb, training=True, eps=BN_EPS)
    out.backward(t64(dy))
    return out.detach().numpy(), tz.grad.numpy(), tg.grad.numpy(), tb.grad.numpy()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_train_matches_reference_and_torch(shape, dtype):
    z, gamma, beta, _ = make_case(shape, dtype, seed=shape[0])
    y, xhat, mean, var = forward_train(z, gamma, beta)
    assert y.dtype == xhat.dtype == mean.dtype == var.dtype == dtype
    ref_y, ref_xhat, ref_mean, ref_var = batchnorm_forward_reference(z, gamma, beta)
    for name, got, ref in (("y", y, ref_y), ("xhat", xhat, ref_xhat), ("mean", mean, ref_mean),
                           ("var", var, ref_var)):
        assert_close(got, ref, dtype, name)
    z64 = t64(z)
    assert_close(mean, z64.mean(0).numpy(), dtype, "mean vs torch")
    assert_close(var, z64.var(0, correction=0).numpy(), dtype, "var vs torch")
    assert_close(y, torch_train(z, gamma, beta, np.zeros_like(z))[0], dtype, "y vs torch")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_backward_matches_reference_and_torch_autograd(shape, dtype):
    z, gamma, beta, dy = make_case(shape, dtype, seed=10 + shape[0])
    _, xhat, _, var = forward_train(z, gamma, beta)
    dz, dgamma, dbeta = backward(dy, xhat, gamma, var)
    assert dz.dtype == dgamma.dtype == dbeta.dtype == dtype
    # the reference from float64 statistics of the same inputs, not the kernel's own
    _, ref_xhat, _, ref_var = batchnorm_forward_reference(z, gamma, beta)
    refs = batchnorm_backward_reference(dy.astype(np.float64), ref_xhat, gamma.astype(np.float64),
                                        ref_var)
    _, *autograd = torch_train(z, gamma, beta, dy)
    for name, got, ref, tgrad in zip(("dz", "dgamma", "dbeta"), (dz, dgamma, dbeta), refs,
                                     autograd):
        assert_close(got, ref, dtype, name)
        assert_close(got, tgrad, dtype, f"{name} vs torch")


def central_differences(z, gamma, beta, dy):
    """d/d(z, gamma, beta) of L = sum(dy * y(z, gamma, beta)) through the forward kernel."""
    def loss(zz, gg, bb):
        return float(np.sum(dy * forward_train(zz, gg, bb)[0]))

    grads = []
    for which, arr in enumerate((z, gamma, beta)):
        g = np.zeros_like(arr)
        for idx in np.ndindex(arr.shape):
            args = [z.copy(), gamma.copy(), beta.copy()]
            args[which][idx] = arr[idx] + FD_STEP
            up = loss(*args)
            args[which][idx] = arr[idx] - FD_STEP
            g[idx] = (up - loss(*args)) / (2 * FD_STEP)
        grads.append(g)
    return grads


@pytest.mark.parametrize("shape", SHAPES[:2])
def test_backward_matches_central_differences(shape):
    z, gamma, beta, dy = make_case(shape, np.float64, seed=20 + shape[0])
    _, xhat, _, var = forward_train(z, gamma, beta)
    for name, got, fd in zip(("dz", "dgamma", "dbeta"), backward(dy, xhat, gamma, var),
                             central_differences(z, gamma, beta, dy)):
        err = relative_error(got, fd)
        assert err < FD_TOLERANCE, f"{name} {shape}: relative error {err:.2e}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_batch", [2, 7])
def test_running_averages_and_eval_match_torch_batchnorm1d(n_batch, dtype):
    """Three training batches through BatchNorm1d (float64 copy of the same inputs), then eval:
    running mean, unbiased running variance, and the evaluation forward."""
    n = 4
    rng = np.random.default_rng(n_batch)
    gamma = rng.uniform(0.5, 1.5, n).astype(dtype)
    beta = rng.normal(0, 0.5, n).astype(dtype)
    module = torch.nn.BatchNorm1d(n, eps=BN_EPS, momentum=BN_MOMENTUM).double()
    with torch.no_grad():
        module.weight.copy_(t64(gamma))
        module.bias.copy_(t64(beta))
    running_mean, running_var = np.zeros(n, dtype), np.ones(n, dtype)
    expected_mean, expected_var = np.zeros(n), np.ones(n)
    module.train()
    for step in range(3):
        z = (rng.normal(size=(n_batch, n)) * 2.0 + 1.0).astype(dtype)
        y, _, mean, var = forward_train(z, gamma, beta)
        batchnorm_update_running(running_mean, running_var, mean, var, n_batch, BN_MOMENTUM)
        assert running_mean.dtype == running_var.dtype == dtype
        with torch.no_grad():
            assert_close(y, module(t64(z)).numpy(), dtype, f"train y, step {step}")
        # the formula of the module docstring, in float64
        _, _, ref_mean, ref_var = batchnorm_forward_reference(z, gamma, beta)
        expected_mean = (1 - BN_MOMENTUM) * expected_mean + BN_MOMENTUM * ref_mean
        expected_var = (1 - BN_MOMENTUM) * expected_var + \
            BN_MOMENTUM * ref_var * n_batch / (n_batch - 1)
        assert_close(running_mean, expected_mean, dtype, f"running mean, step {step}")
        assert_close(running_var, expected_var, dtype, f"running var, step {step}")
        assert_close(running_mean, module.running_mean.numpy(), dtype, "running mean vs torch")
        assert_close(running_var, module.running_var.numpy(), dtype, "running var vs torch")
    module.eval()
    z = (rng.normal(size=(5, n)) * 2.0 + 1.0).astype(dtype)
    y = np.full_like(z, np.nan)
    batchnorm_forward_eval(y, z, gamma, beta, running_mean, running_var, BN_EPS)
    assert y.dtype == dtype
    rm, rv = running_mean.astype(np.float64), running_var.astype(np.float64)
    assert_close(y, gamma * (z - rm) / np.sqrt(rv + BN_EPS) + beta, dtype, "eval y")
    with torch.no_grad():
        assert_close(y, module(t64(z)).numpy(), dtype, "eval y vs torch")
        functional = torch.nn.functional.batch_norm(t64(z), t64(rm), t64(rv), t64(gamma),
                                                    t64(beta), training=False, eps=BN_EPS)
    assert_close(y, functional.numpy(), dtype, "eval y vs functional batch_norm")


@pytest.mark.parametrize("dtype", DTYPES)
def test_update_running_matches_functional_batch_norm(dtype):
    """F.batch_norm(training=True) updates running stats in place with momentum 0.1 and the
    unbiased variance; our update from the kernel's batch statistics must agree."""
    z, gamma, beta, _ = make_case((6, 5), dtype, seed=3)
    rng = np.random.default_rng(4)
    running_mean = rng.normal(size=5).astype(dtype)
    running_var = rng.uniform(0.5, 2.0, 5).astype(dtype)
    trm, trv = t64(running_mean), t64(running_var)
    torch.nn.functional.batch_norm(t64(z), trm, trv, t64(gamma), t64(beta), training=True,
                                   momentum=BN_MOMENTUM, eps=BN_EPS)
    _, _, mean, var = forward_train(z, gamma, beta)
    batchnorm_update_running(running_mean, running_var, mean, var, 6, BN_MOMENTUM)
    assert_close(running_mean, trm.numpy(), dtype, "running mean")
    assert_close(running_var, trv.numpy(), dtype, "running var")


def test_batch_of_two_normalizes_to_plus_minus_one():
    """B = 2: xhat = +-d/sqrt(d^2 + eps) with d half the gap; the unbiased variance is twice
    the biased one (d^2 -> 2 d^2)."""
    z = np.array([[1.0, -3.0], [4.0, 5.0]])
    gamma, beta = np.array([1.0, 2.0]), np.array([0.0, 0.5])
    y, xhat, mean, var = forward_train(z, gamma, beta)
    d = np.abs(z[1] - z[0]) / 2
    assert_close(mean, z.mean(0), np.float64, "mean")
    assert_close(var, d * d, np.float64, "var")
    sign = np.sign(z - mean)
    assert_close(xhat, sign * d / np.sqrt(d * d + BN_EPS), np.float64, "xhat")
    rm, rv = np.zeros(2), np.ones(2)
    batchnorm_update_running(rm, rv, mean, var, 2, BN_MOMENTUM)
    assert_close(rv, (1 - BN_MOMENTUM) + BN_MOMENTUM * 2 * d * d, np.float64, "running var")
    dy = np.array([[0.3, -1.0], [0.7, 2.0]])
    dz, dgamma, dbeta = backward(dy, xhat, gamma, var)
    _, tdz, tdgamma, tdbeta = torch_train(z, gamma, beta, dy)
    for name, got, ref in (("dz", dz, tdz), ("dgamma", dgamma, tdgamma), ("dbeta", dbeta, tdbeta)):
        assert_close(got, ref, np.float64, f"{name} vs torch")
    # the two rows' dz are opposite: they sum to zero per feature (the mean is removed)
    assert_close(dz.sum(0), np.zeros(2), np.float64, "sum of dz")


@pytest.mark.parametrize("dtype", DTYPES)
def test_constant_feature_gives_beta_and_finite_gradients(dtype):
    """A feature with zero batch variance: xhat = 0, y = beta, var = 0; the gradient is
    gamma/(B sqrt(eps)) (B dy - sum dy), finite, as in torch."""
    z, gamma, beta, dy = make_case((5, 3), dtype, seed=8)
    z[:, 1] = dtype(0.75)  # exactly representable: the mean is exact in both dtypes
    y, xhat, mean, var = forward_train(z, gamma, beta)
    assert var[1] == 0.0 and mean[1] == dtype(0.75)
    assert np.all(xhat[:, 1] == 0.0)
    assert np.all(y[:, 1] == beta[1])
    dz, dgamma, dbeta = backward(dy, xhat, gamma, var)
    assert np.all(np.isfinite(dz))
    assert dgamma[1] == 0.0
    d64 = dy[:, 1].astype(np.float64)
    assert_close(dz[:, 1], float(gamma[1]) / (5 * np.sqrt(BN_EPS)) * (5 * d64 - d64.sum()), dtype,
                 "dz of the constant feature")
    _, tdz, tdgamma, tdbeta = torch_train(z, gamma, beta, dy)
    for name, got, ref in (("dz", dz, tdz), ("dgamma", dgamma, tdgamma), ("dbeta", dbeta, tdbeta)):
        assert_close(got, ref, dtype, f"{name} vs torch")
