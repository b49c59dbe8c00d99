"""Losses averaged over the batch, as forward/backward kernels with NumPy references.

MSE follows the report: L = (1/B) sum_i ||yhat_i - y_i||^2, summed over output components
(PyTorch's `MSELoss` also divides by the number of outputs: ours is `n_out` times larger).
Cross-entropy takes logits and targets as rows of class probabilities (one-hot for labels):
L = (1/B) sum_i [lse(z_i) - sum_k y_ik z_ik], stable through log-sum-exp; dL/dz = (softmax(z) - y)/B.
"""
import math
from dataclasses import dataclass

import numpy as np

from . import vecmath as V
from ._jit import kernel
from .registry import Entry, build_registry

MSE, CROSS_ENTROPY = 0, 1


@dataclass(frozen=True, kw_only=True)
class Loss(Entry):
    """Registry entry: code, formula, the default output activation and whether the targets
    are classes (one-hot rows or labels)."""
    default_output: str
    classification: bool


LOSSES = build_registry([
    Loss(name="mse", code=MSE, formula="(1/B) sum_i ||yhat_i - y_i||^2",
         default_output="identity", classification=False),
    Loss(name="cross_entropy", code=CROSS_ENTROPY,
         formula="(1/B) sum_i [logsumexp(z_i) - sum_k y_ik z_ik]", default_output="softmax",
         classification=True),
])


@kernel
def mse_forward(yhat, y):
    """(1/B) sum_i ||yhat_i - y_i||^2 over (B, k) arrays, accumulated in float64."""
    s = 0.0
    for i in range(yhat.shape[0]):
        for k in range(yhat.shape[1]):
            d = float(yhat[i, k]) - float(y[i, k])
            s += d * d
    return s / yhat.shape[0]


@kernel
def mse_backward(dyhat, yhat, y, scale):
    """dL/dyhat = scale (yhat - y), scale = 2 / B for the loss averaged over B rows."""
    for i in range(yhat.shape[0]):
        for k in range(yhat.shape[1]):
            dyhat[i, k] = scale * (yhat[i, k] - y[i, k])


@kernel
def cross_entropy_forward(probs, logits, y):
    """Writes probs = softmax(logits) per row; returns (1/B) sum_i [lse_i - y_i . z_i]."""
    total = 0.0
    for i in range(logits.shape[0]):
        m = logits[i, 0]
        for k in range(1, logits.shape[1]):
            m = max(m, logits[i, k])
        s = 0.0
        for k in range(logits.shape[1]):
            e = V.exp(logits[i, k] - m)
            probs[i, k] = e
            s += e
        inv = 1.0 / s
        lse = m + math.log(s)
        row = 0.0
        for k in range(logits.shape[1]):
            probs[i, k] *= inv
            row += float(y[i, k]) * (lse - logits[i, k])
        total += row
    return total / logits.shape[0]


@kernel
def cross_entropy_backward(dlogits, probs, y, scale):
    """dL/dz = scale (softmax(z) - y), scale = 1 / B for the loss averaged over B rows (target
    rows that sum to 1)."""
    for i in range(probs.shape[0]):
        for k in range(probs.shape[1]):
            dlogits[i, k] = scale * (probs[i, k] - y[i, k])


# ---------------------------------------------------------------- NumPy references
def mse_reference(yhat, y):
    """Loss and dL/dyhat in float64 NumPy."""
    yhat, y = np.asarray(yhat, np.float64), np.asarray(y, np.float64)
    d = yhat - y
    return float((d * d).sum() / len(d)), 2.0 * d / len(d)


def cross_entropy_reference(logits, y):
    """Loss, softmax probabilities and dL/dlogits in float64 NumPy."""
    z = np.asarray(logits, np.float64)
    y = np.asarray(y, np.float64)
    m = z.max(axis=1, keepdims=True)
    lse = m + np.log(np.exp(z - m).sum(axis=1, keepdims=True))
    probs = np.exp(z - lse)
    loss = float((y * (lse - z)).sum() / len(z))
    return loss, probs, (probs - y) / len(z)
