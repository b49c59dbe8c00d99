"""The flat parameter layout and the preallocated workspaces the fused kernels run on.

All parameters of a network live in one contiguous vector. Layer l (0-based, mapping n_l inputs
to n_{l+1} outputs) owns one contiguous segment [seg_start[l], seg_start[l+1]) holding, in order,
W_l (n_{l+1} x n_l, row-major), b_l, and with batch norm gamma_l and beta_l. Gradients and
optimizer moments mirror the vector, so an update is one loop and global-norm clipping one
reduction. Per-unit workspaces (z, xhat, h, a, dz) are flat too: layer l's block starts at
capacity * unit_start[l].

Packing: the arrays of a NetSpec, a Workspace and a Record are views of one buffer each, so a
compiled entry point receives three buffers and rebuilds the named views inside (`unpack_*`)
instead of unboxing ~30 arrays at ~0.2 us each on every call.
"""
from collections import namedtuple

import numpy as np

from ._jit import kernel

# Everything the kernels need to know about an architecture (int64/float64 arrays and scalars).
NetSpec = namedtuple("NetSpec", ["sizes", "w_off", "b_off", "g_off", "beta_off", "seg_start",
                                 "unit_start", "act_code", "act_param", "bn", "loss", "bn_eps",
                                 "bn_momentum"])
# The int64 fields of a NetSpec in their order in the packed buffer; the first, sixth and
# seventh hold n_layers + 1 entries, the others n_layers.
SPEC_INT_FIELDS = ("sizes", "w_off", "b_off", "g_off", "beta_off", "seg_start", "unit_start",
                   "act_code", "bn")
SPEC_PLUS_ONE = ("sizes", "seg_start", "unit_start")

# Batch buffers: x (cap*n_0), y (cap*n_L), per-unit blocks z, xhat, h, a, dz (cap*units),
# scratch da, dh (cap*max width), batch-norm batch mean/var (units), seg_sq (layers).
Workspace = namedtuple("Workspace", ["x", "y", "z", "xhat", "h", "a", "dz", "da", "dh",
                                     "bn_mean", "bn_var", "seg_sq", "cap"])
WORK_FIELDS = Workspace._fields[:11]  # views of one buffer of the network's dtype

# Per-step records written by the training kernel: (steps,) and (steps, layers) arrays, and
# status = [cause of divergence (0: none), index of the step that produced it].
Record = namedtuple("Record", ["loss", "grad_norm", "grad_norm_clipped", "lr", "w_grad_norm",
                               "b_grad_norm", "delta_norm", "w_norm", "w_update_norm",
                               "status"])
N_STEP_FIELDS, N_LAYER_FIELDS = 4, 5
# status[0]: why a step was not applied
DIVERGED_LOSS, DIVERGED_GRADIENT, DIVERGED_UPDATE = 1, 2, 3
DIVERGENCE_CAUSES = {DIVERGED_LOSS: "non-finite loss", DIVERGED_GRADIENT: "non-finite gradient",
                     DIVERGED_UPDATE: "non-finite update (finite loss and gradient)"}


def divergence_cause(status):
    """What a Record's status[0] code says stopped the step ("non-finite step" for a code
    without a name)."""
    return DIVERGENCE_CAUSES.get(int(status), "non-finite step")


def build_netspec(sizes, act_codes, act_params, batchnorm, loss_code, bn_eps, bn_momentum):
    """NetSpec and the parameter count for layer widths `sizes` (n_0, ..., n_L)."""
    n_layers = len(sizes) - 1
    ints = np.zeros(len(SPEC_INT_FIELDS) * n_layers + len(SPEC_PLUS_ONE), np.int64)
    views, pos = {}, 0
    for name in SPEC_INT_FIELDS:
        n = n_layers + (name in SPEC_PLUS_ONE)
        views[name] = ints[pos:pos + n]
        pos += n
    views["sizes"][:] = sizes
    for name in ("w_off", "b_off", "g_off", "beta_off"):
        views[name][:] = -1
    pos = 0
    for layer in range(n_layers):
        n_in, n_out = sizes[layer], sizes[layer + 1]
        views["seg_start"][layer] = pos
        views["w_off"][layer] = pos
        pos += n_out * n_in
        views["b_off"][layer] = pos
        pos += n_out
        if batchnorm and layer < n_layers - 1:
            views["bn"][layer] = 1
            views["g_off"][layer] = pos
            pos += n_out
            views["beta_off"][layer] = pos
            pos += n_out
    views["seg_start"][n_layers] = pos
    views["unit_start"][1:] = np.cumsum(sizes[1:])
    views["act_code"][:] = act_codes
    spec = NetSpec(act_param=np.asarray(act_params, np.float64), loss=int(loss_code),
                   bn_eps=float(bn_eps), bn_momentum=float(bn_momentum), **views)
    return spec, int(pos)


def pack_netspec(spec):
    """The arguments `unpack_netspec` rebuilds `spec` from (for build_netspec's specs)."""
    return spec.sizes.base, spec.act_param, spec.loss, spec.bn_eps, spec.bn_momentum


@kernel
def unpack_netspec(packed):
    """The NetSpec of views into the packed int64 buffer (the layout of build_netspec)."""
    ints, act_param, loss, bn_eps, bn_momentum = packed
    n = act_param.shape[0]
    return NetSpec(ints[0:n + 1], ints[n + 1:2 * n + 1], ints[2 * n + 1:3 * n + 1],
                   ints[3 * n + 1:4 * n + 1], ints[4 * n + 1:5 * n + 1], ints[5 * n + 1:6 * n + 2],
                   ints[6 * n + 2:7 * n + 3], ints[7 * n + 3:8 * n + 3], act_param,
                   ints[8 * n + 3:9 * n + 3], loss, bn_eps, bn_momentum)


def workspace_bounds(sizes, cap):
    """Start offsets of the WORK_FIELDS in the workspace buffer, and its total length last."""
    units = int(np.sum(sizes[1:]))
    widest = int(np.max(sizes))
    lengths = [cap * sizes[0], cap * sizes[-1]] + [cap * units] * 5 + [cap * widest] * 2 + \
        [units] * 2
    return np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)


def allocate_workspace(sizes, cap, dtype):
    """Zeroed buffers for batches of up to `cap` rows (views of one buffer)."""
    bounds = workspace_bounds(sizes, int(cap))
    buf = np.zeros(int(bounds[-1]), dtype)
    views = [buf[bounds[i]:bounds[i + 1]] for i in range(len(WORK_FIELDS))]
    return Workspace(*views, seg_sq=np.zeros(len(sizes) - 1, np.float64), cap=int(cap))


def pack_workspace(work):
    """The arguments `unpack_workspace` rebuilds `work` from (for allocate_workspace's)."""
    views = work[:len(WORK_FIELDS)]
    bounds = np.cumsum([0] + [v.size for v in views]).astype(np.int64)
    buf = work.x.base
    if buf is None or buf.size != bounds[-1] or any(v.base is not buf for v in views):
        raise ValueError("workspace: expected the views of one buffer (allocate_workspace)")
    return buf, work.seg_sq, bounds, work.cap


@kernel
def unpack_workspace(packed):
    """The Workspace of views into the buffer at the given bounds."""
    buf, seg_sq, b, cap = packed
    return Workspace(buf[b[0]:b[1]], buf[b[1]:b[2]], buf[b[2]:b[3]], buf[b[3]:b[4]],
                     buf[b[4]:b[5]], buf[b[5]:b[6]], buf[b[6]:b[7]], buf[b[7]:b[8]],
                     buf[b[8]:b[9]], buf[b[9]:b[10]], buf[b[10]:b[11]], seg_sq, cap)


def record_length(n_steps, n_layers):
    return n_steps * (N_STEP_FIELDS + N_LAYER_FIELDS * n_layers)


def allocate_record(n_steps, n_layers):
    """Zeroed per-step records for `n_steps` steps (views of one float64 buffer)."""
    return record_views(np.zeros(record_length(n_steps, n_layers)), np.zeros(2, np.int64),
                        n_steps, n_layers)


def record_views(buf, status, n_steps, n_layers):
    """The Record of views into a float64 buffer of record_length(n_steps, n_layers)."""
    per_step = [buf[i * n_steps:(i + 1) * n_steps] for i in range(N_STEP_FIELDS)]
    start, block = N_STEP_FIELDS * n_steps, n_steps * n_layers
    per_layer = [buf[start + i * block:start + (i + 1) * block].reshape(n_steps, n_layers)
                 for i in range(N_LAYER_FIELDS)]
    return Record(*per_step, *per_layer, status=status)


def pack_record(rec):
    """(buffer, status, n_layers) for `unpack_record`, or None when rec is not one buffer's
    views (a Record built by hand)."""
    buf = rec.loss.base
    n_steps, n_layers = rec.w_grad_norm.shape
    if buf is None or rec.w_update_norm.base is not buf or \
            buf.size != record_length(n_steps, n_layers):
        return None
    return buf, rec.status, n_layers


@kernel
def unpack_record(packed):
    """The Record of views into a packed float64 buffer (the layout of record_views)."""
    buf, status, n_layers = packed
    n = buf.shape[0] // (N_STEP_FIELDS + N_LAYER_FIELDS * n_layers)
    s, block = N_STEP_FIELDS * n, n * n_layers
    return Record(buf[0:n], buf[n:2 * n], buf[2 * n:3 * n], buf[3 * n:s],
                  buf[s:s + block].reshape(n, n_layers),
                  buf[s + block:s + 2 * block].reshape(n, n_layers),
                  buf[s + 2 * block:s + 3 * block].reshape(n, n_layers),
                  buf[s + 3 * block:s + 4 * block].reshape(n, n_layers),
                  buf[s + 4 * block:s + 5 * block].reshape(n, n_layers), status)


def running_stats_buffer(sizes, dtype):
    """Running mean (zeros) then running variance (ones), one entry per unit."""
    units = int(np.sum(sizes[1:]))
    return np.concatenate([np.zeros(units, dtype), np.ones(units, dtype)])
