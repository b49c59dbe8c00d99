"""A plain NumPy float64 MLP: forward and backward built from the per-op references.

It shares no code with the compiled path beyond the references beside each kernel, and serves
as the oracle for tests and for the benchmark's validation step. `reference_trace` returns the
same names as `MLP.trace`.
"""
import numpy as np

from .activations import derivative_reference, forward_reference
from .batchnorm import batchnorm_backward_reference, batchnorm_forward_reference
from .dense import dense_backward_reference, dense_forward_reference
from .losses import cross_entropy_reference, mse_reference


def reference_trace(weights, biases, gammas, betas, activations, act_params, loss, x, y):
    """Every intermediate and gradient of one batch, float64. y: targets in kernel form
    (one-hot rows for cross-entropy). gammas[l] is None for layers without batch norm."""
    a = np.asarray(x, np.float64)
    out, cache = {}, []
    n_layers = len(weights)
    for layer in range(n_layers):
        k = layer + 1
        z = dense_forward_reference(a, weights[layer], biases[layer])
        out[f"z{k}"] = z
        h, bn = z, None
        if gammas[layer] is not None:
            h, xhat, _, var = batchnorm_forward_reference(z, gammas[layer], betas[layer])
            out[f"xhat{k}"] = xhat
            bn = (xhat, var)
        out[f"h{k}"] = h
        act = activations[layer]
        a_prev, a = a, forward_reference(act, h, act_params[layer])
        out[f"a{k}"] = a
        cache.append((a_prev, h, a, bn))
    y = np.asarray(y, np.float64)
    if loss == "cross_entropy":
        out["loss"], _, dh = cross_entropy_reference(out[f"h{n_layers}"], y)
    else:
        out["loss"], da = mse_reference(out[f"a{n_layers}"], y)
        dh = _activation_backward(activations[-1], da, cache[-1][1], cache[-1][2],
                                  act_params[-1])
    for layer in range(n_layers - 1, -1, -1):
        k = layer + 1
        a_prev, h, a, bn = cache[layer]
        dz = dh
        if bn is not None:
            dz, out[f"dgamma{k}"], out[f"dbeta{k}"] = batchnorm_backward_reference(
                dh, bn[0], gammas[layer], bn[1])
        out[f"delta{k}"] = dz
        out[f"dW{k}"], out[f"db{k}"], da = dense_backward_reference(dz, a_prev, weights[layer])
        if layer > 0:
            _, h_prev, a_prev_act, _ = cache[layer - 1]
            dh = _activation_backward(activations[layer - 1], da, h_prev, a_prev_act,
                                      act_params[layer - 1])
    return out


def _activation_backward(name, da, h, a, param):
    if name == "softmax":
        return a * (da - (a * da).sum(axis=1, keepdims=True))
    return da * derivative_reference(name, h, param)


def reference_trace_of(net, x, y):
    """reference_trace with the weights, activations and loss of an MLP."""
    f64 = (lambda v: None if v is None else np.asarray(v, np.float64))
    x, y = net.check_batch(x, y)
    return reference_trace([f64(w) for w in net.weights], [f64(b) for b in net.biases],
                           [f64(g) for g in net.gammas], [f64(b) for b in net.betas],
                           net.activations, list(net.spec.act_param), net.loss_name, x, y)
