"""Findings of the curvature studies: edge_of_stability (from its own stored runs; see the
package docstring).

Per run of full-batch gradient descent with step lr, from the history's `sharpness` (top
Hessian eigenvalue of the training loss) and `train_loss` records:
- ratio = sharpness / (2/lr); its mean over the records of the second half of training;
- progressive sharpening: the ratio starts below 1 and later reaches 1;
- the loss from the first record at 2/lr on (the edge-of-stability phase): falling (the mean
  of the last quarter of its records below that of the first quarter) yet non-monotone (some
  record above the one before it by more than RISE, far above float32 rounding).
"""
import math

import numpy as np

from .common import band, finding, row

HOVER = (0.9, 1.3)  # "at 2/lr": the second half's mean ratio inside this interval
RISE = 1e-4  # a loss record counts as a rise when it exceeds the one before by this (relative)
LOSS_NAMES = {"mse+identity": "MSE", "cross_entropy+softmax": "cross-entropy"}


def objective_name(objective):
    return LOSS_NAMES.get(objective, str(objective))


def run_measures(history, lr):
    """{initial, reach_step, late_ratio, eos_falling, eos_rises, eos_max_rise} of one run's
    history: the ratio sharpness / (2/lr) at step 0, the first step at which it is >= 1 (NaN
    if never), its mean over the records from the middle step on; and of the train-loss
    records from reach_step on (the edge-of-stability phase): whether the mean of their last
    quarter is below that of their first, how many exceed the record before by more than RISE
    (relative), and the largest such relative rise."""
    h = history.sort_values("step")
    steps = h["step"].to_numpy(float)
    middle = steps.max() / 2 if len(steps) else math.nan
    sharp = h[h["sharpness"].notna()]
    ratio = sharp["sharpness"].to_numpy(float) * lr / 2
    at = sharp["step"].to_numpy(float)
    reached = np.flatnonzero(ratio >= 1)
    reach_step = float(at[reached[0]]) if reached.size else math.nan
    late = ratio[at >= middle]
    loss = h.loc[(h["step"] >= reach_step) & h["train_loss"].notna(), "train_loss"]
    loss = loss.to_numpy(float)
    rises = np.diff(loss) / loss[:-1] if len(loss) > 1 else np.array([])
    return {"initial": float(ratio[0]) if len(at) and at[0] == 0 else math.nan,
            "reach_step": reach_step,
            "late_ratio": float(late.mean()) if late.size else math.nan,
            "eos_falling": _falling(loss),
            "eos_rises": int((rises > RISE).sum()),
            "eos_max_rise": float(rises.max()) if rises.size else math.nan}


def _falling(loss):
    """The mean of the last quarter of the records below that of the first quarter."""
    quarter = len(loss) // 4
    return bool(quarter > 0 and np.isfinite(loss).all() and
                loss[-quarter:].mean() < loss[:quarter].mean())


def eos_table(results):
    """{(objective, lr): [run_measures per seed]} of the completed and diverged runs."""
    runs = results.runs
    runs = runs[runs["status"].isin(["completed", "diverged"])]
    hist = results.history.groupby("run_id")
    out = {}
    for _, run in runs.sort_values(["objective", "lr", "seed"]).iterrows():
        measures = run_measures(hist.get_group(run["run_id"]), float(run["lr"]))
        measures["diverged"] = run["status"] == "diverged"
        out.setdefault((run["objective"], float(run["lr"])), []).append(measures)
    return out


def _label(key):
    return f"{objective_name(key[0])} lr {key[1]:g}"


@finding("edge_of_stability")
def edge_of_stability(results):
    table = eos_table(results)
    if not table:
        return [row("edge_of_stability", "-", "-", "-", "no runs with data", [])]
    source = "Cohen et al. 2021, Fig. 1"
    keys = sorted(table)

    def values(key, name):
        return [m[name] for m in table[key]]
    sharpening = [all(m["initial"] < 1 and np.isfinite(m["reach_step"]) for m in table[k])
                  for k in keys]
    hover = [all(HOVER[0] <= m["late_ratio"] <= HOVER[1] for m in table[k]) for k in keys]
    loss = [all(m["eos_falling"] and m["eos_rises"] > 0 and not m["diverged"]
                for m in table[k]) for k in keys]
    return [
        row("edge_of_stability", "progressive sharpening: the sharpness rises to 2/lr", source,
            "on every seed: sharpness/(2/lr) below 1 at initialization, later at least 1",
            "; ".join(f"{_label(k)}: {band(values(k, 'initial'))} at step 0, reaches 2/lr at "
                      f"step {band(values(k, 'reach_step'))}" for k in keys), sharpening),
        row("edge_of_stability", "the sharpness then hovers at 2/lr", source,
            f"on every seed: mean sharpness/(2/lr) over the second half of training in "
            f"[{HOVER[0]:g}, {HOVER[1]:g}]",
            "; ".join(f"{_label(k)}: {band(values(k, 'late_ratio'))}" for k in keys), hover),
        row("edge_of_stability", "the loss keeps falling, non-monotonically", source,
            f"on every seed, over the train-loss records from the first at 2/lr on: the mean "
            f"of the last quarter below that of the first, and at least one record above the "
            f"one before (by more than {RISE:g}, relative)",
            "; ".join(f"{_label(k)}: {band(values(k, 'eos_rises'))} rises, largest "
                      f"{band(values(k, 'eos_max_rise'))} (relative), falling on "
                      f"{sum(values(k, 'eos_falling'))}/{len(table[k])} seeds" for k in keys),
            loss)]
