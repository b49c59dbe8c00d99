"""Pathology labels per run and per layer, with the FIRST step each fired.

    run, per_layer = label_run(history, layers, Thresholds.from_dict({"dead_fraction": 0.9}))
    format_labels(run)   # "vanishing@0,dead@120"  (or "healthy")

`history`: per-step rows (step, loss, grad_norm, ...; metrics.step_frames); `layers`: per-layer
rows (step, layer 1..L, w_grad_norm, b_grad_norm, dead_fraction, saturated_fraction, ...;
metrics.merge_layer_rows). Missing columns skip the labels that need them; NaN activation
statistics (not measured at that step, or not applicable to the activation) never fire.
Gradient labels read layer rows only at steps with a per-step kernel record (history steps, or
without a history the rows whose w_norm is set), so a NaN of a metric-only row is not taken for
a non-finite gradient. Labels are not exclusive.

- vanishing: r_l = ||dL/dW_l|| / ||dL/dW_L|| < vanishing_ratio (run: l = 1; layer l < L: r_l).
- exploding: r_l > exploding_ratio, or a non-finite ||dL/dW_l|| / ||dL/db_l|| (per layer and
  run), or (run) the global gradient norm > exploding_norm or non-finite.
- dead: dead_fraction > dead_fraction (run: any layer); saturated: likewise.
- diverged (run only): non-finite loss or global gradient norm (the kernel stops there), or
  loss > divergence_factor x the initial (first recorded) loss.
- healthy: none fired; its "first step" is the first recorded step.
"""
import math
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd

LABELS = ("vanishing", "exploding", "dead", "saturated", "diverged")
HEALTHY = "healthy"
LAYER_LABEL_COLUMNS = ("layer", "label", "first_step")


@dataclass(frozen=True)
class Thresholds:
    """Label thresholds (all strict inequalities). Defaults and why:
    vanishing_ratio 1e-3: at initialization r_1 stays within 0.1..1 for tanh/Xavier and ReLU/He
      at depth 2..20 (measured, width 64), while sigmoid/Xavier gives 2e-2 at depth 2, 2e-4 at
      depth 5 and 2e-7 at depth 10: three decades below the last layer, the first layer all but
      stops learning under a shared learning rate.
    exploding_ratio 1e3: the mirror image; tanh in the chaotic phase (sigma_w = 10) reaches
      2e3 at depth 10, while healthy inits stay below 1.
    exploding_norm 1e4: standardized inputs give global norms O(0.1..10) at a sane init.
    dead_fraction 0.5, saturated_fraction 0.5: most of the layer (units never active, or
      entries in the flat tails) no longer passes gradient.
    divergence_factor 10: cross-entropy starts near ln K (2.3 for 10 classes); ten times that
      is far beyond mini-batch noise, and the same factor holds for MSE.
    """
    vanishing_ratio: float = 1e-3
    exploding_ratio: float = 1e3
    exploding_norm: float = 1e4
    dead_fraction: float = 0.5
    saturated_fraction: float = 0.5
    divergence_factor: float = 10.0

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value) or value <= 0:
                raise ValueError(f"thresholds.{f.name}: expected a positive finite number, "
                                 f"got {value!r}")
            if f.name.endswith("_fraction") and value >= 1:
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


def _fire(labels, name, step):
    if step is not None and (name not in labels or step < labels[name]):
        labels[name] = step


def _wide(layers, column, steps=None):
    """step x layer table of one column (last row wins on duplicates), float64."""
    rows = layers[["step", "layer", column]].drop_duplicates(["step", "layer"], keep="last")
    table = rows.pivot(index="step", columns="layer", values=column).sort_index()
    if steps is not None:
        table = table.loc[table.index.isin(steps)]
    return table.astype(np.float64)


def _run_step_labels(history, t, run):
    h = history.sort_values("step")
    steps = h["step"].to_numpy()
    loss = h["loss"].to_numpy(np.float64)
    bad = ~np.isfinite(loss)
    if "grad_norm" in h:
        norm = h["grad_norm"].to_numpy(np.float64)
        bad |= ~np.isfinite(norm)
        with np.errstate(invalid="ignore"):
            _fire(run, "exploding", _first(steps, ~np.isfinite(norm) | (norm > t.exploding_norm)))
    with np.errstate(invalid="ignore"):
        if math.isfinite(loss[0]) and loss[0] > 0:
            bad |= loss > t.divergence_factor * loss[0]
    _fire(run, "diverged", _first(steps, bad))


def _gradient_labels(layers, steps, t, per_layer, run):
    w = _wide(layers, "w_grad_norm", steps)
    if w.empty:
        return
    idx = w.index.to_numpy()
    nonfinite = ~np.isfinite(w.to_numpy())
    if "b_grad_norm" in layers:
        b = _wide(layers, "b_grad_norm", steps).reindex(index=w.index, columns=w.columns)
        nonfinite |= ~np.isfinite(b.to_numpy())
    last = w[w.columns.max()].to_numpy()
    denom = np.where(np.isfinite(last) & (last > 0), last, np.nan)
    with np.errstate(invalid="ignore"):
        ratio = w.to_numpy() / denom[:, None]
        vanish = ratio < t.vanishing_ratio
        explode = (ratio > t.exploding_ratio) | nonfinite
    for j, layer in enumerate(w.columns):
        _fire(per_layer.setdefault(int(layer), {}), "vanishing", _first(idx, vanish[:, j]))
        _fire(per_layer[int(layer)], "exploding", _first(idx, explode[:, j]))
    _fire(run, "vanishing", _first(idx, vanish[:, 0]))
    _fire(run, "exploding", _first(idx, explode[:, 0] | nonfinite.any(axis=1)))


def label_run(history, layers, thresholds=None):
    """(run_labels, layer_labels): {label: first step} ({"healthy": first step} when none fired;
    {} without any rows), and a DataFrame (layer, label, first_step) sorted by layer, step."""
    t = thresholds if isinstance(thresholds, Thresholds) else Thresholds.from_dict(thresholds)
    history = pd.DataFrame() if history is None else history
    layers = pd.DataFrame() if layers is None else layers
    run, per_layer = {}, {}
    has_history = not history.empty and "step" in history
    if has_history and "loss" in history:
        _run_step_labels(history, t, run)
    if not layers.empty:
        for layer in layers["layer"].unique():
            per_layer.setdefault(int(layer), {})
        steps = history["step"].to_numpy() if has_history else None
        if steps is None and "w_norm" in layers:  # kernel rows always carry a number there
            steps = layers.loc[layers["w_norm"].notna(), "step"].to_numpy()
        if "w_grad_norm" in layers:
            _gradient_labels(layers, steps, t, per_layer, run)
        for column in ("dead_fraction", "saturated_fraction"):
            if column not in layers:
                continue
            table = _wide(layers, column)
            with np.errstate(invalid="ignore"):
                fired = table.to_numpy() > getattr(t, column)
            label = column.split("_")[0]
            for j, layer in enumerate(table.columns):
                step = _first(table.index.to_numpy(), fired[:, j])
                _fire(per_layer[int(layer)], label, step)
                _fire(run, label, step)
    starts = [frame["step"].min() for frame in (history, layers)
              if not frame.empty and "step" in frame]
    if not starts:
        return {}, pd.DataFrame(columns=list(LAYER_LABEL_COLUMNS))
    start = int(min(starts))
    rows = []
    for layer in sorted(per_layer):
        fired = per_layer[layer] or {HEALTHY: start}
        rows += [(layer, name, step) for name, step in _ordered(fired)]
    table = pd.DataFrame(rows, columns=list(LAYER_LABEL_COLUMNS))
    table = table.astype({"layer": np.int64, "first_step": np.int64})
    return dict(_ordered(run)) if run else {HEALTHY: start}, table


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
