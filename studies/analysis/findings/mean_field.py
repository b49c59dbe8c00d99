"""Findings of the mean_field study (Poole et al. 2016; Schoenholz et al. 2017), from its stored
runs (see the package docstring): the measured per-layer growth of the backpropagated gradient
against chi_1, and ReLU's critical point at sigma_w^2 = 2."""
import math

import numpy as np

from studies.theory import mean_field as theory

from .common import at_step, band, finding, row, runs_with, seed_values


def measured_log_chi(layer_rows, depth):
    """Minus the least-squares slope of log ||delta_l||^2 over hidden layers depth//4+1..depth
    at step 0."""
    g = layer_rows[(layer_rows["layer"] > depth // 4) & (layer_rows["layer"] <= depth)]
    g = g.sort_values("layer")
    return -np.polyfit(g["layer"].to_numpy(float), np.log(g["delta_norm"].to_numpy() ** 2), 1)[0]


@finding("mean_field")
def mean_field(results):
    runs = runs_with(results, ["activation", "sigma_w2", "sigma_b2", "depth"])
    lay = at_step(results.layers)
    runs["log_chi"] = [measured_log_chi(lay[lay["run_id"] == r.run_id], r.depth)
                       for r in runs.itertuples()]
    checks, worst = [], (0.0, "")
    for (act, w2, b2), g in runs.groupby(["activation", "sigma_w2", "sigma_b2"]):
        predicted = math.log(theory.chi_1(w2, b2, act))
        err = abs(g["log_chi"].mean() - predicted)
        checks.append(err < 0.1)
        if err > worst[0]:
            worst = (err, f"{act} sigma_w^2 {w2:g}")
    crit = seed_values(runs, "log_chi", activation="relu", sigma_w2=2.0)
    return [row("mean_field", "the gradient grows by chi_1 per layer going back",
                "Poole et al. 2016; Schoenholz et al. 2017", "measured log chi_1 (fit of "
                "log ||delta_l||^2 over layers) within 0.1 of the mean-field value, each setting",
                f"{sum(checks)}/{len(checks)} settings within 0.1; worst {worst[1]} "
                f"(off by {worst[0]:.2f})", checks),
            row("mean_field", "ReLU is critical at sigma_w^2 = 2 (He init)", "Poole et al. 2016",
                "measured chi_1 at sigma_w^2 = 2 within [0.9, 1.1] on every seed",
                f"chi_1 {band(np.exp(crit))}", [bool(crit.size) and
                                                 bool(np.all(np.abs(crit) < math.log(1.1)))])]
