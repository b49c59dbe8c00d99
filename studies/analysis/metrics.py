"""Per-layer diagnostics: activation statistics from one forward pass, and tidy rows from the
fused kernel's per-step records (docs/diagnostics.md).

    stats = layer_statistics(net, x_eval)            # list of dicts, one per layer 1..L
    steps, layers = step_frames(history.steps)       # DataFrames (step, ...), (step, layer, ...)
    layers = merge_layer_rows(layers, [{"step": s, **d} for d in stats])

Columns of `layer_statistics` (always all present, in LAYER_COLUMNS order; NaN where a statistic
does not apply, so tables from different networks stack with stable columns):
- z_*: the affine output z = a_{l-1} W^T + b; h_*: the batch-norm output (the activation input)
  on layers with batch norm, NaN elsewhere (there the activation input IS z: read z_*);
  a_*: the activation output. * = mean, std, p15, p50, p85, p98 over all rows x units.
- unit0_p15/p50/p85: percentiles of unit 0's activation input over the rows (Ioffe & Szegedy
  2015, Fig. 1); saturated_fraction: entries with tanh |a| > TANH_SATURATION, sigmoid
  a < SIGMOID_LOW or a > SIGMOID_HIGH (Glorot & Bengio 2010); dead_fraction: units whose
  activation input is <= 0 on EVERY evaluation row (ReLU family: never in the positive regime).

Cost: one compiled forward pass over the rows plus, per layer, mean/std and the exact order
statistics of each buffer (z, h, a) by two histogram passes (kernels.order_stats), O(n) with
n = rows x units, instead of a sort (2-5x faster at 512 x 64 rows x units on every activation
distribution: `python scripts/measure_percentiles.py`).
It reuses the network's workspace (growing it to len(x) rows), so call it between steps.
"""
from collections.abc import Mapping

import numpy as np
import pandas as pd

from kernels import step as K
from kernels.activations import ACTIVATIONS, CODE_TO_NAME, RELU_LIKE
from kernels.order_stats import order_statistics
from kernels.training import LAYER_FIELDS, STEP_FIELDS
from kernels.validation import check_inputs

TANH_SATURATION = 0.97   # tanh saturated: |a| > 0.97 (tanh'(h) < 0.06)
SIGMOID_LOW = 0.03       # sigmoid saturated: a < 0.03 or a > 0.97 (sigma'(h) < 0.03)
SIGMOID_HIGH = 0.97
SATURATING = ("tanh", "sigmoid")
# units that can be "never active" (h <= 0 on every row): the relu-like family. Strictly dead
# (zero gradient on every row) only for ReLU: ACTIVATIONS[name].dead_capable.
DEAD_CAPABLE = tuple(n for n, a in ACTIVATIONS.items() if a.family == RELU_LIKE)

PERCENTILES = (15, 50, 85, 98)
STAT_SUFFIXES = ("mean", "std") + tuple(f"p{q}" for q in PERCENTILES)
UNIT0_PERCENTILES = (15, 50, 85)
LAYER_COLUMNS = (("layer",) + tuple(f"{b}_{s}" for b in ("z", "h", "a") for s in STAT_SUFFIXES)
                 + tuple(f"unit0_p{q}" for q in UNIT0_PERCENTILES)
                 + ("saturated_fraction", "dead_fraction")
                 + tuple(f"g_{s}" for s in STAT_SUFFIXES) + ("g_p2",))
STEP_COLUMNS = ("step",) + STEP_FIELDS
KERNEL_LAYER_COLUMNS = ("step", "layer", "w_grad_norm", "b_grad_norm", "delta_norm", "w_norm",
                        "update_ratio")


def _block(buf, work, net, layer, n_rows):
    """Layer `layer`'s (n_rows, width) view of a flat per-unit workspace buffer (no copy)."""
    start = work.cap * int(net.spec.unit_start[layer])
    width = net.sizes[layer + 1]
    return buf[start:start + n_rows * width].reshape(n_rows, width)


def _percentiles(values, qs):
    """np.percentile(values, qs) (linear interpolation) from the exact order statistics of
    kernels.order_stats (two histogram passes, no sort of the whole array); NaN if any NaN."""
    flat = np.ascontiguousarray(values).reshape(-1)
    n = flat.size
    positions = [q / 100.0 * (n - 1) for q in qs]
    ranks = sorted({int(p) for p in positions} | {min(int(p) + 1, n - 1) for p in positions})
    found = dict(zip(ranks, order_statistics(flat, np.array(ranks, np.int64))))
    out = []
    for pos in positions:
        lo = int(pos)
        t = pos - lo
        a, b = found[lo], found[min(lo + 1, n - 1)]
        out.append(a + (b - a) * t if t < 0.5 else b - (b - a) * (1.0 - t))
    return out


def _summary(values, prefix, out):
    """mean, std (float64 accumulation) and the PERCENTILES of all entries, into out."""
    if values is None:
        for s in STAT_SUFFIXES:
            out[f"{prefix}_{s}"] = np.nan
        return
    out[f"{prefix}_mean"] = float(values.mean(dtype=np.float64))
    out[f"{prefix}_std"] = float(values.std(dtype=np.float64))
    for q, v in zip(PERCENTILES, _percentiles(values, PERCENTILES)):
        out[f"{prefix}_p{q}"] = v


def saturated_fraction(a, activation):
    """Fraction of entries of a = f(h) in the flat tails (tanh, sigmoid); NaN for others."""
    if activation == "tanh":
        hits = np.count_nonzero(a > TANH_SATURATION) + np.count_nonzero(a < -TANH_SATURATION)
    elif activation == "sigmoid":
        hits = np.count_nonzero(a > SIGMOID_HIGH) + np.count_nonzero(a < SIGMOID_LOW)
    else:
        return np.nan
    return hits / a.size


def dead_fraction(h, activation):
    """Fraction of units (columns of h, the activation input) with h <= 0 on every row, for the
    ReLU family (max over rows <= 0: no (rows x units) temporary); NaN for other activations."""
    if activation not in DEAD_CAPABLE:
        return np.nan
    return float(np.count_nonzero(h.max(axis=0) <= 0)) / h.shape[1]


def layer_statistics(net, x, training=True, y=None):
    """One dict per layer l = 1..L (keys LAYER_COLUMNS) from ONE forward pass over the rows x.

    training=True: batch statistics in batch norm (what the network sees while it trains);
    False: running averages. Nothing is updated (parameters, running statistics).
    With targets y (and training=True) the pass also runs backward, and g_* summarize the
    back-propagated gradient per sample, g = B dL/dz_l = dl_i/dz_l (Glorot & Bengio's Fig. 7
    histograms; the 2nd percentile too, as the distribution is two-sided); else g_* are NaN."""
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
    rows = []
    with np.errstate(invalid="ignore", over="ignore"):
        for layer in range(net.n_layers):
            act = CODE_TO_NAME[int(net.spec.act_code[layer])]
            z = _block(work.z, work, net, layer, n)
            bn = bool(net.spec.bn[layer])
            h = _block(work.h, work, net, layer, n) if bn else z
            a = _block(work.a, work, net, layer, n)
            row = {"layer": layer + 1}
            _summary(z, "z", row)
            _summary(h if bn else None, "h", row)
            _summary(a, "a", row)
            for q, v in zip(UNIT0_PERCENTILES, _percentiles(h[:, 0], UNIT0_PERCENTILES)):
                row[f"unit0_p{q}"] = v
            row["saturated_fraction"] = saturated_fraction(a, act)
            row["dead_fraction"] = dead_fraction(h, act)
            g = _block(work.dz, work, net, layer, n) * n if backward else None
            _summary(g, "g", row)
            row["g_p2"] = _percentiles(g, (2,))[0] if backward else np.nan
            rows.append(row)
    return rows


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
