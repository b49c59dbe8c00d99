"""Pathology labels per run and per layer, with the FIRST step each fired.

    run, per_layer = label_run(history, layers, Thresholds.from_dict({"dead_fraction": 0.9}))
    format_labels(run)   # "vanishing@0,dead@120"  (or "healthy")
    run, rows = label_columns(history_columns, layer_columns)   # the same on NumPy columns

label_columns does the work on dicts of NumPy columns (a run labels its own tables with it, no
pandas); label_run takes DataFrames (or dicts) and returns the layer labels as a DataFrame (the
store relabels loaded runs with it), so fresh and loaded runs get the same labels.

`history`: per-step rows (step, loss, grad_norm, train_loss, train_accuracy, ...;
metrics.step_frames); `layers`: per-layer rows (step, layer 1..L, w_grad_norm, b_grad_norm,
update_ratio, dead_fraction, saturated_fraction, ...; metrics.merge_layer_rows). Missing
columns skip the labels that need them; NaN activation statistics (not measured at that step,
or not applicable to the activation) never fire. Gradient labels read layer rows only at steps
with a per-step kernel record (history steps, or without a history the rows whose w_norm is
set), so a NaN of a metric-only row is not taken for a non-finite gradient. Labels are not
exclusive. "The loss" below is the whole-training-set `train_loss` where recorded, else the
per-step `loss`; L0 is its first recorded value, L_end its last. The bar of learning is the loss
of the best prediction that ignores the inputs, where it is lower than L0 (a net that starts
above it and only learns its output biases has learned nothing): L_ref = min(L0, ln K) for a
cross-entropy run on K classes (the uniform guess), min(L0, sum_j Var(t_j)) for MSE regression
whose targets' total variance is given (predicting their mean), else L0 (MSE on classes: there
the chance-accuracy test below tells a net that learned nothing).

- vanishing: r_l = ||dL/dW_l|| / ||dL/dW_L|| < vanishing_ratio (run: l = 1; layer l < L: r_l),
  or (absolute, so a net that collapses uniformly is seen) ||Delta W_l|| / ||W_l|| <
  vanishing_update in layer l at a step where the loss is still above (1 - min_improvement)
  L_ref
  (run: layer 1, or every layer at one step); a converged net's small updates do not count.
- exploding: r_l > exploding_ratio, or a non-finite ||dL/dW_l|| / ||dL/db_l|| (per layer and
  run), or (run) the global gradient norm > exploding_norm or non-finite.
- dead: dead_fraction > dead_fraction (run: any layer); saturated: likewise.
- diverged (run only): a row the runner marked diverged (a non-finite loss, gradient or
  update: the kernel refuses the step and the run stops), non-finite loss or global gradient
  norm, or
  loss > divergence_factor x L0, or L_end > (1 + final_rise) L0 (the run ended worse than it
  started; first step: where the loss rose above that bar for good).
- stalled (run only, when not diverged): the run did not learn: L_end > (1 - min_improvement)
  L_ref, or the final train accuracy < 1/K + chance_margin for K classes, whatever the loss and
  output (K from `n_classes`, which the runner passes for every classification run; when it is
  not given, K is read off a softmax output layer, whose mean activation is exactly 1/K at
  every step, and the loss taken for cross-entropy; without either the accuracy test is
  skipped). First step: the start of the final stretch above the
  bar (0 for a run that never got below it).
- healthy: none fired, so the run also learned; its "first step" is the first recorded step.
  Without a loss history the learning tests cannot run and healthy means "no gradient or unit
  label fired".
"""
import math
from dataclasses import dataclass, fields

import numpy as np

LABELS = ("vanishing", "exploding", "dead", "saturated", "diverged", "stalled")
HEALTHY = "healthy"
LAYER_LABEL_COLUMNS = ("layer", "label", "first_step")
_BELOW_ONE = ("dead_fraction", "saturated_fraction", "min_improvement", "chance_margin")


@dataclass(frozen=True)
class Thresholds:
    """Label thresholds (all strict inequalities). Defaults and why:
    vanishing_ratio 1e-3: at initialization r_1 stays within 0.1..1 for tanh/Xavier and ReLU/He
      at depth 2..20 (measured, width 64), while sigmoid/Xavier gives 2e-2 at depth 2, 2e-4 at
      depth 5 and 2e-7 at depth 10: three decades below the last layer, the first layer all but
      stops learning under a shared learning rate.
    vanishing_update 1e-5: ||Delta W|| / ||W|| near 1e-3 is a healthy step; 1e-5 moves a weight
      matrix by 1% in a thousand steps, so a layer below it (before the loss has fallen) is
      not learning, whatever the other layers do.
    exploding_ratio 1e3: the mirror image; tanh in the chaotic phase (sigma_w = 10) reaches
      2e3 at depth 10, while healthy inits stay below 1.
    exploding_norm 1e4: standardized inputs give global norms O(0.1..10) at a sane init.
    dead_fraction 0.5, saturated_fraction 0.5: most of the layer (units never active, or
      entries in the flat tails) no longer passes gradient.
    divergence_factor 10: cross-entropy starts near ln K (2.3 for 10 classes); ten times that
      is far beyond mini-batch noise, and the same factor holds for MSE.
    final_rise 0.01: a run whose whole-training-set loss ends more than 1% above where it
      started got worse by training (a loss on the whole training set carries no batch
      noise; the 10-layer chaotic tanh net at SGD lr 1 ends 26% above its start).
    min_improvement 0.05: a run that removed less than 5% of its initial loss has not learned
      (10-class cross-entropy from ln 10 = 2.303 must reach 2.19).
    chance_margin 0.1: final train accuracy below chance + 0.1 (0.2 for 10 classes) is
      guessing.
    """
    vanishing_ratio: float = 1e-3
    vanishing_update: float = 1e-5
    exploding_ratio: float = 1e3
    exploding_norm: float = 1e4
    dead_fraction: float = 0.5
    saturated_fraction: float = 0.5
    divergence_factor: float = 10.0
    final_rise: float = 0.01
    min_improvement: float = 0.05
    chance_margin: float = 0.1

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value) or value <= 0:
                raise ValueError(f"thresholds.{f.name}: expected a positive finite number, "
                                 f"got {value!r}")
            if f.name in _BELOW_ONE and value >= 1:
                raise ValueError(f"thresholds.{f.name}: expected a fraction in (0, 1), got "
                                 f"{value!r}")
        if self.vanishing_ratio >= self.exploding_ratio:
            raise ValueError(f"thresholds: vanishing_ratio ({self.vanishing_ratio!r}) must be "
                             f"below exploding_ratio ({self.exploding_ratio!r})")

    @classmethod
    def from_dict(cls, d=None):
        """Defaults overridden by the keys of d; unknown keys are an error naming the allowed."""
        d = dict(d or {})
        allowed = [f.name for f in fields(cls)]
        unknown = sorted(k for k in d if k not in allowed)
        if unknown:
            raise ValueError(f"thresholds: unknown key(s) {', '.join(map(repr, unknown))}; "
                             f"allowed: {', '.join(allowed)}")
        return cls(**d)


def diverged_now(loss, initial_loss, thresholds=None):
    """True when loss is not finite or above divergence_factor x initial_loss (a finite,
    positive initial loss; otherwise only the non-finite test applies)."""
    t = thresholds or Thresholds()
    loss = float(loss)
    if not math.isfinite(loss):
        return True
    initial = float(initial_loss)
    return math.isfinite(initial) and initial > 0 and loss > t.divergence_factor * initial


def _first(steps, mask):
    """First step where mask holds (NaN-safe boolean array), or None."""
    hit = np.flatnonzero(np.asarray(mask, bool))
    return int(steps[hit[0]]) if hit.size else None


def _holds_from(steps, mask):
    """First step of the final stretch where mask holds through the last entry, or None when
    it does not hold at the end."""
    mask = np.asarray(mask, bool)
    if not mask.size or not mask[-1]:
        return None
    misses = np.flatnonzero(~mask)
    return int(steps[misses[-1] + 1 if misses.size else 0])


def _fire(labels, name, step):
    if step is not None and (name not in labels or step < labels[name]):
        labels[name] = step


def columns_of(table):
    """{column: NumPy array} of a DataFrame, a dict of columns, or None ({})."""
    if table is None:
        return {}
    if isinstance(table, dict):
        return {k: np.asarray(v) for k, v in table.items()}
    return {k: table[k].to_numpy() for k in table.columns}


def _n_rows(table):
    return len(next(iter(table.values()))) if table else 0


def _floats(values):
    """float64 of a column (None -> NaN)."""
    values = np.asarray(values)
    if values.dtype == object:
        return np.array([np.nan if v is None else v for v in values], np.float64)
    return values.astype(np.float64)


def _flags(values):
    """bool of a column with missing entries (None, NaN) taken for False."""
    values = np.asarray(values)
    if values.dtype == bool:
        return values
    return np.array([v is not None and v == v and bool(v) for v in values], bool)


def _wide(layers, column, steps=None):
    """(steps, layer ids, step x layer float64 table) of one column over every step and
    layer of the layer rows (NaN where absent; the last row wins on duplicates), rows at
    `steps` only when given."""
    step = np.asarray(layers["step"]).astype(np.int64)
    layer = np.asarray(layers["layer"]).astype(np.int64)
    values = _floats(layers[column])
    rows, cols = np.unique(step), np.unique(layer)
    key = np.searchsorted(rows, step) * len(cols) + np.searchsorted(cols, layer)
    _, first_from_end = np.unique(key[::-1], return_index=True)
    keep = len(key) - 1 - first_from_end
    table = np.full(len(rows) * len(cols), np.nan)
    table[key[keep]] = values[keep]
    table = table.reshape(len(rows), len(cols))
    if steps is not None:
        inside = np.isin(rows, steps)
        rows, table = rows[inside], table[inside]
    return rows, cols, table


def _by_step(table, columns):
    """The columns of table ordered by step (stable)."""
    order = np.argsort(np.asarray(table["step"]), kind="stable")
    return {c: np.asarray(table[c])[order] for c in columns if c in table}


def _loss_curve(history):
    """(steps, loss) of the learning tests: finite train_loss rows where recorded, else the
    finite per-step loss."""
    column = "train_loss" if "train_loss" in history and \
        (~np.isnan(_floats(history["train_loss"]))).any() else "loss"
    h = _by_step(history, ("step", column))
    loss = _floats(h[column])
    keep = np.isfinite(loss)
    return h["step"][keep], loss[keep]


def _run_step_labels(history, t, run):
    h = _by_step(history, ("step", "loss", "grad_norm", "diverged"))
    steps = h["step"]
    loss = _floats(h["loss"])
    bad = ~np.isfinite(loss)
    if "grad_norm" in h:
        norm = _floats(h["grad_norm"])
        bad |= ~np.isfinite(norm)
        with np.errstate(invalid="ignore"):
            _fire(run, "exploding", _first(steps, ~np.isfinite(norm) | (norm > t.exploding_norm)))
    with np.errstate(invalid="ignore"):
        if math.isfinite(loss[0]) and loss[0] > 0:
            bad |= loss > t.divergence_factor * loss[0]
    if "diverged" in h:  # the runner stopped the run there (e.g. a non-finite update refused)
        bad |= _flags(h["diverged"])
    _fire(run, "diverged", _first(steps, bad))
    curve_steps, curve = _loss_curve(history)
    if curve.size and curve[0] > 0:
        _fire(run, "diverged", _holds_from(curve_steps, curve > (1 + t.final_rise) * curve[0]))


def _reference(initial, cap):
    """L_ref = min(L0, cap), cap the loss of the best input-free prediction (None: L0)."""
    return min(initial, cap) if cap is not None else initial


def _stalled_label(history, t, run, n_classes, cap):
    if "diverged" in run:
        return
    steps, loss = _loss_curve(history)
    if loss.size >= 2 and loss[0] > 0:
        bar = (1 - t.min_improvement) * _reference(loss[0], cap)
        _fire(run, "stalled", _holds_from(steps, loss > bar))
    if n_classes and "train_accuracy" in history:
        h = _by_step(history, ("step", "train_accuracy"))
        accuracy = _floats(h["train_accuracy"])
        known = ~np.isnan(accuracy)
        _fire(run, "stalled", _holds_from(h["step"][known],
                                          accuracy[known] < 1.0 / n_classes + t.chance_margin))


def softmax_classes(layers):
    """K when the output layer's mean activation is 1/K (to 1e-4) at every recorded step, as a
    softmax's is; else None. layers: a DataFrame or a dict of columns."""
    layers = columns_of(layers)
    if not _n_rows(layers) or "a_mean" not in layers:
        return None
    layer = np.asarray(layers["layer"])
    mean = _floats(layers["a_mean"])[layer == layer.max()]
    if not mean.size or not np.all(np.isfinite(mean)) or mean[0] <= 0:
        return None
    k = round(1.0 / mean[0])
    if k < 2 or np.max(np.abs(mean * k - 1.0)) > 1e-4:
        return None
    return int(k)


def _not_learned(history, t, steps, cap):
    """Boolean per step of `steps`: the loss there still above (1 - min_improvement) L_ref
    (True everywhere without a loss history). A step without a loss takes the last one
    before it in `steps`."""
    if history is None or not _n_rows(history) or "step" not in history:
        return np.ones(len(steps), bool)
    curve_steps, curve = _loss_curve(history)
    if not curve.size:
        return np.ones(len(steps), bool)
    known, where = np.unique(curve_steps[::-1], return_index=True)  # the last of a step
    last = curve[::-1][where]
    at = np.full(len(steps), np.nan)
    hit = np.isin(steps, known)
    at[hit] = last[np.searchsorted(known, np.asarray(steps)[hit])]
    filled = np.where(~np.isnan(at), np.arange(len(at)), -1)
    np.maximum.accumulate(filled, out=filled)
    at = np.where(filled >= 0, at[np.maximum(filled, 0)], np.nan)
    with np.errstate(invalid="ignore"):
        return ~(at <= (1 - t.min_improvement) * _reference(curve[0], cap))


def _gradient_labels(layers, steps, t, per_layer, run, history, cap):
    idx, cols, w = _wide(layers, "w_grad_norm", steps)
    if not w.size:
        return
    nonfinite = ~np.isfinite(w)
    if "b_grad_norm" in layers:
        nonfinite |= ~np.isfinite(_wide(layers, "b_grad_norm", steps)[2])
    last = w[:, -1]
    denom = np.where(np.isfinite(last) & (last > 0), last, np.nan)
    with np.errstate(invalid="ignore"):
        ratio = w / denom[:, None]
        vanish = ratio < t.vanishing_ratio
        explode = (ratio > t.exploding_ratio) | nonfinite
    vanish[:, -1] = False  # r_L = 1 by definition
    run_vanish = vanish[:, 0].copy()
    if "update_ratio" in layers:
        update = _wide(layers, "update_ratio", steps)[2]
        with np.errstate(invalid="ignore"):
            small = (update < t.vanishing_update) & \
                _not_learned(history, t, idx, cap)[:, None]
        vanish |= small
        run_vanish |= vanish[:, 0] | small.all(axis=1)
    for j, layer in enumerate(cols):
        _fire(per_layer.setdefault(int(layer), {}), "vanishing", _first(idx, vanish[:, j]))
        _fire(per_layer[int(layer)], "exploding", _first(idx, explode[:, j]))
    _fire(run, "vanishing", _first(idx, run_vanish))
    _fire(run, "exploding", _first(idx, explode[:, 0] | nonfinite.any(axis=1)))


def _learning_cap(n_classes, loss, target_variance):
    """The loss of the best input-free prediction, which caps L_ref: ln K for cross-entropy on K
    classes; the targets' total variance for MSE regression (when given, positive and finite);
    else None. MSE on classes keeps L0: there chance accuracy tells a net that learned nothing,
    and a net that classifies above chance with confident outputs can still have a squared
    error above the mean's."""
    if loss == "cross_entropy" and n_classes:
        return math.log(n_classes)
    if loss == "mse" and not n_classes and target_variance is not None \
            and 0 < target_variance < math.inf:
        return float(target_variance)
    return None


def label_columns(history, layers, thresholds=None, n_classes=None, loss=None,
                  target_variance=None):
    """label_run on tables given as dicts of NumPy columns (what a run builds; no pandas):
    (run_labels, [(layer, label, first_step), ...] sorted by layer, step)."""
    t = thresholds if isinstance(thresholds, Thresholds) else Thresholds.from_dict(thresholds)
    history, layers = columns_of(history), columns_of(layers)
    run, per_layer = {}, {}
    if n_classes is None:
        n_classes = softmax_classes(layers)
        loss = "cross_entropy" if n_classes and loss is None else loss
    cap = _learning_cap(n_classes, loss, target_variance)
    has_history = _n_rows(history) > 0 and "step" in history
    if has_history and "loss" in history:
        _run_step_labels(history, t, run)
    if _n_rows(layers):
        for layer in np.unique(layers["layer"]):
            per_layer.setdefault(int(layer), {})
        steps = np.asarray(history["step"]) if has_history else None
        if steps is None and "w_norm" in layers:  # kernel rows always carry a number there
            steps = np.asarray(layers["step"])[~np.isnan(_floats(layers["w_norm"]))]
        if "w_grad_norm" in layers:
            _gradient_labels(layers, steps, t, per_layer, run,
                             history if has_history and "loss" in history else None, cap)
        for column in ("dead_fraction", "saturated_fraction"):
            if column not in layers:
                continue
            idx, cols, table = _wide(layers, column)
            with np.errstate(invalid="ignore"):
                fired = table > getattr(t, column)
            label = column.split("_")[0]
            for j, layer in enumerate(cols):
                step = _first(idx, fired[:, j])
                _fire(per_layer[int(layer)], label, step)
                _fire(run, label, step)
    if has_history and "loss" in history:
        _stalled_label(history, t, run, n_classes, cap)
    starts = [np.min(frame["step"]) for frame in (history, layers)
              if _n_rows(frame) and "step" in frame]
    if not starts:
        return {}, []
    start = int(min(starts))
    rows = []
    for layer in sorted(per_layer):
        fired = per_layer[layer] or {HEALTHY: start}
        rows += [(layer, name, int(step)) for name, step in _ordered(fired)]
    return dict(_ordered(run)) if run else {HEALTHY: start}, rows


def label_run(history, layers, thresholds=None, n_classes=None, loss=None, target_variance=None):
    """(run_labels, layer_labels): {label: first step} ({"healthy": first step} when none fired;
    {} without any rows), and a DataFrame (layer, label, first_step) sorted by layer, step.
    n_classes: K of a classification run (chance accuracy 1/K), 0 for regression; None reads it
    off a softmax output layer (softmax_classes, the loss then taken for cross-entropy), else
    the accuracy test of `stalled` is skipped. loss: the run's loss name ("cross_entropy" gives
    the ln K bar of learning; "mse" on a regression task with target_variance, sum_j Var(t_j)
    of the training targets, the bar of predicting their mean).
    history, layers: DataFrames (or dicts of columns); the labels are label_columns'."""
    import pandas as pd
    run, rows = label_columns(history, layers, thresholds, n_classes, loss, target_variance)
    table = pd.DataFrame(rows, columns=list(LAYER_LABEL_COLUMNS))
    if rows:
        table = table.astype({"layer": np.int64, "first_step": np.int64})
    return run, table


def layer_label_text(rows):
    """{layer: 'vanishing@0,dead@120'} of label_columns' layer rows (in their order)."""
    out = {}
    for layer, label, step in rows:
        out.setdefault(layer, []).append(f"{label}@{int(step)}")
    return {layer: ",".join(parts) for layer, parts in out.items()}


def _ordered(labels):
    order = {name: i for i, name in enumerate(LABELS + (HEALTHY,))}
    return sorted(labels.items(), key=lambda kv: (kv[1], order.get(kv[0], len(order))))


def format_labels(run_labels):
    """'vanishing@0,dead@120' by first step; 'healthy' alone without a step; '' for {}."""
    return ",".join(name if name == HEALTHY else f"{name}@{step}"
                    for name, step in _ordered(run_labels))


def parse_labels(text):
    """The inverse of format_labels (healthy maps to step 0)."""
    out = {}
    for part in filter(None, (p.strip() for p in str(text).split(","))):
        name, _, step = part.partition("@")
        if name not in LABELS + (HEALTHY,):
            raise ValueError(f"labels: unknown label {name!r}; allowed: "
                             f"{', '.join(LABELS + (HEALTHY,))}")
        out[name] = int(step) if step else 0
    return out
