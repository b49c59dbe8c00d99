"""Per-example gradient norms from one backward pass, and the gradient noise they measure.

For a dense layer, example i's gradient of its own loss l_i is the outer product
g_i = B (delta_i a_prev,i^T, delta_i), where delta_i = dL/dz_i carries the 1/B of the batch-mean
loss L = (1/B) sum_i l_i; so ||g_i||^2 = B^2 ||delta_i||^2 (||a_prev,i||^2 + 1) per layer
(Goodfellow 2015), and the batch gradient is G = mean_i g_i. No per-example backward pass.
With batch norm an example's output depends on the whole batch: per-example gradients are not
defined there.
"""
import numpy as np

from ._jit import kernel
from .layout import unpack_netspec, unpack_record, unpack_workspace
from .step import _block, _layer_input, gradients


@kernel
def per_example_sq_norms(net, work, n_batch, sq):
    """sq[i, l] = B^2 ||delta_{l,i}||^2 (||a_{l-1,i}||^2 + 1) after a backward pass (float64)."""
    scale = float(n_batch) * float(n_batch)
    for layer in range(net.sizes.shape[0] - 1):
        dz = _block(work.dz, net, work, layer, n_batch)
        a_prev = _layer_input(net, work, layer, n_batch)
        for i in range(n_batch):
            d = 0.0
            for j in range(dz.shape[1]):
                d += float(dz[i, j]) * float(dz[i, j])
            a = 0.0
            for j in range(a_prev.shape[1]):
                a += float(a_prev[i, j]) * float(a_prev[i, j])
            sq[i, layer] = scale * d * (a + 1.0)


@kernel
def per_example_packed(spec, model, work, rec, n_batch, sq, mean_sq):
    """One forward/backward pass of the loaded batch (gradient into model's grads), then
    sq = per-example squared norms per layer and mean_sq[l] = ||G_l||^2; returns the loss."""
    net, w = unpack_netspec(spec), unpack_workspace(work)
    loss = gradients(net, model, w, n_batch, unpack_record(rec))
    per_example_sq_norms(net, w, n_batch, sq)
    for layer in range(mean_sq.shape[0]):
        mean_sq[layer] = w.seg_sq[layer]
    return loss


def per_example_sq_reference(trace, x):
    """(B, L) squared per-example norms from `reference_trace` of the batch x (float64 NumPy)."""
    n_layers = sum(1 for k in trace if k.startswith("delta"))
    cols = []
    for k in range(1, n_layers + 1):
        delta = trace[f"delta{k}"]
        a_prev = trace[f"a{k - 1}"] if k > 1 else np.asarray(x, np.float64)
        n = len(delta)
        cols.append(n * n * (delta ** 2).sum(axis=1) * ((a_prev ** 2).sum(axis=1) + 1.0))
    return np.stack(cols, axis=1)


def noise_statistics(sq, mean_sq):
    """Gradient noise of one batch from per-example squared norms sq (B, L) and the batch
    gradient's per-layer squared norms mean_sq (L,) = ||G_l||^2, all float64:
    trace_sigma_l = B/(B-1) (mean_i ||g_il||^2 - ||G_l||^2) = sum_i ||g_il - G_l||^2 / (B-1),
    the unbiased trace of the per-example covariance; b_simple = sum_l trace_sigma_l /
    sum_l ||G_l||^2 (McCandlish et al. 2018, with the batch gradient G for the true one);
    grad_sq_unbiased = ||G||^2 - trace_sigma/B, their unbiased estimate of the true |G|^2
    (||G_B||^2 exceeds it by tr(Sigma)/B on average); snr_l = ||G_l||^2 / (trace_sigma_l / B),
    each layer's squared batch-gradient signal over the noise variance of that batch mean."""
    sq = np.asarray(sq, np.float64)
    mean_sq = np.asarray(mean_sq, np.float64)
    batch = sq.shape[0]
    if batch < 2:
        raise ValueError(f"x: gradient noise needs at least 2 examples, got {batch}")
    trace_layers = batch / (batch - 1.0) * (sq.mean(axis=0) - mean_sq)
    grad_sq, trace = float(mean_sq.sum()), float(trace_layers.sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = mean_sq / (trace_layers / batch)
        b_simple = trace / grad_sq if grad_sq > 0 else np.inf
    return {"batch": batch, "grad_sq": grad_sq, "grad_sq_unbiased": grad_sq - trace / batch,
            "trace_sigma": trace, "b_simple": float(b_simple), "grad_sq_layers": mean_sq,
            "trace_sigma_layers": trace_layers, "snr_layers": snr}
