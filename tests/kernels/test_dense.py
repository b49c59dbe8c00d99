"""kernels/dense.py: the affine kernels against the NumPy references and torch.nn.functional.linear
autograd, in float64 and float32; dense_backward's returned delta norm sum_i ||dz_i||."""
import numpy as np
import pytest
import torch

from kernels.dense import bias_grad_row_norms, dense_backward, dense_backward_input, \
    dense_backward_reference, dense_forward, dense_forward_reference
from kernels.tolerance import assert_close

SHAPES = [(1, 3, 2), (7, 5, 4), (33, 40, 17)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("batch, n_in, n_out", SHAPES)
def test_forward_and_backward_match_references_and_torch(batch, n_in, n_out, dtype):
    rng = np.random.default_rng(batch + n_in)
    a = rng.normal(size=(batch, n_in)).astype(dtype)
    w = rng.normal(size=(n_out, n_in)).astype(dtype)
    b = rng.normal(size=n_out).astype(dtype)
    dz = rng.normal(size=(batch, n_out)).astype(dtype)
    z = np.full((batch, n_out), np.nan, dtype)
    dense_forward(z, a, w, b)
    assert_close(z, dense_forward_reference(a, w, b), dtype, "z")
    dw, db = np.full_like(w, np.nan), np.full_like(b, np.nan)
    da = np.full_like(a, np.nan)
    delta = dense_backward(dw, db, dz, a)
    dense_backward_input(da, dz, w)
    ref_dw, ref_db, ref_da = dense_backward_reference(dz, a, w)
    for name, got, ref in (("dW", dw, ref_dw), ("db", db, ref_db), ("da", da, ref_da)):
        assert got.dtype == dtype
        assert_close(got, ref, dtype, name)
    assert delta == pytest.approx(np.linalg.norm(dz.astype(np.float64), axis=1).sum(),
                                  rel=1e-12 if dtype == np.float64 else 1e-6)
    ta, tw, tb = (torch.tensor(v.astype(np.float64), requires_grad=True) for v in (a, w, b))
    out = torch.nn.functional.linear(ta, tw, tb)
    out.backward(torch.tensor(dz.astype(np.float64)))
    assert_close(z, out.detach().numpy(), dtype, "z vs torch")
    for name, got, t in (("dW", dw, tw), ("db", db, tb), ("da", da, ta)):
        assert_close(got, t.grad.numpy(), dtype, f"{name} vs torch")


def test_bias_grad_overwrites_and_sums_rows():
    dz = np.array([[3.0, 4.0], [0.0, -1.0]])
    db = np.array([99.0, 99.0])
    assert bias_grad_row_norms(db, dz) == pytest.approx(5.0 + 1.0)
    assert np.array_equal(db, [3.0, 3.0])
