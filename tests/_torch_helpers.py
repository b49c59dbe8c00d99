"""Shared helpers for the tests that compare gradlab with PyTorch: one tolerance rule, and
torch twins of our networks built from our own weights.

The tolerance rule (DESIGN.md, style 5) is `|actual - ref| <= atol + rtol * |ref|`, per dtype;
a failure prints the worst mismatches. `WORST` keeps the worst relative error each named group
of comparisons has seen (read by whoever wants to report it; the tests never depend on it).
"""
import numpy as np
import torch

# The tensors here are tiny: torch's intra-op threads only add wake-up latency (measured: 16 ms
# per float64 log_softmax with 2 threads, 0.05 ms with 1), so run torch single-threaded.
torch.set_num_threads(1)

# (rtol, atol) per dtype for a handful of arithmetic operations on O(1) values.
TOL = {np.dtype(np.float64): (1e-12, 1e-14), np.dtype(np.float32): (2e-5, 1e-6)}

WORST = {}


def rel_error(actual, ref, atol=0.0, rtol=1.0):
    """Elementwise |actual - ref| / (|ref| + atol/rtol), in float64."""
    actual = np.asarray(actual, np.float64)
    ref = np.asarray(ref, np.float64)
    return np.abs(actual - ref) / (np.abs(ref) + atol / rtol)


def assert_close(actual, ref, rtol, atol, what="", group=None, show=5):
    """Asserts |actual - ref| <= atol + rtol |ref| elementwise (NaN fails), printing the worst
    `show` entries on failure; records the worst relative error under `group`."""
    actual = np.asarray(actual, np.float64)
    ref = np.asarray(ref, np.float64)
    assert actual.shape == ref.shape, f"{what}: shape {actual.shape} != reference {ref.shape}"
    err = np.abs(actual - ref)
    bound = atol + rtol * np.abs(ref)
    bad = ~(err <= bound)
    rel = rel_error(actual, ref, atol, rtol)
    worst_rel = float(np.nanmax(rel, initial=0.0)) if not np.isnan(rel).any() else np.inf
    if group is not None:
        WORST[group] = max(WORST.get(group, 0.0), worst_rel)
    if bad.any():
        flat_err = np.where(np.isnan(err), np.inf, err - bound).ravel()
        order = np.argsort(flat_err)[::-1][:show]
        lines = [f"{what}: {int(bad.sum())} of {bad.size} entries outside "
                 f"atol={atol:g} + rtol={rtol:g}*|ref|; worst:"]
        for i in order:
            idx = np.unravel_index(i, actual.shape) if actual.ndim else ()
            lines.append(f"  at {tuple(int(k) for k in idx)}: actual {actual.ravel()[i]!r} "
                         f"ref {ref.ravel()[i]!r} |diff| {err.ravel()[i]:.3e} "
                         f"bound {bound.ravel()[i]:.3e}")
        raise AssertionError("\n".join(lines))


def assert_close_dtype(actual, ref, dtype, what="", group=None, scale=1.0):
    """assert_close with the tolerance of `dtype` (optionally scaled for longer computations)."""
    rtol, atol = TOL[np.dtype(dtype)]
    assert_close(actual, ref, rtol * scale, atol * scale, what, group)


def log_uniform_gradients(rng, n_steps, n, low=1e-4, high=1.0):
    """(n_steps, n) random gradients: random signs, magnitudes log-uniform in [low, high]."""
    mags = np.exp(rng.uniform(np.log(low), np.log(high), (n_steps, n)))
    return mags * rng.choice([-1.0, 1.0], (n_steps, n))


# ------------------------------------------------------------------ torch twins of our networks

TORCH_ACTIVATIONS = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU, "sigmoid": torch.nn.Sigmoid,
                     "identity": torch.nn.Identity}


def torch_twin(net):
    """nn.Sequential of Linear + activation layers holding copies of net's float64 parameters.
    The output activation is left out: our MSE output is the identity, and torch's
    CrossEntropyLoss takes logits (softmax inside the loss)."""
    assert net.output_activation in ("identity", "softmax") and not net.batchnorm
    layers = []
    for layer in range(net.n_layers):
        n_in, n_out = net.sizes[layer], net.sizes[layer + 1]
        lin = torch.nn.Linear(n_in, n_out, dtype=torch.float64)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(np.array(net.weights[layer], np.float64)))
            lin.bias.copy_(torch.from_numpy(np.array(net.biases[layer], np.float64)))
        layers.append(lin)
        if layer < net.n_layers - 1:
            layers.append(TORCH_ACTIVATIONS[net.hidden_activations[layer]]())
    return torch.nn.Sequential(*layers)


def torch_linears(model):
    return [m for m in model if isinstance(m, torch.nn.Linear)]


def torch_flat_params(model):
    """The torch parameters in our flat layout: W_0 (row-major), b_0, W_1, b_1, ..."""
    parts = []
    for lin in torch_linears(model):
        parts += [lin.weight.detach().numpy().ravel(), lin.bias.detach().numpy().ravel()]
    return np.concatenate(parts)


def torch_flat_grads(model):
    parts = []
    for lin in torch_linears(model):
        parts += [lin.weight.grad.numpy().ravel(), lin.bias.grad.numpy().ravel()]
    return np.concatenate(parts)


def torch_loss(name, out, y):
    """Our losses in torch: MSE summed over outputs and averaged over the batch
    (= MSELoss(reduction='sum') / batch); cross-entropy = CrossEntropyLoss (mean) on logits."""
    if name == "mse":
        return torch.nn.functional.mse_loss(out, y, reduction="sum") / out.shape[0]
    return torch.nn.functional.cross_entropy(out, y)


def torch_forward_backward(model, loss_name, x, y):
    """Zeroes grads, runs forward + backward on (x, y); returns the loss as a float."""
    model.zero_grad(set_to_none=False)
    xt = torch.from_numpy(np.asarray(x, np.float64))
    yt = torch.from_numpy(np.asarray(y, np.int64 if loss_name == "cross_entropy" else np.float64))
    loss = torch_loss(loss_name, model(xt), yt)
    loss.backward()
    return float(loss.detach())


def random_batch(rng, net, n_rows):
    """x ~ N(0, 1) and targets: N(0, 1) regression targets or integer class labels."""
    x = rng.normal(size=(n_rows, net.sizes[0]))
    if net.loss_name == "cross_entropy":
        return x, rng.integers(0, net.sizes[-1], n_rows)
    return x, rng.normal(size=(n_rows, net.sizes[-1]))
