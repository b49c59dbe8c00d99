"""Exact Hessian-vector products of the batch loss by the R-operator, in one compiled call.

`hessian_vector` runs the forward pass, its tangent R{.} along v (kernels.rop), the loss and its
output gradient, then the backward pass with its tangent layer by layer, and writes
Hv = R{dL/dtheta} into a flat vector laid out as the parameters. It is exact (no finite
difference): H is the Hessian of the batch-mean loss with batch statistics (training-mode batch
norm, differentiated through the batch mean and variance), as `MLP.loss_and_grads`. The weight
gradient GEMMs of the primal backward pass are skipped (Hv does not need them): a layer costs 8
GEMMs (z; R{z}: 2; da; R{dW}: 2; R{da}: 2) against the gradient's 3 (z, dW, da), the first layer
3 against 2 (its input does not move, and no da). Measured: one Hv = 1.7-2.2 compiled gradients.

`CurvatureMixin` gives MLP its curvature and gradient-noise methods (thin: validate, allocate,
call); the solvers are in kernels.spectrum, the per-example statistics in kernels.per_example.
"""
from collections import namedtuple

import numpy as np

from . import per_example as PE
from . import rop as R
from . import spectrum as S
from .activations import SOFTMAX, derivative_reference, forward_reference
from .batchnorm import batchnorm_backward_reference, batchnorm_forward_reference
from .dense import dense_backward_input
from .layout import allocate_record, pack_record, unpack_netspec, unpack_workspace
from .losses import CROSS_ENTROPY, cross_entropy_reference, mse_reference
from ._jit import kernel_exact_order
from .rop import activation_tangent_backward, activation_tangent_forward, \
    batchnorm_tangent_backward, batchnorm_tangent_forward, dense_tangent_backward, \
    dense_tangent_backward_input, dense_tangent_forward, softmax_rows_tangent_backward, \
    softmax_rows_tangent_forward
from .step import _block, _layer_input, _pre_activation, _vector, _weights, forward_batch, \
    loss_and_output_grad
from .validation import check_positive_int

# Tangent buffers: R{z}, R{xhat}, R{h}, R{a}, R{dz} per unit (cap*units each), scratch R{da},
# R{dh} (cap*widest) and GEMM scratch (the largest of a batch block and a weight matrix).
Tangent = namedtuple("Tangent", ["rz", "rxhat", "rh", "ra", "rdz", "rda", "rdh", "scratch",
                                 "cap"])


def allocate_tangent(sizes, cap, dtype):
    """(packed buffer, bounds, cap) of the tangent workspace for batches of up to cap rows."""
    sizes = np.asarray(sizes)
    units, widest = int(sizes[1:].sum()), int(sizes.max())
    largest_w = int((sizes[1:] * sizes[:-1]).max())
    lengths = [cap * units] * 5 + [cap * widest] * 2 + [max(cap * widest, largest_w)]
    bounds = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return np.zeros(int(bounds[-1]), dtype), bounds, int(cap)


@kernel_exact_order
def unpack_tangent(packed):
    buf, b, cap = packed
    return Tangent(buf[b[0]:b[1]], buf[b[1]:b[2]], buf[b[2]:b[3]], buf[b[3]:b[4]],
                   buf[b[4]:b[5]], buf[b[5]:b[6]], buf[b[6]:b[7]], buf[b[7]:b[8]], cap)


@kernel_exact_order
def _scratch(buf, rows, cols):
    return buf[:rows * cols].reshape(rows, cols)


@kernel_exact_order
def _tangent_pre_activation(net, tw, layer, n_batch):
    if net.bn[layer]:
        return _block(tw.rh, net, tw, layer, n_batch)
    return _block(tw.rz, net, tw, layer, n_batch)


@kernel_exact_order
def tangent_forward(net, params, v, work, tw, n_batch):
    """R{z}, R{xhat}, R{h}, R{a} of every layer along v (after forward_batch in training mode)."""
    for layer in range(net.sizes.shape[0] - 1):
        n_out = net.sizes[layer + 1]
        a_prev = _layer_input(net, work, layer, n_batch)
        ra_prev = a_prev if layer == 0 else _block(tw.ra, net, tw, layer - 1, n_batch)
        rz = _block(tw.rz, net, tw, layer, n_batch)
        dense_tangent_forward(rz, _scratch(tw.scratch, n_batch, n_out), a_prev, ra_prev,
                              _weights(params, net, layer), _weights(v, net, layer),
                              _vector(v, net.b_off[layer], n_out), layer == 0)
        if net.bn[layer]:
            u = net.unit_start[layer]
            batchnorm_tangent_forward(
                _block(tw.rh, net, tw, layer, n_batch), _block(tw.rxhat, net, tw, layer, n_batch),
                rz, _block(work.xhat, net, work, layer, n_batch), work.bn_var[u:u + n_out],
                _vector(params, net.g_off[layer], n_out), _vector(v, net.g_off[layer], n_out),
                _vector(v, net.beta_off[layer], n_out), net.bn_eps)
        rh = _tangent_pre_activation(net, tw, layer, n_batch)
        ra = _block(tw.ra, net, tw, layer, n_batch)
        a = _block(work.a, net, work, layer, n_batch)
        if net.act_code[layer] == SOFTMAX:
            softmax_rows_tangent_forward(ra, rh, a)
        else:
            activation_tangent_forward(ra.ravel(), rh.ravel(),
                                       _pre_activation(net, work, layer, n_batch).ravel(),
                                       a.ravel(), net.act_code[layer], net.act_param[layer])


@kernel_exact_order
def tangent_output(net, work, tw, n_batch):
    """R{dL/dh} of the output layer into its R{dz} block (after loss_and_output_grad)."""
    last = net.sizes.shape[0] - 2
    n_out = net.sizes[last + 1]
    rdh = _block(tw.rdz, net, tw, last, n_batch)
    ra = _block(tw.ra, net, tw, last, n_batch)
    if net.loss == CROSS_ENTROPY:  # dh = (p - y)/B
        scale = 1.0 / n_batch
        for i in range(n_batch):
            for k in range(n_out):
                rdh[i, k] = scale * ra[i, k]
        return
    rda = _scratch(tw.rda, n_batch, n_out)  # da = 2 (a - y)/B
    scale = 2.0 / n_batch
    for i in range(n_batch):
        for k in range(n_out):
            rda[i, k] = scale * ra[i, k]
    da = _scratch(work.da, n_batch, n_out)
    a = _block(work.a, net, work, last, n_batch)
    if net.act_code[last] == SOFTMAX:
        softmax_rows_tangent_backward(rdh, rda, da, ra, a)
    else:
        activation_tangent_backward(rdh.ravel(), rda.ravel(), da.ravel(),
                                    _block(tw.rz, net, tw, last, n_batch).ravel(),
                                    _pre_activation(net, work, last, n_batch).ravel(), a.ravel(),
                                    net.act_code[last], net.act_param[last])


@kernel_exact_order
def _batchnorm_layer_backward(net, params, v, work, tw, hv, layer, n_batch):
    """Primal dz of a batch-norm layer from work.dh, with R{dz}, R{dgamma}, R{dbeta}."""
    n_out = net.sizes[layer + 1]
    u = net.unit_start[layer]
    var = work.bn_var[u:u + n_out]
    gamma = _vector(params, net.g_off[layer], n_out)
    xhat = _block(work.xhat, net, work, layer, n_batch)
    dh = _scratch(work.dh, n_batch, n_out)
    out = (_block(tw.rdz, net, tw, layer, n_batch), _vector(hv, net.g_off[layer], n_out),
           _vector(hv, net.beta_off[layer], n_out), _block(work.dz, net, work, layer, n_batch))
    tangent = (_scratch(tw.rdh, n_batch, n_out), _block(tw.rxhat, net, tw, layer, n_batch),
               _block(tw.rz, net, tw, layer, n_batch), _vector(v, net.g_off[layer], n_out))
    batchnorm_tangent_backward(out, tangent, (dh, xhat, var, gamma), net.bn_eps)


@kernel_exact_order
def tangent_backward(net, params, v, work, tw, hv, n_batch):
    """The backward pass (without its dW GEMMs) beside its tangent; writes Hv = R{grad}."""
    for layer in range(net.sizes.shape[0] - 2, -1, -1):
        n_in, n_out = net.sizes[layer], net.sizes[layer + 1]
        if net.bn[layer]:
            _batchnorm_layer_backward(net, params, v, work, tw, hv, layer, n_batch)
        dz = _block(work.dz, net, work, layer, n_batch)
        rdz = _block(tw.rdz, net, tw, layer, n_batch)
        a_prev = _layer_input(net, work, layer, n_batch)
        ra_prev = a_prev if layer == 0 else _block(tw.ra, net, tw, layer - 1, n_batch)
        dense_tangent_backward(_weights(hv, net, layer), _vector(hv, net.b_off[layer], n_out),
                               _scratch(tw.scratch, n_out, n_in), rdz, dz, a_prev, ra_prev,
                               layer == 0)
        if layer == 0:
            continue
        w = _weights(params, net, layer)
        da = _scratch(work.da, n_batch, n_in)
        rda = _scratch(tw.rda, n_batch, n_in)
        dense_backward_input(da, dz, w)
        dense_tangent_backward_input(rda, _scratch(tw.scratch, n_batch, n_in), rdz, dz, w,
                                     _weights(v, net, layer))
        prev = layer - 1
        if net.bn[prev]:
            dh, rdh = _scratch(work.dh, n_batch, n_in), _scratch(tw.rdh, n_batch, n_in)
        else:
            dh, rdh = _block(work.dz, net, work, prev, n_batch), _block(tw.rdz, net, tw, prev,
                                                                        n_batch)
        h_prev = _pre_activation(net, work, prev, n_batch).ravel()
        a_prev_flat = a_prev.ravel()
        code, param = net.act_code[prev], net.act_param[prev]
        activation_tangent_forward(dh.ravel(), da.ravel(), h_prev, a_prev_flat, code, param)
        activation_tangent_backward(rdh.ravel(), rda.ravel(), da.ravel(),
                                    _tangent_pre_activation(net, tw, prev, n_batch).ravel(),
                                    h_prev, a_prev_flat, code, param)


@kernel_exact_order
def hessian_vector(spec, model, work, tangent, v, hv, n_batch):
    """hv = H v for the batch already in the workspace (H: Hessian of the batch-mean loss with
    batch statistics); returns the loss. model = (params, running)."""
    net, w, tw = unpack_netspec(spec), unpack_workspace(work), unpack_tangent(tangent)
    params, running = model
    forward_batch(net, params, running, w, n_batch, True)
    tangent_forward(net, params, v, w, tw, n_batch)
    loss = loss_and_output_grad(net, w, n_batch, n_batch)
    tangent_output(net, w, tw, n_batch)
    tangent_backward(net, params, v, w, tw, hv, n_batch)
    return loss


def hvp_reference(net, x, y, v):
    """H v in float64 NumPy from the per-op references (the oracle of `hessian_vector`)."""
    x, y = (np.asarray(a, np.float64) for a in net.check_batch(x, y))
    par = {k: net._views(np.asarray(net.params, np.float64), k) for k in ("W", "b", "gamma",
                                                                        "beta")}
    tan = {k: net._views(np.asarray(v, np.float64), k) for k in par}
    hv = np.zeros(net.n_params)
    out = {k: net._views(hv, k) for k in par}
    acts, p = net.activations, list(net.spec.act_param)
    a, ra, cache = x, np.zeros_like(x), []
    for l in range(net.n_layers):
        z = a @ par["W"][l].T + par["b"][l]
        rz = R.dense_tangent_forward_reference(a, ra, par["W"][l], tan["W"][l], tan["b"][l])
        h, rh, bn = z, rz, None
        if par["gamma"][l] is not None:
            h, xhat, _, var = batchnorm_forward_reference(z, par["gamma"][l], par["beta"][l])
            rh, rxhat = R.batchnorm_tangent_forward_reference(rz, xhat, var, par["gamma"][l],
                                                              tan["gamma"][l], tan["beta"][l])
            bn = (rz, rxhat, xhat, var)
        cache.append((a, ra, h, rh, bn))
        a = forward_reference(acts[l], h, p[l])
        ra = (a * (rh - (a * rh).sum(axis=1, keepdims=True)) if acts[l] == "softmax"
              else derivative_reference(acts[l], h, p[l]) * rh)
    n = len(x)
    if net.loss_name == "cross_entropy":
        dh, rdh = cross_entropy_reference(h, y)[2], ra / n
    else:
        da, rda = mse_reference(a, y)[1], 2.0 * ra / n
        if acts[-1] == "softmax":
            dh = a * (da - (a * da).sum(axis=1, keepdims=True))
            rdh = R.softmax_tangent_reference(rh, da, rda, a)[1]
        else:
            dh = da * derivative_reference(acts[-1], h, p[-1])
            rdh = R.activation_tangent_backward_reference(acts[-1], rda, da, rh, h, p[-1])
    for l in range(net.n_layers - 1, -1, -1):
        a_prev, ra_prev, _, _, bn = cache[l]
        dz, rdz = dh, rdh
        if bn is not None:
            rz, rxhat, xhat, var = bn
            dz = batchnorm_backward_reference(dh, xhat, par["gamma"][l], var)[0]
            rdz, out["gamma"][l][...], out["beta"][l][...] = \
                R.batchnorm_tangent_backward_reference(rdh, dh, rz, rxhat, xhat, var,
                                                       par["gamma"][l], tan["gamma"][l])
        out["W"][l][...], out["b"][l][...], rda = R.dense_tangent_backward_reference(
            dz, rdz, a_prev, ra_prev, par["W"][l], tan["W"][l])
        if l > 0:
            da, (h_prev, rh_prev) = dz @ par["W"][l], cache[l - 1][2:4]
            dh = da * derivative_reference(acts[l - 1], h_prev, p[l - 1])
            rdh = R.activation_tangent_backward_reference(acts[l - 1], rda, da, rh_prev, h_prev,
                                                          p[l - 1])
    return hv


def _not_on_cuda(name):
    raise NotImplementedError(f"{name}: curvature is not on cuda yet; use a CPU MLP "
                              f"(MLP(..., device='cpu'))")


class NoCurvatureOnCuda:
    """The curvature methods of a CUDA network: not implemented there yet."""

    def hvp(self, *args, **kwargs):
        _not_on_cuda("hvp")

    def sharpness(self, *args, **kwargs):
        _not_on_cuda("sharpness")

    def hessian_eigenvalues(self, *args, **kwargs):
        _not_on_cuda("hessian_eigenvalues")

    def hessian_trace(self, *args, **kwargs):
        _not_on_cuda("hessian_trace")

    def per_example_grad_norms(self, *args, **kwargs):
        _not_on_cuda("per_example_grad_norms")

    def gradient_noise(self, *args, **kwargs):
        _not_on_cuda("gradient_noise")


class CurvatureMixin:
    """Hessian-vector products, Hessian spectrum and trace, per-example gradient statistics
    (methods of MLP; H is the Hessian of the batch-mean loss with batch statistics)."""

    # ------------------------------------------------------------------ buffers
    def _curvature_buffers(self, n_rows):
        """(tangent workspace, per-example record, gradient scratch) grown to n_rows rows; owned
        by this network's parameter buffer (a copy() gets its own)."""
        cached = self.__dict__.get("_curvature_cache")
        if cached is None or cached[0] is not self.params or cached[1][2] < n_rows:
            cap = max(n_rows, 1 if cached is None else cached[1][2])
            tangent = allocate_tangent(self.sizes, cap, self.dtype)
            record = allocate_record(1, self.n_layers)
            cached = (self.params, tangent, pack_record(record), np.zeros_like(self.params))
            self._curvature_cache = cached
        return cached[1:]

    def _load_for_curvature(self, x, y):
        x, y = self.check_batch(x, y)
        self._load_batch(x, y)
        return len(x)

    def _check_vector(self, v, argument="v"):
        arr = np.asarray(v)
        if arr.dtype.kind not in "fiu" or arr.shape != (self.n_params,):
            raise ValueError(f"{argument}: expected a real vector of shape ({self.n_params},) "
                             f"(the layout of params), got shape {arr.shape} dtype {arr.dtype}")
        arr = np.ascontiguousarray(arr, self.dtype)
        if not np.isfinite(arr).all():
            raise ValueError(f"{argument}: contains NaN or Inf")
        return arr

    def _hvp_operator(self, n_batch):
        """v -> Hv (float64 in and out) on the batch loaded in the workspace."""
        tangent, _, _ = self._curvature_buffers(n_batch)
        work = self._packed_workspace(n_batch)
        model = (self.params, self.running)
        out = np.zeros(self.n_params, self.dtype)

        def matvec(v):
            hessian_vector(self._packed_spec, model, work, tangent,
                           np.ascontiguousarray(v, self.dtype), out, n_batch)
            return out.astype(np.float64)
        return matvec

    # ------------------------------------------------------------------ public
    def hvp(self, x, y, v):
        """H v for the batch (x, y): v and the result flat, in the order of `params`. Exact
        (R-operator), with batch statistics as `loss_and_grads`."""
        v = self._check_vector(v)
        n = self._load_for_curvature(x, y)
        tangent, _, _ = self._curvature_buffers(n)
        out = np.empty(self.n_params, self.dtype)  # the kernel writes every entry
        hessian_vector(self._packed_spec, (self.params, self.running), self._packed_workspace(n),
                       tangent, v, out, n)
        return out

    def hessian_eigenvalues(self, x, y, k=1, tol=1e-8, max_iter=None, seed=0, return_info=False):
        """The k largest (algebraic) eigenvalues of H, descending, by Lanczos with full
        reorthogonalization from a seeded random start; converged when every residual
        |beta_m s_mi| <= tol max(|theta_i|, tiny). max_iter (default min(n_params, 300)) caps
        the Hv products. return_info=True also returns a kernels.spectrum.LanczosResult."""
        k = check_positive_int("k", k)
        if k > self.n_params:
            raise ValueError(f"k: expected at most n_params = {self.n_params}, got {k}")
        n = self._load_for_curvature(x, y)
        max_iter = min(self.n_params, 300) if max_iter is None else max_iter
        result = S.lanczos_top(self._hvp_operator(n), self.n_params, k, tol, max_iter, seed)
        return (result.values, result) if return_info else result.values

    def sharpness(self, x, y, tol=1e-8, max_iter=None, seed=0):
        """The largest algebraic eigenvalue of H (Cohen et al.'s sharpness), by Lanczos."""
        return float(self.hessian_eigenvalues(x, y, 1, tol, max_iter, seed)[0])

    def hessian_trace(self, x, y, samples=100, seed=0):
        """Hutchinson's tr(H) ~ mean_j v_j^T H v_j over `samples` seeded Rademacher probes;
        returns (estimate, standard error = std_j(v_j^T H v_j, ddof=1) / sqrt(samples))."""
        samples = check_positive_int("samples", samples)
        if samples < 2:
            raise ValueError(f"samples: expected at least 2 probes (for the standard error), "
                             f"got {samples}")
        n = self._load_for_curvature(x, y)
        return S.hutchinson_trace(self._hvp_operator(n), self.n_params, samples, seed)

    def _per_example_sq(self, x, y, name):
        if self.batchnorm:
            raise ValueError(f"{name}: per-example gradients are not defined with batch norm "
                             f"(each example's output depends on the whole batch)")
        n = self._load_for_curvature(x, y)
        _, record, grads = self._curvature_buffers(n)
        sq = np.zeros((n, self.n_layers))
        mean_sq = np.zeros(self.n_layers)
        PE.per_example_packed(self._packed_spec, (self.params, grads, self.running),
                              self._packed_workspace(n), record, n, sq, mean_sq)
        return sq, mean_sq

    def per_example_grad_norms(self, x, y, per_layer=False):
        """||g_i|| of each example's own-loss gradient g_i = grad l_i (so the batch gradient is
        mean_i g_i), from one backward pass: (B,) over all parameters, or (B, n_layers) per
        layer (W and b) with per_layer=True. float64. Not defined with batch norm."""
        sq, _ = self._per_example_sq(x, y, "per_example_grad_norms")
        return np.sqrt(sq if per_layer else sq.sum(axis=1))

    def gradient_noise(self, x, y):
        """Gradient noise statistics of the batch (kernels.per_example.noise_statistics): the
        simple noise scale B_simple = tr(Sigma)/|G|^2 and the per-layer signal-to-noise ratio."""
        sq, mean_sq = self._per_example_sq(x, y, "gradient_noise")
        return PE.noise_statistics(sq, mean_sq)
