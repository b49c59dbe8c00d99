"""The flat parameter layout and the preallocated workspaces the fused kernels run on.

All parameters of a network live in one contiguous vector. Layer l (0-based, mapping n_l inputs
to n_{l+1} outputs) owns one contiguous segment [seg_start[l], seg_start[l+1]) holding, in order,
W_l (n_{l+1} x n_l, row-major), b_l, and with batch norm gamma_l and beta_l. Gradients and
optimizer moments mirror the vector, so an update is one loop and global-norm clipping one
reduction. Per-unit workspaces (z, xhat, h, a, dz) are flat too: layer l's block starts at
capacity * unit_start[l].
"""
from collections import namedtuple

import numpy as np

# Everything the kernels need to know about an architecture (int64/float64 arrays and scalars).
NetSpec = namedtuple("NetSpec", ["sizes", "w_off", "b_off", "g_off", "beta_off", "seg_start",
                                 "unit_start", "act_code", "act_param", "bn", "loss", "bn_eps",
                                 "bn_momentum"])

# Batch buffers: x (cap*n_0), y (cap*n_L), per-unit blocks z, xhat, h, a, dz (cap*units),
# scratch da, dh (cap*max width), batch-norm batch mean/var (units), seg_sq (layers).
Workspace = namedtuple("Workspace", ["x", "y", "z", "xhat", "h", "a", "dz", "da", "dh",
                                     "bn_mean", "bn_var", "seg_sq", "cap"])

# Per-step records written by the training kernel: (steps,) and (steps, layers) arrays, and
# status = [non-finite flag, index of the step that produced it].
Record = namedtuple("Record", ["loss", "grad_norm", "grad_norm_clipped", "lr", "w_grad_norm",
                               "b_grad_norm", "delta_norm", "w_norm", "w_update_norm",
                               "status"])


def build_netspec(sizes, act_codes, act_params, batchnorm, loss_code, bn_eps, bn_momentum):
    """NetSpec and the parameter count for layer widths `sizes` (n_0, ..., n_L)."""
    n_layers = len(sizes) - 1
    w_off, b_off, g_off, beta_off = (np.full(n_layers, -1, np.int64) for _ in range(4))
    seg_start = np.zeros(n_layers + 1, np.int64)
    bn = np.zeros(n_layers, np.int64)
    pos = 0
    for layer in range(n_layers):
        n_in, n_out = sizes[layer], sizes[layer + 1]
        seg_start[layer] = pos
        w_off[layer] = pos
        pos += n_out * n_in
        b_off[layer] = pos
        pos += n_out
        if batchnorm and layer < n_layers - 1:
            bn[layer] = 1
            g_off[layer] = pos
            pos += n_out
            beta_off[layer] = pos
            pos += n_out
    seg_start[n_layers] = pos
    unit_start = np.zeros(n_layers + 1, np.int64)
    unit_start[1:] = np.cumsum(sizes[1:])
    spec = NetSpec(np.asarray(sizes, np.int64), w_off, b_off, g_off, beta_off, seg_start,
                   unit_start, np.asarray(act_codes, np.int64),
                   np.asarray(act_params, np.float64), bn, int(loss_code), float(bn_eps),
                   float(bn_momentum))
    return spec, int(pos)


def allocate_workspace(sizes, cap, dtype):
    """Zeroed buffers for batches of up to `cap` rows."""
    units = int(np.sum(sizes[1:]))
    widest = int(np.max(sizes))
    return Workspace(
        x=np.zeros(cap * sizes[0], dtype), y=np.zeros(cap * sizes[-1], dtype),
        z=np.zeros(cap * units, dtype), xhat=np.zeros(cap * units, dtype),
        h=np.zeros(cap * units, dtype), a=np.zeros(cap * units, dtype),
        dz=np.zeros(cap * units, dtype), da=np.zeros(cap * widest, dtype),
        dh=np.zeros(cap * widest, dtype), bn_mean=np.zeros(units, dtype),
        bn_var=np.zeros(units, dtype), seg_sq=np.zeros(len(sizes) - 1, np.float64), cap=int(cap))


def allocate_record(n_steps, n_layers):
    """Zeroed per-step records for `n_steps` steps."""
    per_step = [np.zeros(n_steps) for _ in range(4)]
    per_layer = [np.zeros((n_steps, n_layers)) for _ in range(5)]
    return Record(*per_step, *per_layer, status=np.zeros(2, np.int64))


def running_stats_buffer(sizes, dtype):
    """Running mean (zeros) then running variance (ones), one entry per unit."""
    units = int(np.sum(sizes[1:]))
    return np.concatenate([np.zeros(units, dtype), np.ones(units, dtype)])
