"""Findings of the mean_field study (Poole et al. 2016; Schoenholz et al. 2017), from its stored
runs (see the package docstring): the measured per-layer growth of the backpropagated gradient
against chi_1, and ReLU's critical point at sigma_w^2 = 2; and of the trainability study: test
accuracy over depth x sigma_w^2 against the trainable depth 6 xi_c."""
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


TRAINED_ACCURACY = 0.5       # test accuracy above which a run counts as trained (chance 0.1)
AGREEMENT = 0.8              # fraction of cells where 'trained' must agree with depth < 6 xi_c


def trainability_cells(results):
    """One row per (depth, sigma_w2): mean test accuracy over seeds, the per-seed accuracies,
    the predicted trainable depth 6 xi_c, and whether the cell trained / was predicted to."""
    runs = runs_with(results, ["activation", "sigma_w2", "sigma_b2", "depth"])
    runs["acc"] = runs["end_test_accuracy"].fillna(0.0)    # a diverged run counts as 0
    cells = runs.groupby(["activation", "sigma_b2", "sigma_w2", "depth"])["acc"] \
        .agg(accuracy="mean", seeds=list).reset_index()
    cells["limit"] = [theory.trainable_depth(r.sigma_w2, r.sigma_b2, r.activation)
                      for r in cells.itertuples()]
    cells["trained"] = cells["accuracy"] > TRAINED_ACCURACY
    cells["predicted"] = cells["depth"] < cells["limit"]
    return cells


@finding("trainability")
def trainability(results):
    cells = trainability_cells(results)
    agree = (cells["trained"] == cells["predicted"]).to_numpy()
    n_seeds = min(len(s) for s in cells["seeds"])
    per_seed = [float(np.mean([(s[i] > TRAINED_ACCURACY) == p for s, p in
                               zip(cells["seeds"], cells["predicted"])])) for i in range(n_seeds)]
    both = bool(cells["trained"].any() and (~cells["trained"]).any())
    return [row("trainability", "random tanh nets train only below depth ~6 xi_c",
                "Schoenholz et al. 2017", f"a cell (depth, sigma_w^2) is trained when its mean "
                f"test accuracy is above {TRAINED_ACCURACY:g}; 'trained' agrees with "
                f"'depth < 6 xi_c' on at least {AGREEMENT:.0%} of the cells, and both outcomes "
                f"occur", f"agreement {agree.mean():.0%} of {agree.size} cells (per seed "
                f"{band(per_seed, 2)}); {int(cells['trained'].sum())} cells trained",
                [agree.mean() >= AGREEMENT, both])]
