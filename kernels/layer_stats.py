"""Per-layer activation statistics and the evaluation pass of a run's metric step, compiled.

`layer_summaries(net, work, n, backward, out)` fills out[l] (one float64 row per layer l) with
the columns of SUMMARY_COLUMNS from the buffers a forward (and backward) pass left in the
workspace, for the first n rows:
- for z (affine output), h (batch-norm output, NaN columns without batch norm), a (activation
  output) and g = n dl/dz (with `backward`, else NaN): mean and std over all rows x units, in
  float64 summed as NumPy sums (`np.mean(v, dtype=float64)`, `np.std`: kernels.pairwise_sum),
  and the exact percentiles
  PERCENTILES (linear interpolation between order statistics, kernels.order_stats; g also its
  2nd percentile); the order statistics of a non-decreasing activation's output are f of
  those of its input, proved by counting instead of selected again;
- unit0_p15/p50/p85: percentiles of unit 0's activation input over the rows;
- saturated: entries in the flat tails (tanh |a| > TANH_SATURATION; sigmoid a < SIGMOID_LOW or
  a > SIGMOID_HIGH; thresholds in the buffer's dtype), NaN for other activations.
`active_units(...)` (kernels.step) marks the units whose activation input is > 0 (or NaN) on
some row.

`evaluation_rows(net, params, running, work, x, out, logits, active)` is the evaluation-mode
forward pass of every row of x in chunks of the workspace capacity (as step.predict_rows: out
= the network output, or the output layer's activation input with `logits`), that also ORs
into active[u] whether unit u's activation input was > 0 (or NaN) on any row, so units never
active over a whole split cost no second pass.

References: `layer_summaries_reference`, `evaluation_rows_reference` (NumPy).
"""
import numpy as np

from ._jit import kernel, kernel_exact_order, kernel_inline
from .activations import ACTIVATIONS, SIGMOID, TANH, activation_forward
from . import vecmath as V
from .order_stats import order_statistics, proved_order_statistics
from .pairwise_sum import moments_into
from .step import _pre_activation, predict_rows

TANH_SATURATION = 0.97   # tanh saturated: |a| > 0.97 (tanh'(h) < 0.06)
SIGMOID_LOW = 0.03       # sigmoid saturated: a < 0.03 or a > 0.97 (sigma'(h) < 0.03)
SIGMOID_HIGH = 0.97
PERCENTILES = (15.0, 50.0, 85.0, 98.0)
UNIT0_PERCENTILES = (15.0, 50.0, 85.0)
GRADIENT_LOW = 2.0       # g also gets its 2nd percentile (a two-sided distribution)
STAT_SUFFIXES = ("mean", "std") + tuple(f"p{int(q)}" for q in PERCENTILES)
SUMMARY_COLUMNS = (tuple(f"{b}_{s}" for b in ("z", "h", "a") for s in STAT_SUFFIXES)
                   + tuple(f"unit0_p{int(q)}" for q in UNIT0_PERCENTILES)
                   + ("saturated_fraction",) + tuple(f"g_{s}" for s in STAT_SUFFIXES)
                   + ("g_p2",))
N_STATS = len(STAT_SUFFIXES)
UNIT0_AT = 3 * N_STATS
SATURATED_AT = UNIT0_AT + len(UNIT0_PERCENTILES)
GRADIENT_AT = SATURATED_AT + 1
assert SUMMARY_COLUMNS[GRADIENT_AT + 2 + len(PERCENTILES)] == "g_p2"
NON_DECREASING = np.array([a.code for a in ACTIVATIONS.values() if a.non_decreasing], np.int64)


@kernel_exact_order
def _percentile_ranks(n, qs):
    """The order statistics np.percentile interpolates between: floor(q/100 (n-1)) and the
    next one, for each q of qs."""
    ranks = np.empty(2 * qs.shape[0], np.int64)
    for k in range(qs.shape[0]):
        lo = int(qs[k] / 100.0 * (n - 1))
        ranks[2 * k] = lo
        ranks[2 * k + 1] = min(lo + 1, n - 1)
    return ranks


@kernel_exact_order
def _interpolate_into(found, qs, n, out, at):
    """out[at + k] = np.percentile (linear) from the order statistics of _percentile_ranks,
    written as metrics computed it: a + (b - a) t for t < 0.5, else b - (b - a)(1 - t)."""
    for k in range(qs.shape[0]):
        pos = qs[k] / 100.0 * (n - 1)
        t = pos - int(pos)
        a, b = found[2 * k], found[2 * k + 1]
        out[at + k] = a + (b - a) * t if t < 0.5 else b - (b - a) * (1.0 - t)


@kernel_exact_order
def _percentiles_into(values, qs, out, at):
    """out[at + k] = np.percentile(values, qs[k]) (linear) from exact order statistics;
    returns those order statistics."""
    n = values.shape[0]
    found = order_statistics(values, _percentile_ranks(n, qs))
    _interpolate_into(found, qs, n, out, at)
    return found


@kernel_exact_order
def _summary_into(values, out, at):
    """mean, std and PERCENTILES of the entries of values into out[at:at + N_STATS]; returns
    the order statistics the percentiles came from."""
    moments_into(values, out, at)
    return _percentiles_into(values, np.array(PERCENTILES), out, at + 2)


@kernel_exact_order
def _image_summary_into(values, pre_found, code, param, out, at):
    """_summary_into of values = f(pre) (the output of a non-decreasing activation f) given
    pre_found, the order statistics of pre that _summary_into(pre) returned: f of those are the
    order statistics of values, proved by counting (order_stats.proved_order_statistics), the
    same bits as selecting them."""
    moments_into(values, out, at)
    n = values.shape[0]
    qs = np.array(PERCENTILES)
    guess = np.empty(pre_found.shape[0], values.dtype)
    activation_forward(guess, pre_found.astype(values.dtype), code, param)
    found = proved_order_statistics(values, guess.astype(np.float64), _percentile_ranks(n, qs))
    _interpolate_into(found, qs, n, out, at + 2)


@kernel
def _saturated(a, code):
    """Fraction of entries of a in the flat tails of tanh / sigmoid; NaN for others."""
    hits = 0
    if code == TANH:
        high, low = a.dtype.type(TANH_SATURATION), a.dtype.type(-TANH_SATURATION)
    elif code == SIGMOID:
        high, low = a.dtype.type(SIGMOID_HIGH), a.dtype.type(SIGMOID_LOW)
    else:
        return np.nan
    for i in range(a.shape[0]):
        if a[i] > high or a[i] < low:
            hits += 1
    return hits / a.shape[0]


@kernel
def _flat(buf, net, work, layer, n):
    start = work.cap * net.unit_start[layer]
    return buf[start:start + n * net.sizes[layer + 1]]


@kernel_inline
def _non_decreasing(code):
    """Whether activation `code` is flagged non_decreasing in the registry
    (proved_order_statistics checks each answer anyway)."""
    for c in NON_DECREASING:
        if c == code:
            return True
    return False


@kernel
def layer_summaries(net, work, n, backward, out):
    """out[l, :] = the SUMMARY_COLUMNS of layer l over the first n rows of the workspace."""
    out[:] = np.nan
    for layer in range(net.sizes.shape[0] - 1):
        row = out[layer]
        pre = _flat(work.z, net, work, layer, n)
        pre_found = _summary_into(pre, row, 0)
        if net.bn[layer]:
            pre = _flat(work.h, net, work, layer, n)
            pre_found = _summary_into(pre, row, N_STATS)
        a = _flat(work.a, net, work, layer, n)
        if _non_decreasing(net.act_code[layer]):
            _image_summary_into(a, pre_found, net.act_code[layer], net.act_param[layer],
                                row, 2 * N_STATS)
        else:
            _summary_into(a, row, 2 * N_STATS)
        h = _pre_activation(net, work, layer, n)
        unit0 = np.empty(n, h.dtype)
        for r in range(n):
            unit0[r] = h[r, 0]
        _percentiles_into(unit0, np.array(UNIT0_PERCENTILES), row, UNIT0_AT)
        row[SATURATED_AT] = _saturated(a, net.act_code[layer])
        if backward:  # g = n dl/dz in the buffer's dtype: the per-sample gradient
            g = _flat(work.dz, net, work, layer, n) * work.dz.dtype.type(n)
            moments_into(g, row, GRADIENT_AT)  # then p15..p98 and g_p2 in one selection
            _percentiles_into(g, np.array(PERCENTILES + (GRADIENT_LOW,)), row, GRADIENT_AT + 2)


@kernel
def evaluation_rows(net, params, running, work, x, out, logits, active):
    """Evaluation-mode forward pass of all rows of x (step.predict_rows, training off); out =
    network output (logits: the output layer's activation input); active as in active_units
    over every row."""
    predict_rows(net, params, running, work, x, out, False, logits, active)


def _percentiles_reference(values, qs):
    flat = np.asarray(values, np.float64).ravel()
    return [float(np.percentile(flat, q)) if not np.isnan(flat).any() else np.nan for q in qs]


def layer_summaries_reference(z, h, a, g, activation):
    """One layer's SUMMARY_COLUMNS by NumPy (z, a, h or None, g or None: (n, width) arrays;
    g already n dl/dz), as a dict."""
    out = {}
    for prefix, v in (("z", z), ("h", h), ("a", a), ("g", g)):
        for k, s in enumerate(STAT_SUFFIXES):
            out[f"{prefix}_{s}"] = np.nan
        if v is None:
            continue
        out[f"{prefix}_mean"] = float(np.mean(v, dtype=np.float64))
        out[f"{prefix}_std"] = float(np.std(v, dtype=np.float64))
        for q, p in zip(PERCENTILES, _percentiles_reference(v, PERCENTILES)):
            out[f"{prefix}_p{int(q)}"] = p
    out["g_p2"] = _percentiles_reference(g, (GRADIENT_LOW,))[0] if g is not None else np.nan
    pre = h if h is not None else z
    for q, p in zip(UNIT0_PERCENTILES, _percentiles_reference(pre[:, 0], UNIT0_PERCENTILES)):
        out[f"unit0_p{int(q)}"] = p
    if activation == "tanh":
        sat = np.count_nonzero(np.abs(a) > a.dtype.type(TANH_SATURATION)) / a.size
    elif activation == "sigmoid":
        sat = (np.count_nonzero(a > a.dtype.type(SIGMOID_HIGH))
               + np.count_nonzero(a < a.dtype.type(SIGMOID_LOW))) / a.size
    else:
        sat = np.nan
    out["saturated_fraction"] = sat
    return out


def evaluation_rows_reference(pre_activations):
    """active per unit (concatenated over layers) from each layer's (rows, width) activation
    input: some row > 0 or NaN."""
    return np.concatenate([~np.all(np.asarray(h) <= 0, axis=0) for h in pre_activations])


def output_scores(out, targets, classification):
    """(loss, accuracy) of a network's float64 output rows against float64 targets (one-hot
    for classes): MSE sum_j (out - t)^2 / N and accuracy None; or, from the logits z,
    cross-entropy through a float64 log-sum-exp (exact however confident and wrong) and the
    argmax accuracy (cross_entropy_scores)."""
    if not classification:
        return float(((out - targets) ** 2).sum() / len(out)), None
    loss, hits = cross_entropy_scores(out, targets)
    return float(loss), hits / len(out)


@kernel_exact_order
def cross_entropy_scores(z, targets):
    """(mean over rows of sum_k t_k (lse - z_k), rows whose first largest logit is the first
    largest target) of float64 logits z and targets, lse = m + log sum_k exp(z_k - m) with m the
    row's largest logit (exp: vecmath's, within 2 ulp, in one vector pass; a NaN logit counts as
    the largest, as in np.argmax). Rows are summed in order."""
    n, width = z.shape
    shifted = np.empty(n * width, np.float64)
    top = np.empty(n, np.float64)
    hits = 0
    for i in range(n):
        m, best = z[i, 0], 0
        label, most = 0, targets[i, 0]
        for k in range(1, width):
            if z[i, k] > m or (z[i, k] != z[i, k] and m == m):  # NaN first, as np.argmax
                m, best = z[i, k], k
            if targets[i, k] > most:
                label, most = k, targets[i, k]
        top[i] = m
        hits += best == label
        for k in range(width):
            shifted[i * width + k] = z[i, k] - m
    for j in range(np.uint64(n * width)):
        shifted[j] = V.exp(shifted[j])
    total = 0.0
    for i in range(n):
        s = 0.0
        for k in range(width):
            s += shifted[i * width + k]
        lse = top[i] + np.log(s)
        row = 0.0
        for k in range(width):
            row += targets[i, k] * (lse - z[i, k])
        total += row
    return total / n, hits


def output_scores_reference(out, targets, classification):
    """output_scores in NumPy."""
    if not classification:
        return float(((out - targets) ** 2).sum() / len(out)), None
    m = out.max(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(out - m).sum(axis=1))
    loss = float((targets * (lse[:, None] - out)).sum() / len(out))
    return loss, float(np.mean(out.argmax(axis=1) == targets.argmax(axis=1)))
