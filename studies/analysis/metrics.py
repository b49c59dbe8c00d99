"""Per-layer diagnostics: activation statistics from one forward pass, and tidy rows from the
fused kernel's per-step records (docs/diagnostics.md).

    active = new_active(net)
    out = evaluation_outputs(net, x_train, logits=True, active=active)  # whole training set
    out = checked_evaluation_outputs(net, checked_x, logits=True)  # rows check_inputs returned
    cols = layer_columns(net, x_eval, active=active)   # {column: array over layers 1..L}
    cols = workspace_layer_columns(net, len(x_eval), active=active)  # from the pass just run
    stats = layer_statistics(net, x_eval)            # list of dicts, one per layer 1..L
    steps, layers = step_frames(history.steps)       # DataFrames (step, ...), (step, layer, ...)
    layers = merge_layer_rows(layers, [{"step": s, **d} for d in stats])

Columns of `layer_columns` (always all present, in LAYER_COLUMNS order; NaN where a statistic
does not apply, so tables from different networks stack with stable columns):
- z_*: the affine output z = a_{l-1} W^T + b; h_*: the batch-norm output (the activation input)
  on layers with batch norm, NaN elsewhere (there the activation input IS z: read z_*);
  a_*: the activation output. * = mean, std, p15, p50, p85, p98 over all rows x units.
- unit0_p15/p50/p85: percentiles of unit 0's activation input over the rows (Ioffe & Szegedy
  2015, Fig. 1); saturated_fraction: entries with tanh |a| > TANH_SATURATION, sigmoid
  a < SIGMOID_LOW or a > SIGMOID_HIGH (Glorot & Bengio 2010).
- dead_fraction: units whose activation input is <= 0 on EVERY row (of the whole training set
  when `active` comes from evaluation_outputs over it, else of the rows x), for dead-capable
  activations only (ReLU: zero gradient on every row); NaN elsewhere. inactive_fraction: the
  same share for the whole relu-like family (never in the positive regime, dead or not).

Cost: the compiled kernels of kernels.layer_stats: one forward pass over the rows, then per
layer mean/std (NumPy's pairwise sums, bit for bit) and the exact order statistics of each
buffer (z, h, a) by radix selection (kernels.order_stats), O(n) with n = rows x units, with no
Python per layer; the evaluation pass marks the active units as it goes (no second pass).
They reuse the network's workspace (growing it), so call them between steps.
"""
from collections.abc import Mapping

import numpy as np

from kernels import step as K
from kernels.activations import ACTIVATIONS, CODE_TO_NAME, RELU_FAMILY
from kernels.layer_stats import PERCENTILES, SIGMOID_HIGH, SIGMOID_LOW, STAT_SUFFIXES, \
    SUMMARY_COLUMNS, TANH_SATURATION, UNIT0_PERCENTILES, evaluation_rows, \
    layer_summaries, output_scores  # noqa: F401 (thresholds and percentiles re-exported)
from kernels.training import LAYER_FIELDS, STEP_FIELDS
from kernels.validation import check_inputs

SATURATING = ("tanh", "sigmoid")
# dead: f' = 0 on every row (ACTIVATIONS[name].dead_capable: ReLU only); inactive: h <= 0 on
# every row, the whole relu-like family (Leaky ReLU, ELU, GELU keep a gradient there).
DEAD_CAPABLE = tuple(n for n, a in ACTIVATIONS.items() if a.dead_capable)
INACTIVE_CAPABLE = tuple(n for n in ACTIVATIONS if n in RELU_FAMILY)
LAYER_COLUMNS = (("layer",) + SUMMARY_COLUMNS[:SUMMARY_COLUMNS.index("saturated_fraction") + 1]
                 + ("dead_fraction", "inactive_fraction")
                 + SUMMARY_COLUMNS[SUMMARY_COLUMNS.index("saturated_fraction") + 1:])
STEP_COLUMNS = ("step",) + STEP_FIELDS
EVALUATION_CHUNK = 4096  # rows per evaluation pass (the last chunk stays in the workspace)
KERNEL_LAYER_COLUMNS = ("step", "layer", "w_grad_norm", "b_grad_norm", "delta_norm", "w_norm",
                        "update_ratio")


def _unit_fractions(net, active):
    """(dead_fraction, inactive_fraction) per layer from `active` (per unit: activation input
    > 0 or NaN on some row): the share of units never active, for dead-capable (ReLU) and
    relu-like layers respectively; NaN elsewhere."""
    dead = np.full(net.n_layers, np.nan)
    inactive = np.full(net.n_layers, np.nan)
    for layer in range(net.n_layers):
        name = CODE_TO_NAME[int(net.spec.act_code[layer])]
        if name not in INACTIVE_CAPABLE:
            continue
        u, width = int(net.spec.unit_start[layer]), net.sizes[layer + 1]
        share = float(np.count_nonzero(~active[u:u + width])) / width
        inactive[layer] = share
        if name in DEAD_CAPABLE:
            dead[layer] = share
    return dead, inactive


def new_active(net):
    """A per-unit flag buffer for evaluation_outputs / layer_columns (all False)."""
    return np.zeros(int(net.spec.unit_start[-1]), np.bool_)


def evaluation_outputs(net, x, logits, active=None):
    """Evaluation-mode outputs of every row of x (kernel form; logits: the output layer's
    activation input), as float64, in chunks of EVALUATION_CHUNK rows (as MLP.forward); `active`
    (new_active) is ORed with each unit's 'activation input > 0 on some row'."""
    return checked_evaluation_outputs(net, check_inputs(x, net.sizes[0], net.dtype), logits,
                                      active)


def checked_evaluation_outputs(net, x, logits, active=None):
    """evaluation_outputs of rows x that kernels.validation.check_inputs already returned
    (C-contiguous, the network's dtype, finite), for callers that evaluate the same rows at
    every metric step."""
    work = net.workspace(min(len(x), EVALUATION_CHUNK))
    out = np.empty((len(x), net.sizes[-1]), net.dtype)
    flags = new_active(net) if active is None else active
    for lo in range(0, len(x), EVALUATION_CHUNK):  # the same chunks whatever the capacity
        hi = lo + EVALUATION_CHUNK
        evaluation_rows(net.spec, net.params, net.running, work, x[lo:hi], out[lo:hi],
                        bool(logits), flags)
    return out.astype(np.float64)


def layer_columns(net, x, training=True, y=None, active=None):
    """{column: array over layers 1..L} (LAYER_COLUMNS) from ONE forward pass over the rows x;
    see layer_statistics. dead_fraction / inactive_fraction come from `active` (per-unit flags
    of a pass over the whole training set, evaluation_outputs) when given, else from the rows
    x of this pass."""
    x = check_inputs(x, net.sizes[0], net.dtype)
    n = len(x)
    if training and net.batchnorm and n < 2:
        raise ValueError("x: batch norm in training mode needs at least 2 rows, got 1")
    work = net.workspace(n)
    work.x[:x.size] = x.ravel()
    backward = y is not None and training
    if backward:
        _, y = net.check_batch(x, y)
        work.y[:y.size] = y.ravel()
        K.gradients(net.spec, (net.params, net.grads, net.running), work, n, net._step_record)
    else:
        K.forward_batch(net.spec, net.params, net.running, work, n, bool(training))
    return workspace_layer_columns(net, n, backward, active)


def workspace_layer_columns(net, n, backward=False, active=None):
    """layer_columns of the first n rows that the last forward pass (and backward, with
    `backward`) left in the network's workspace: without batch norm an evaluation pass over
    rows that begin with these n (evaluation_outputs over at most the workspace's capacity)
    leaves what a training-mode pass over them would, so no second pass is needed."""
    work = net.workspace(n)
    table = np.empty((net.n_layers, len(SUMMARY_COLUMNS)), np.float64)
    layer_summaries(net.spec, work, n, backward, table)
    if active is None:
        active = new_active(net)
        K.active_units(net.spec, work, n, active)
    dead, inactive = _unit_fractions(net, active)
    out = {"layer": np.arange(1, net.n_layers + 1, dtype=np.int64)}
    out.update({c: table[:, k] for k, c in enumerate(SUMMARY_COLUMNS)})
    out["dead_fraction"], out["inactive_fraction"] = dead, inactive
    return {c: out[c] for c in LAYER_COLUMNS}


def layer_statistics(net, x, training=True, y=None, active=None):
    """One dict per layer l = 1..L (keys LAYER_COLUMNS) from ONE forward pass over the rows x.

    training=True: batch statistics in batch norm (what the network sees while it trains);
    False: running averages. Nothing is updated (parameters, running statistics).
    With targets y (and training=True) the pass also runs backward, and g_* summarize the
    back-propagated gradient per sample, g = B dL/dz_l = dl_i/dz_l (Glorot & Bengio's Fig. 7
    histograms; the 2nd percentile too, as the distribution is two-sided); else g_* are NaN."""
    cols = layer_columns(net, x, training, y, active)
    return [{c: (int(v[i]) if c == "layer" else float(v[i])) for c, v in cols.items()}
            for i in range(net.n_layers)]


def _field(records, name, n_steps):
    values = records[name] if isinstance(records, Mapping) else getattr(records, name)
    values = np.asarray(values, np.float64)
    return values if n_steps is None else values[:n_steps]


def step_frames(records, step_offset=0, n_steps=None):
    """(per-step DataFrame, per-layer DataFrame) from kernel records: a `History.steps` dict or
    a `kernels.layout.Record` (first n_steps rows; all when None). Record row i is step
    step_offset + i (step 0: the gradient at initialization, before any update).

    Per step: STEP_COLUMNS; per layer (layer = 1..L): KERNEL_LAYER_COLUMNS, where
    update_ratio = ||Delta W|| / ||W|| (||W|| before the update; healthy near 1e-3; NaN/inf
    where ||W|| = 0)."""
    import pandas as pd
    loss = _field(records, "loss", n_steps)
    steps = np.arange(step_offset, step_offset + len(loss), dtype=np.int64)
    per_step = pd.DataFrame({"step": steps, **{f: _field(records, f, n_steps)
                                               for f in STEP_FIELDS}})
    per_layer = {f: _field(records, f, n_steps) for f in LAYER_FIELDS}
    n_layers = per_layer["w_norm"].shape[1] if per_layer["w_norm"].ndim == 2 else 0
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = per_layer["w_update_norm"] / per_layer["w_norm"]
    layers = pd.DataFrame({
        "step": np.repeat(steps, n_layers),
        "layer": np.tile(np.arange(1, n_layers + 1, dtype=np.int64), len(steps)),
        **{f: per_layer[f].reshape(-1) for f in KERNEL_LAYER_COLUMNS[2:6]},
        "update_ratio": ratio.reshape(-1)})
    return per_step, layers


def step_records(records, step_offset=0, n_steps=None):
    """step_frames as two lists of dicts (tidy rows: one per step; one per (step, layer))."""
    per_step, layers = step_frames(records, step_offset, n_steps)
    return per_step.to_dict("records"), layers.to_dict("records")


def merge_layer_rows(kernel_layers, metric_layers):
    """Outer merge on (step, layer) of kernel rows (step_frames) and metric rows (dicts of
    layer_statistics with a "step" key, or a DataFrame): metric columns are NaN at steps
    without metrics, kernel columns NaN at metric-only steps. Sorted by (step, layer)."""
    import pandas as pd
    metrics = pd.DataFrame(list(metric_layers)) if not isinstance(metric_layers, pd.DataFrame) \
        else metric_layers
    kernel = pd.DataFrame(kernel_layers) if not isinstance(kernel_layers, pd.DataFrame) \
        else kernel_layers
    if metrics.empty:
        return kernel.sort_values(["step", "layer"], ignore_index=True)
    if kernel.empty:
        return metrics.sort_values(["step", "layer"], ignore_index=True)
    merged = kernel.merge(metrics, on=["step", "layer"], how="outer")
    return merged.sort_values(["step", "layer"], ignore_index=True)
