"""kernels/activations.py: every elementwise activation's forward and backward kernel against the
float64 NumPy references, in float64 and float32, at the kinks PyTorch fixes, and softmax rows."""
import numpy as np
import pytest
import torch

from kernels.activations import ACTIVATIONS, activation_backward, activation_forward, \
    derivative_reference, forward_reference, softmax_rows_backward, softmax_rows_forward
from kernels.tolerance import assert_close

HIDDEN = sorted(name for name, a in ACTIVATIONS.items() if a.hidden)
DTYPES = [np.float64, np.float32]


def inputs(dtype):
    """Both tails, the kink at 0 and a dense middle."""
    rng = np.random.default_rng(3)
    h = np.concatenate([[-30.0, -9.0, -4.0, -1e-3, 0.0, 1e-3, 4.0, 9.0, 30.0],
                        rng.normal(scale=3.0, size=500)])
    return h.astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", HIDDEN)
def test_forward_matches_reference(name, dtype):
    h = inputs(dtype)
    param = 0.2 if name in ("leaky_relu", "elu") else ACTIVATIONS[name].default_param
    out = np.full_like(h, np.nan)
    activation_forward(out, h, ACTIVATIONS[name].code, param)
    assert out.dtype == dtype
    assert_close(out, forward_reference(name, h, param), dtype, f"{name} forward")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", HIDDEN)
def test_backward_matches_reference(name, dtype):
    h = inputs(dtype)
    code, param = ACTIVATIONS[name].code, (0.2 if name in ("leaky_relu", "elu")
                                           else ACTIVATIONS[name].default_param)
    a = np.empty_like(h)
    activation_forward(a, h, code, param)
    da = np.linspace(-2.0, 2.0, h.size).astype(dtype)
    dh = np.full_like(h, np.nan)
    activation_backward(dh, da, h, a, code, param)
    assert dh.dtype == dtype
    expected = da.astype(np.float64) * derivative_reference(name, h, param)
    assert_close(dh, expected, dtype, f"{name} backward")


@pytest.mark.parametrize("name, at_zero", [("relu", 0.0), ("leaky_relu", 0.01), ("elu", 1.0)])
def test_derivative_at_the_kink_follows_pytorch(name, at_zero):
    h = np.zeros(3)
    a, dh = np.empty(3), np.empty(3)
    code, param = ACTIVATIONS[name].code, ACTIVATIONS[name].default_param
    activation_forward(a, h, code, param)
    activation_backward(dh, np.ones(3), h, a, code, param)
    assert np.all(dh == at_zero)
    t = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    f = {"relu": torch.relu, "leaky_relu": torch.nn.functional.leaky_relu,
         "elu": torch.nn.functional.elu}[name]
    f(t).sum().backward()
    assert np.all(t.grad.numpy() == at_zero)


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "elu", "gelu", "gelu_tanh", "identity"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_propagates(name, dtype):
    """Divergence detection relies on a NaN staying a NaN through smooth activations."""
    h = np.array([np.nan, -np.nan, 1.0], dtype)
    out = np.zeros_like(h)
    activation_forward(out, h, ACTIVATIONS[name].code, ACTIVATIONS[name].default_param)
    assert np.isnan(out[:2]).all() and np.isfinite(out[2])


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_rows_forward_and_backward(dtype):
    rng = np.random.default_rng(4)
    h = (rng.normal(size=(6, 5)) * 10).astype(dtype)
    a = np.empty_like(h)
    softmax_rows_forward(a, h)
    assert_close(a, forward_reference("softmax", h), dtype, "softmax")
    da = rng.normal(size=h.shape).astype(dtype)
    dh = np.empty_like(h)
    softmax_rows_backward(dh, da, a)
    t = torch.tensor(h.astype(np.float64), requires_grad=True)
    torch.softmax(t, dim=1).backward(torch.tensor(da.astype(np.float64)))
    assert_close(dh, t.grad.numpy(), dtype, "softmax backward")


@pytest.mark.parametrize("name", HIDDEN)
def test_the_non_decreasing_flag_is_the_functions(name):
    """Flagged activations never decrease over a sorted grid through both tails (the float64
    references, at a small and a large parameter); unflagged ones do somewhere. (The float32
    rational tanh steps down by a few ulps in places: the percentiles that rely on the flag
    prove each answer.)"""
    h = np.sort(np.concatenate([inputs(np.float64), np.linspace(-12, 12, 20001)]))
    params = (0.0, 3.0) if name in ("leaky_relu", "elu") else (None,)
    lowest = min(np.diff(forward_reference(name, h, param)).min() for param in params)
    if ACTIVATIONS[name].non_decreasing:
        assert lowest >= 0.0
    else:
        assert lowest < 0.0
