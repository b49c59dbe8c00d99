"""Affine layers z = a_prev W^T + b on row-major batches, W of shape (n_out, n_in).

GEMMs go through `np.dot(a, b, out)` (BLAS, no allocation). NumPy references sit beside the
kernels.
"""
import math

import numpy as np

from ._jit import kernel


@kernel
def dense_forward(z, a_prev, w, b):
    """z = a_prev @ W^T + b for a_prev (B, n_in), W (n_out, n_in), b (n_out,)."""
    np.dot(a_prev, w.T, z)
    for i in range(z.shape[0]):
        for j in range(z.shape[1]):
            z[i, j] += b[j]


@kernel
def dense_backward(dw, db, dz, a_prev):
    """dL/dW = dz^T @ a_prev and dL/db = sum_i dz_i (dz already carries the 1/B of the loss);
    returns sum_i ||dz_i||, the delta norm the step records, from the same pass over dz."""
    np.dot(dz.T, a_prev, dw)
    return bias_grad_row_norms(db, dz)


@kernel
def bias_grad_row_norms(db, dz):
    """db = sum_i dz_i; returns sum_i ||dz_i|| (the delta norm the step records) from the same
    single pass over dz."""
    zero = db.dtype.type(0.0)
    for j in range(db.shape[0]):
        db[j] = zero
    total = 0.0
    for i in range(dz.shape[0]):
        row_sq = 0.0
        for j in range(dz.shape[1]):
            x = dz[i, j]
            db[j] += x
            row_sq += float(x) * float(x)
        total += math.sqrt(row_sq)
    return total


@kernel
def dense_backward_input(da_prev, dz, w):
    """dL/da_prev = dz @ W."""
    np.dot(dz, w, da_prev)


def dense_forward_reference(a_prev, w, b):
    return np.asarray(a_prev, np.float64) @ np.asarray(w, np.float64).T + b


def dense_backward_reference(dz, a_prev, w):
    """(dW, db, da_prev) in float64 NumPy."""
    dz = np.asarray(dz, np.float64)
    return dz.T @ a_prev, dz.sum(axis=0), dz @ np.asarray(w, np.float64)
