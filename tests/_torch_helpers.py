"""Shared helpers for the tests that compare gradlab with PyTorch: random batches and gradients.
The torch side of our networks is tests/_torch_twin.py; comparisons go through the one
tolerance rule, kernels.tolerance.assert_close."""
import numpy as np
import torch

# The tensors here are tiny: torch's intra-op threads only add wake-up latency (measured: 16 ms
# per float64 log_softmax with 2 threads, 0.05 ms with 1), so run torch single-threaded.
torch.set_num_threads(1)


def log_uniform_gradients(rng, n_steps, n, low=1e-4, high=1.0):
    """(n_steps, n) random gradients: random signs, magnitudes log-uniform in [low, high]."""
    mags = np.exp(rng.uniform(np.log(low), np.log(high), (n_steps, n)))
    return mags * rng.choice([-1.0, 1.0], (n_steps, n))


def random_batch(rng, net, n_rows):
    """x ~ N(0, 1) and targets: N(0, 1) regression targets or integer class labels."""
    x = rng.normal(size=(n_rows, net.sizes[0]))
    if net.loss_name == "cross_entropy":
        return x, rng.integers(0, net.sizes[-1], n_rows)
    return x, rng.normal(size=(n_rows, net.sizes[-1]))
