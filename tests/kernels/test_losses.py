"""kernels/losses.py: the MSE and cross-entropy forward/backward kernels against the NumPy
references beside them and torch (mse_loss(reduction='sum') / B; cross_entropy on logits with
class labels and with probability targets) plus autograd, in float64 and float32; float64
central differences; logits of 1e4 without overflow."""
import numpy as np
import pytest
import torch

from kernels.losses import CROSS_ENTROPY, LOSSES, MSE, cross_entropy_backward, \
    cross_entropy_forward, cross_entropy_reference, mse_backward, mse_forward, mse_reference
from kernels.tolerance import assert_close, relative_error

torch.set_num_threads(1)

DTYPES = [np.float64, np.float32]
SHAPES = [(1, 1), (1, 4), (8, 3), (50, 10)]
# Central differences with step h on O(1) losses: truncation ~h^2 |f'''|/6 ~ 1e-12, rounding
# ~eps_64 |L| / h ~ 1e-10; 1e-6 fails for any wrong factor or term.
FD_STEP = 1e-6
FD_TOLERANCE = 1e-6


def t64(v, grad=False):
    return torch.tensor(np.asarray(v, np.float64), requires_grad=grad)


def regression_case(shape, dtype, seed):
    rng = np.random.default_rng(seed)
    return rng.normal(size=shape).astype(dtype), rng.normal(size=shape).astype(dtype)


def classification_case(shape, dtype, seed, soft=False):
    """Logits, target rows (one-hot, or random probabilities if soft) and the labels."""
    rng = np.random.default_rng(seed)
    n_batch, k = shape
    logits = (rng.normal(size=shape) * 3.0).astype(dtype)
    labels = rng.integers(0, k, n_batch)
    if soft:
        y = rng.dirichlet(np.ones(k), n_batch)
    else:
        y = np.eye(k)[labels]
    return logits, y.astype(dtype), labels


def cross_entropy(logits, y):
    probs = np.full_like(logits, np.nan)
    loss = cross_entropy_forward(probs, logits, y)
    return loss, probs


def test_registry_codes():
    assert LOSSES["mse"].code == MSE and LOSSES["cross_entropy"].code == CROSS_ENTROPY
    assert MSE != CROSS_ENTROPY


# ---------------------------------------------------------------- MSE
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_mse_matches_reference_and_torch(shape, dtype):
    yhat, y = regression_case(shape, dtype, seed=shape[0] * 10 + shape[1])
    loss = mse_forward(yhat, y)
    ref_loss, ref_grad = mse_reference(yhat, y)
    # the sum is float64, but numba's float() keeps a float32 a float32: each difference and
    # square rounds in the input dtype, so float32 inputs give float32 accuracy
    assert_close(loss, ref_loss, dtype, "mse loss")
    tyhat = t64(yhat, True)
    tloss = torch.nn.functional.mse_loss(tyhat, t64(y), reduction="sum") / shape[0]
    tloss.backward()
    assert_close(loss, tloss.item(), dtype, "mse loss vs torch")
    # torch's default MSELoss also divides by the number of outputs
    mean_loss = torch.nn.functional.mse_loss(t64(yhat), t64(y)).item()
    assert_close(loss, mean_loss * shape[1], dtype, "mse loss vs torch mean x n_out")
    grad = np.full_like(yhat, np.nan)
    mse_backward(grad, yhat, y, 2.0 / len(yhat))
    assert grad.dtype == dtype
    assert_close(grad, ref_grad, dtype, "mse grad")
    assert_close(grad, tyhat.grad.numpy(), dtype, "mse grad vs torch")


def test_mse_central_differences():
    yhat, y = regression_case((6, 4), np.float64, seed=1)
    grad = np.empty_like(yhat)
    mse_backward(grad, yhat, y, 2.0 / len(yhat))
    fd = np.zeros_like(yhat)
    for idx in np.ndindex(yhat.shape):
        up, down = yhat.copy(), yhat.copy()
        up[idx] += FD_STEP
        down[idx] -= FD_STEP
        fd[idx] = (mse_forward(up, y) - mse_forward(down, y)) / (2 * FD_STEP)
    err = relative_error(grad, fd)
    assert err < FD_TOLERANCE, f"mse grad: relative error {err:.2e}"


def test_mse_zero_at_target():
    yhat, _ = regression_case((4, 3), np.float64, seed=2)
    assert mse_forward(yhat, yhat.copy()) == 0.0
    grad = np.full_like(yhat, np.nan)
    mse_backward(grad, yhat, yhat.copy(), 2.0 / len(yhat))
    assert np.all(grad == 0.0)


# ---------------------------------------------------------------- cross-entropy
@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES[1:])
def test_cross_entropy_matches_reference_and_torch(shape, dtype, soft):
    logits, y, labels = classification_case(shape, dtype, seed=shape[0] + shape[1], soft=soft)
    loss, probs = cross_entropy(logits, y)
    assert probs.dtype == dtype
    ref_loss, ref_probs, ref_grad = cross_entropy_reference(logits, y)
    assert_close(loss, ref_loss, dtype, "ce loss")
    assert_close(probs, ref_probs, dtype, "softmax")
    assert_close(probs.sum(axis=1), np.ones(shape[0]), dtype, "softmax row sums")
    grad = np.full_like(logits, np.nan)
    cross_entropy_backward(grad, probs, y, 1.0 / len(probs))
    assert grad.dtype == dtype
    assert_close(grad, ref_grad, dtype, "ce grad")
    tz = t64(logits, True)
    target = t64(y) if soft else torch.tensor(labels)  # torch takes labels or probabilities
    tloss = torch.nn.functional.cross_entropy(tz, target)
    tloss.backward()
    assert_close(loss, tloss.item(), dtype, "ce loss vs torch")
    assert_close(probs, torch.softmax(t64(logits), dim=1).numpy(), dtype, "softmax vs torch")
    assert_close(grad, tz.grad.numpy(), dtype, "ce grad vs torch")


@pytest.mark.parametrize("soft", [False, True])
def test_cross_entropy_central_differences(soft):
    logits, y, _ = classification_case((5, 4), np.float64, seed=7, soft=soft)
    _, probs = cross_entropy(logits, y)
    grad = np.empty_like(logits)
    cross_entropy_backward(grad, probs, y, 1.0 / len(probs))
    fd = np.zeros_like(logits)
    for idx in np.ndindex(logits.shape):
        up, down = logits.copy(), logits.copy()
        up[idx] += FD_STEP
        down[idx] -= FD_STEP
        fd[idx] = (cross_entropy(up, y)[0] - cross_entropy(down, y)[0]) / (2 * FD_STEP)
    err = relative_error(grad, fd)
    assert err < FD_TOLERANCE, f"ce grad: relative error {err:.2e}"


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_is_stable_for_huge_logits(dtype):
    """Logits of +-1e4 (exp overflows beyond ~89 in float32, ~710 in float64): the loss, the
    softmax and the gradient stay finite and equal the log-sum-exp values and torch."""
    logits = np.array([[1e4, -1e4, 0.0, 1e4 - 1.0],     # two near the top
                       [-1e4, -1e4, -1e4, -1e4],        # all equal: uniform
                       [1e4, 1e4, 1e4, -1e4],
                       [-1e4, 2.0, 1e4, 3.0]]).astype(dtype)
    labels = np.array([1, 2, 3, 2])  # a -1e4 target against a 1e4 top, ...
    y = np.eye(4, dtype=dtype)[labels]
    loss, probs = cross_entropy(logits, y)
    grad = np.full_like(logits, np.nan)
    cross_entropy_backward(grad, probs, y, 1.0 / len(probs))
    assert np.isfinite(loss) and np.all(np.isfinite(probs)) and np.all(np.isfinite(grad))
    # closed forms per row: lse - z_target
    log1pe = np.log1p(np.exp(-1.0))
    rows = [1e4 + log1pe + 1e4, -1e4 + np.log(4.0) + 1e4, 1e4 + np.log(3.0) + 1e4, 0.0]
    assert_close(loss, np.mean(rows), dtype, "huge-logit loss")
    assert_close(probs[1], np.full(4, 0.25), dtype, "uniform row")
    assert_close(probs[0], [1 / (1 + np.exp(-1.0)), 0.0, 0.0, np.exp(-1.0) / (1 + np.exp(-1.0))],
                 dtype, "top-two row")
    ref_loss, ref_probs, ref_grad = cross_entropy_reference(logits, y)
    assert_close(loss, ref_loss, dtype, "loss vs reference")
    assert_close(probs, ref_probs, dtype, "softmax vs reference")
    assert_close(grad, ref_grad, dtype, "grad vs reference")
    tz = t64(logits, True)
    tloss = torch.nn.functional.cross_entropy(tz, torch.tensor(labels))
    tloss.backward()
    assert_close(loss, tloss.item(), dtype, "loss vs torch")
    assert_close(grad, tz.grad.numpy(), dtype, "grad vs torch")


def test_cross_entropy_shift_invariance():
    """lse(z + c) - y.(z + c) = lse(z) - y.z for rows y summing to 1: shifting every logit of a
    row by 1e3 leaves loss and softmax unchanged (to the rounding of the shifted logits)."""
    logits, y, _ = classification_case((6, 5), np.float64, seed=11, soft=True)
    loss, probs = cross_entropy(logits, y)
    shifted_loss, shifted_probs = cross_entropy(logits + 1e3, y)
    # |z| ~ 1e3 carries absolute rounding 1e3 * eps_64 ~ 1e-13 into every term: within the
    # float64 rule (atol 1e-12)
    assert_close(shifted_loss, loss, np.float64, "shifted loss")
    assert_close(shifted_probs, probs, np.float64, "shifted softmax")
