"""The per-op tangent kernels (kernels.rop) against their NumPy references, and the references
against central differences of the primal references and torch's second derivatives."""
import numpy as np
import pytest
import torch

from kernels.activations import ACTIVATIONS, CODE_TO_NAME, derivative_reference, \
    forward_reference
from kernels.batchnorm import BN_EPS, batchnorm_backward_reference, batchnorm_forward_reference
from kernels.rop import activation_tangent_backward, activation_tangent_backward_reference, \
    activation_tangent_forward, softmax_rows_tangent_forward, \
    batchnorm_tangent_backward, batchnorm_tangent_backward_reference, batchnorm_tangent_forward, \
    batchnorm_tangent_forward_reference, dense_tangent_backward, \
    dense_tangent_backward_input, dense_tangent_backward_reference, dense_tangent_forward, \
    dense_tangent_forward_reference, second_derivative_reference, \
    softmax_rows_tangent_backward, softmax_tangent_reference
from kernels.tolerance import assert_close
from _torch_twin import ACTIVATIONS as TORCH_ACTIVATIONS

ELEMENTWISE = [n for n, a in ACTIVATIONS.items() if a.hidden]
DTYPES = [np.float64, np.float32]


def away_from_kinks(rng, n):
    h = rng.normal(0.0, 2.0, n)
    return np.where(np.abs(h) < 1e-3, 0.5, h)


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_second_derivative_reference_matches_torch(name):
    h = away_from_kinks(np.random.default_rng(0), 200)
    p = ACTIVATIONS[name].default_param
    ht = torch.tensor(h, requires_grad=True)
    d1, = torch.autograd.grad(TORCH_ACTIVATIONS[name](ht, p).sum(), ht, create_graph=True)
    if not d1.requires_grad:  # piecewise linear: torch's graph has no second derivative
        d2 = np.zeros_like(h)
    else:
        d2 = torch.autograd.grad(d1.sum(), ht)[0].numpy()
    assert_close(second_derivative_reference(name, h), d2, atol=1e-12, rtol=1e-10)
    assert_close(derivative_reference(name, h), d1.detach().numpy(), atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_activation_tangent_backward_matches_reference(name, dtype):
    rng = np.random.default_rng(1)
    h, da, rh, rda = away_from_kinks(rng, 300), *rng.normal(size=(3, 300))
    p = ACTIVATIONS[name].default_param
    a = forward_reference(name, h, p)
    out = np.zeros(300, dtype)
    cast = [np.ascontiguousarray(v, dtype) for v in (rda, da, rh, h, a)]
    activation_tangent_backward(out, *cast, ACTIVATIONS[name].code, p)
    want = activation_tangent_backward_reference(name, rda, da, rh, h, p)
    assert_close(out, want, dtype, name)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_activation_tangent_forward_matches_reference(name, dtype):
    rng = np.random.default_rng(7)
    h, rh = away_from_kinks(rng, 300), rng.normal(size=300)
    p = ACTIVATIONS[name].default_param
    a = forward_reference(name, h, p)
    out = np.zeros(300, dtype)
    activation_tangent_forward(out, *[np.ascontiguousarray(v, dtype) for v in (rh, h, a)],
                               ACTIVATIONS[name].code, p)
    assert_close(out, derivative_reference(name, h, p) * rh, dtype, name)


def test_kink_convention_is_backprops():
    """At h = 0 the second derivative is 0 for ReLU and Leaky ReLU, and ELU's left branch (as
    its first derivative alpha there)."""
    one = np.ones(1)
    for name, want in [("relu", 0.0), ("leaky_relu", 0.01), ("elu", 2.0)]:
        out = np.zeros(1)
        activation_tangent_backward(out, one, one, one, np.zeros(1), np.zeros(1),
                                    ACTIVATIONS[name].code, ACTIVATIONS[name].default_param)
        assert out[0] == want, CODE_TO_NAME[ACTIVATIONS[name].code]


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_tangent_backward_matches_reference(dtype):
    rng = np.random.default_rng(2)
    a = forward_reference("softmax", rng.normal(size=(5, 4)))
    rh, da, rda = rng.normal(size=(3, 5, 4))
    ra, want = softmax_tangent_reference(rh, da, rda, a)
    got_ra = np.zeros((5, 4), dtype)
    softmax_rows_tangent_forward(got_ra, *[np.ascontiguousarray(v, dtype) for v in (rh, a)])
    assert_close(got_ra, ra, dtype, "R{a}")
    out = np.zeros((5, 4), dtype)
    softmax_rows_tangent_backward(out, *[np.ascontiguousarray(v, dtype) for v in (rda, da, ra, a)])
    assert_close(out, want, dtype)


def test_softmax_tangent_reference_is_the_directional_derivative():
    rng = np.random.default_rng(3)
    h, dir_h, g = rng.normal(size=(3, 4, 5))
    eps = 1e-6

    def backward(hh):  # dh = J^T g at softmax(hh)
        a = forward_reference("softmax", hh)
        return a * (g - (a * g).sum(axis=1, keepdims=True))
    a = forward_reference("softmax", h)
    numeric = (backward(h + eps * dir_h) - backward(h - eps * dir_h)) / (2 * eps)
    ra, rdh = softmax_tangent_reference(dir_h, g, np.zeros_like(g), a)
    assert_close(ra, (forward_reference("softmax", h + eps * dir_h) -
                      forward_reference("softmax", h - eps * dir_h)) / (2 * eps), atol=1e-9,
                 rtol=1e-7)
    assert_close(rdh, numeric, atol=1e-9, rtol=1e-7)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("first", [True, False])
def test_dense_tangents_match_reference(first, dtype):
    rng = np.random.default_rng(4)
    a, ra = rng.normal(size=(2, 6, 5))
    if first:
        ra = np.zeros_like(ra)
    w, vw = rng.normal(size=(2, 3, 5))
    vb = rng.normal(size=3)
    dz, rdz = rng.normal(size=(2, 6, 3))
    c = {k: np.ascontiguousarray(v, dtype) for k, v in dict(a=a, ra=ra, w=w, vw=vw, vb=vb,
                                                            dz=dz, rdz=rdz).items()}
    rz, rdw, rdb, rda = (np.zeros(s, dtype) for s in ((6, 3), (3, 5), 3, (6, 5)))
    dense_tangent_forward(rz, np.zeros((6, 3), dtype), c["a"], c["ra"], c["w"], c["vw"],
                          c["vb"], first)
    dense_tangent_backward(rdw, rdb, np.zeros((3, 5), dtype), c["rdz"], c["dz"], c["a"],
                           c["ra"], first)
    dense_tangent_backward_input(rda, np.zeros((6, 5), dtype), c["rdz"], c["dz"], c["w"],
                                 c["vw"])
    assert_close(rz, dense_tangent_forward_reference(a, ra, w, vw, vb), dtype, "R{z}")
    for got, want, name in zip((rdw, rdb, rda),
                               dense_tangent_backward_reference(dz, rdz, a, ra, w, vw),
                               ("R{dW}", "R{db}", "R{da}")):
        assert_close(got, want, dtype, name)


def bn_case(rng):
    z = rng.normal(1.0, 2.0, size=(7, 4))
    gamma, beta = rng.uniform(0.5, 1.5, 4), rng.normal(size=4)
    return z, gamma, beta


def test_batchnorm_tangent_references_are_directional_derivatives():
    """R{h}, R{dz}, R{dgamma}, R{dbeta} = central differences of the primal references along
    (R{z}, v_gamma, v_beta) with dh moving along R{dh}."""
    rng = np.random.default_rng(5)
    z, gamma, beta = bn_case(rng)
    dh, rz, rdh = rng.normal(size=(3, 7, 4))
    vg, vb = rng.normal(size=(2, 4))
    eps = 1e-6

    def primal(t):
        h, xhat, _, var = batchnorm_forward_reference(z + t * rz, gamma + t * vg, beta + t * vb)
        dz, dgamma, dbeta = batchnorm_backward_reference(dh + t * rdh, xhat, gamma + t * vg, var)
        return h, dz, dgamma, dbeta
    numeric = [(p - m) / (2 * eps) for p, m in zip(primal(eps), primal(-eps))]
    _, xhat, _, var = batchnorm_forward_reference(z, gamma, beta)
    rh, rxhat = batchnorm_tangent_forward_reference(rz, xhat, var, gamma, vg, vb)
    rdz, rdgamma, rdbeta = batchnorm_tangent_backward_reference(rdh, dh, rz, rxhat, xhat, var,
                                                                gamma, vg)
    for got, want in zip((rh, rdz, rdgamma, rdbeta), numeric):
        assert_close(got, want, atol=1e-8, rtol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_batchnorm_tangent_kernels_match_reference(dtype):
    rng = np.random.default_rng(6)
    z, gamma, beta = bn_case(rng)
    dh, rz, rdh = rng.normal(size=(3, 7, 4))
    vg, vb = rng.normal(size=(2, 4))
    _, xhat, _, var = batchnorm_forward_reference(z, gamma, beta)
    rh_want, rxhat_want = batchnorm_tangent_forward_reference(rz, xhat, var, gamma, vg, vb)
    want = batchnorm_tangent_backward_reference(rdh, dh, rz, rxhat_want, xhat, var, gamma, vg)
    c = lambda v: np.ascontiguousarray(v, dtype)  # noqa: E731
    rh, rxhat, rdz, dz = (np.zeros((7, 4), dtype) for _ in range(4))
    rdgamma, rdbeta = np.zeros(4, dtype), np.zeros(4, dtype)
    batchnorm_tangent_forward(rh, rxhat, c(rz), c(xhat), c(var), c(gamma), c(vg), c(vb), BN_EPS)
    batchnorm_tangent_backward((rdz, rdgamma, rdbeta, dz), (c(rdh), rxhat, c(rz), c(vg)),
                               (c(dh), c(xhat), c(var), c(gamma)), BN_EPS)
    assert_close(dz, batchnorm_backward_reference(dh, xhat, gamma, var)[0], dtype, "dz")
    assert_close(rh, rh_want, dtype, "R{h}")
    assert_close(rxhat, rxhat_want, dtype, "R{xhat}")
    for got, ref, name in zip((rdz, rdgamma, rdbeta), want, ("R{dz}", "R{dgamma}", "R{dbeta}")):
        assert_close(got, ref, dtype, name)
