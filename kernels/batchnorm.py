"""Batch normalization (Ioffe & Szegedy 2015) between the affine map and the activation.

Training: xhat = (z - mu_B)/sqrt(var_B + eps) with the biased batch variance, y = gamma xhat +
beta; the running averages take momentum m: r <- (1-m) r + m s, the variance unbiased
(B/(B-1) var_B), as PyTorch's `BatchNorm1d`. Evaluation uses the running averages.
"""
import math

import numpy as np

from ._jit import kernel

BN_EPS = 1e-5
BN_MOMENTUM = 0.1


@kernel
def batchnorm_forward_train(y, xhat, mean, var, z, gamma, beta, eps):
    """y = gamma (z - mu_B)/sqrt(var_B + eps) + beta per feature; keeps xhat, mu_B, var_B."""
    n_batch, n = z.shape
    for j in range(n):
        mean[j] = 0.0
        var[j] = 0.0
    for i in range(n_batch):
        for j in range(n):
            mean[j] += z[i, j]
    for j in range(n):
        mean[j] /= n_batch
    for i in range(n_batch):
        for j in range(n):
            d = z[i, j] - mean[j]
            var[j] += d * d
    for j in range(n):
        var[j] /= n_batch
    for i in range(n_batch):
        for j in range(n):
            xhat[i, j] = (z[i, j] - mean[j]) / math.sqrt(var[j] + eps)
            y[i, j] = gamma[j] * xhat[i, j] + beta[j]


@kernel
def batchnorm_forward_eval(y, z, gamma, beta, running_mean, running_var, eps):
    """y = gamma (z - running_mean)/sqrt(running_var + eps) + beta."""
    for i in range(z.shape[0]):
        for j in range(z.shape[1]):
            y[i, j] = gamma[j] * (z[i, j] - running_mean[j]) / math.sqrt(running_var[j] + eps) \
                + beta[j]


@kernel
def batchnorm_update_running(running_mean, running_var, mean, var, n_batch, momentum):
    """r <- (1-m) r + m s with the unbiased variance var_B * B/(B-1)."""
    unbias = n_batch / (n_batch - 1.0) if n_batch > 1 else 1.0
    for j in range(mean.shape[0]):
        running_mean[j] = (1.0 - momentum) * running_mean[j] + momentum * mean[j]
        running_var[j] = (1.0 - momentum) * running_var[j] + momentum * var[j] * unbias


@kernel
def batchnorm_backward(dz, dgamma, dbeta, dy, xhat, gamma, var, eps):
    """dz = gamma/(B sigma) (B dy - sum dy - xhat sum(dy xhat)); dgamma = sum dy xhat; dbeta = sum dy."""
    n_batch, n = dy.shape
    for j in range(n):
        dgamma[j] = 0.0
        dbeta[j] = 0.0
    for i in range(n_batch):
        for j in range(n):
            dbeta[j] += dy[i, j]
            dgamma[j] += dy[i, j] * xhat[i, j]
    for i in range(n_batch):
        for j in range(n):
            scale = gamma[j] / (n_batch * math.sqrt(var[j] + eps))
            dz[i, j] = scale * (n_batch * dy[i, j] - dbeta[j] - xhat[i, j] * dgamma[j])


def batchnorm_forward_reference(z, gamma, beta, eps=BN_EPS):
    """(y, xhat, mean, biased var) in float64 NumPy."""
    z = np.asarray(z, np.float64)
    mean, var = z.mean(axis=0), z.var(axis=0)
    xhat = (z - mean) / np.sqrt(var + eps)
    return gamma * xhat + beta, xhat, mean, var


def batchnorm_backward_reference(dy, xhat, gamma, var, eps=BN_EPS):
    """(dz, dgamma, dbeta) in float64 NumPy."""
    n = len(dy)
    dgamma, dbeta = (dy * xhat).sum(axis=0), dy.sum(axis=0)
    dz = gamma / (n * np.sqrt(var + eps)) * (n * dy - dbeta - xhat * dgamma)
    return dz, dgamma, dbeta
