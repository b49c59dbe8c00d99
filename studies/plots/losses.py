"""Figures of the `losses` study (report sec. 3): MSE against softmax cross-entropy.

- loss_gradients: for one example whose true class has logit z (the other K-1 logits at 0), the
  loss and the gradient |dL/dz| against z, from the loss definitions (MSE on sigmoid outputs,
  MSE on softmax outputs, softmax cross-entropy); the store adds the measured spread of the
  output logits at initialization per init gain.
- loss_curves: test accuracy and training loss (relative to its initial value) over training,
  one column per init gain, one color per objective, seed bands, each (objective, gain) at its
  own best rate of the spec's rate grid (the finding's choice).
"""
import numpy as np

from studies.analysis.findings.common import at_best_rates, band, rates_text

from . import Figure, figure
from ._runs import with_verdict
from ._curves import (
    at_step,
    completed_runs,
    diverged_points,
    failed_count,
    first_above,
    seed_curves,
    training_setup,
    with_keys,
)
from .style import (
    FULL_WIDTH,
    fmt,
    legend_below,
    log_axis,
    mark_diverged,
    new_figure,
    seed_band,
)

# Fixed colors of the objectives in every figure of this study.
OBJECTIVE_COLORS = {"mse+sigmoid": "#1f77b4", "mse+softmax": "#9467bd",
                    "cross_entropy+softmax": "#d62728", "mse+identity": "#7f7f7f"}
OBJECTIVE_NAMES = {"mse+sigmoid": "MSE, sigmoid outputs", "mse+softmax": "MSE, softmax outputs",
                   "cross_entropy+softmax": "cross-entropy (softmax)",
                   "mse+identity": "MSE, linear outputs"}
DATASET_NAMES = {"mnist1d": "MNIST-1D", "digits": "the 8x8 digits"}
N_CLASSES = 10
Z_RANGE = (-10.0, 10.0)


def objective_of(run):
    """'loss+activation' of a run row (its objective, or its loss and output activation)."""
    objective = run.get("objective")
    if isinstance(objective, str) and objective:
        return objective
    loss = run.get("loss") if isinstance(run.get("loss"), str) else "cross_entropy"
    out = run.get("output_activation")
    out = out if isinstance(out, str) else ("softmax" if loss == "cross_entropy" else "identity")
    return f"{loss}+{out}"


def _color(objective):
    return OBJECTIVE_COLORS.get(objective, "#333333")


def _name(objective):
    return OBJECTIVE_NAMES.get(objective, objective)


def analytic_gradients(z, k=N_CLASSES):
    """{objective: (loss, dL/dz)} for one example of class 0 with logits (z, 0, ..., 0): MSE
    sum_j (yhat_j - y_j)^2 and cross-entropy -log yhat_0 (docs/conventions.md)."""
    z = np.asarray(z, dtype=float)
    s = 1.0 / (1.0 + np.exp(-z))                    # sigmoid output of the true class
    s0 = 0.5                                         # the other K-1 sigmoid outputs (logit 0)
    p = np.exp(z) / (np.exp(z) + (k - 1))            # softmax probability of the true class
    q = (1.0 - p) / (k - 1)                          # each other class
    out = {}
    out["mse+sigmoid"] = ((s - 1) ** 2 + (k - 1) * s0 ** 2, 2 * (s - 1) * s * (1 - s))
    # dL/dz_0 = sum_j 2 (p_j - y_j) dp_j/dz_0 with dp_0/dz_0 = p(1-p), dp_j/dz_0 = -p q.
    out["mse+softmax"] = ((p - 1) ** 2 + (k - 1) * q ** 2,
                          2 * (p - 1) * p * (1 - p) + (k - 1) * 2 * q * (-p * q))
    out["cross_entropy+softmax"] = (-np.log(p), p - 1)
    return out


def _measured_logits(results):
    """{gain: (output-logit std, sigmoid outputs saturated fraction)} at initialization (the
    rate does not matter there: one rate per configuration is read)."""
    results, _ = at_best_rates(results, ("objective", "gain"))
    layers = at_step(with_keys(results, results.layers, ["gain", "depth"]))
    runs = completed_runs(results)
    if layers.empty:
        return {}
    out_layer = layers[layers["layer"] == layers["depth"] + 1]
    sig = runs[[objective_of(r) == "mse+sigmoid" for _, r in runs.iterrows()]]["run_id"]
    found = {}
    for gain, rows in out_layer.groupby("gain"):
        sat = rows[rows["run_id"].isin(sig)]["saturated_fraction"]
        found[float(gain)] = (float(rows["z_std"].mean()),
                              float(sat.mean()) if len(sat) else np.nan)
    return found


@figure("loss_gradients")
def loss_gradients(results):
    z = np.linspace(*Z_RANGE, 801)
    curves = analytic_gradients(z)
    fig, axes = new_figure(ncols=2, width=FULL_WIDTH, height=2.5)
    for objective, (loss, grad) in curves.items():
        axes[0, 0].plot(z, loss, color=_color(objective), label=_name(objective))
        axes[0, 1].plot(z, np.abs(grad), color=_color(objective), label=_name(objective))
    axes[0, 0].set(xlabel="logit z of the true class (other logits 0)",
                   ylabel="loss of one example", title="(a) loss (MSE bounded, cross-entropy not)")
    log_axis(axes[0, 1], "y", r"$|\partial L/\partial z|$")
    axes[0, 1].set(xlabel="logit z of the true class (other logits 0)",
                   title="(b) output gradient", ylim=(1e-5, 3))
    measured = _measured_logits(results)
    for ax in axes[0]:
        ax.set_xlim(*Z_RANGE)
        ax.axvspan(Z_RANGE[0], -4, color="0.85", alpha=0.5, linewidth=0,
                   label="saturated and wrong (z < -4)")
    numbers = {"k": N_CLASSES}
    for at in (-6.0, -2.0, 0.0):
        g = analytic_gradients(np.array([at]))
        numbers[f"grad_at_{at:g}"] = {o: float(abs(v[1][0])) for o, v in g.items()}
    numbers["measured_logit_std"] = {fmt(g): v[0] for g, v in measured.items()}
    numbers["measured_sigmoid_saturated"] = {fmt(g): v[1] for g, v in measured.items()}
    legend_below(fig, axes, ncol=4)
    g6 = numbers["grad_at_-6"]
    logits = "; ".join(f"gain {fmt(g)}: logit std {fmt(s)}, sigmoid outputs saturated "
                       f"{fmt(100 * f)}%" for g, (s, f) in sorted(measured.items()))
    caption = (
        f"Loss (a) and output gradient |dL/dz| (b) of one example whose true class has logit z "
        f"and the other {N_CLASSES - 1} logits 0, from the loss definitions (with sigmoid "
        f"outputs the other {N_CLASSES - 1} outputs sit at 0.5 and add a constant "
        f"{fmt((N_CLASSES - 1) * 0.25)} to the MSE). A wrong, saturated "
        f"output (z = -6) gets |dL/dz| = {fmt(g6['mse+sigmoid'])} under MSE on a sigmoid, "
        f"{fmt(g6['mse+softmax'])} under MSE on a softmax, and {fmt(g6['cross_entropy+softmax'])} "
        f"under cross-entropy (its gradient yhat - y does not vanish with the output's slope). "
        + (f"Measured at initialization in this study's runs: {logits}." if measured else ""))
    return [Figure(fig, "loss_gradients", with_verdict(caption, "losses", results), numbers)]


def _rates(best):
    """' (grid 0.03-3; best rates: MSE, sigmoid outputs gain 1 lr 1, ...)' or ''."""
    grid = next(iter(best.values()))[1] if best else []
    if len(grid) < 2:
        return ""
    names = rates_text(best, lambda k: f"{_name(k[0])} gain {fmt(k[1])}")
    return f"; best rates of the grid {fmt(grid[0])}-{fmt(grid[-1])}: {names}"


@figure("loss_curves")
def loss_curves(results):
    full = results
    results, best = at_best_rates(full, ("objective", "gain"))
    runs = completed_runs(results)
    runs = runs.assign(objective_key=[objective_of(r) for _, r in runs.iterrows()]) \
        if not runs.empty else runs
    hist = results.history.merge(runs[["run_id", "objective_key", "gain", "seed", "status"]],
                                 on="run_id") if not runs.empty else results.history
    gains = sorted(hist["gain"].unique()) if not hist.empty else []
    fig, axes = new_figure(ncols=max(1, len(gains)), nrows=2, width=FULL_WIDTH,
                           height=4.0, sharex=True)
    numbers = {}
    if not hist.empty:
        first = hist.sort_values("step").groupby("run_id")["train_loss"].transform("first")
        hist = hist.assign(relative_loss=hist["train_loss"] / first)
    order = list(OBJECTIVE_COLORS)
    for col, gain in enumerate(gains):
        part = hist[hist["gain"] == gain]
        acc = seed_curves(part, ["objective_key"], "step", "test_accuracy")
        rel = seed_curves(part, ["objective_key"], "step", "relative_loss")
        for key in sorted(acc, key=lambda k: order.index(k[0]) if k[0] in order else 99):
            objective = key[0]
            x, ys = acc[key]
            seed_band(axes[0, col], x, ys, _color(objective), label=_name(objective))
            xr, yr = rel[key]
            seed_band(axes[1, col], xr, yr, _color(objective), label=_name(objective))
            numbers.setdefault(f"gain {fmt(gain)}", {})[objective] = {
                "final_test_accuracy": float(np.nanmean(ys[:, -1])),
                "final_test_accuracy_per_seed": list(ys[:, -1]),
                "lr": best.get((objective, gain), (np.nan,))[0],
                "step_to_80pct": first_above(x, ys, 0.8),
                "final_relative_loss": float(np.nanmean(yr[:, -1]))}
        for row, y in ((0, "test_accuracy"), (1, "relative_loss")):
            points = diverged_points(part, "step", y)
            if points:
                mark_diverged(axes[row, col], *zip(*points), label="diverged (last finite point)")
        axes[0, col].set_title(f"init gain {fmt(gain)}")
        axes[0, col].set_ylim(0, 1.04)  # a curve at 100% stays inside the frame
        axes[1, col].set_xlabel("step")
        log_axis(axes[1, col], "y")
    if gains:
        axes[0, 0].set_ylabel("test accuracy")
        axes[1, 0].set_ylabel("training loss / initial loss")
    legend_below(fig, axes, ncol=4)
    parts = []
    for gain in gains:
        entries = numbers.get(f"gain {fmt(gain)}", {}).items()
        text = ", ".join(f"{_name(o)} {band(v['final_test_accuracy_per_seed'])}"
                         for o, v in entries)
        parts.append(f"gain {fmt(gain)}: {text}")
    failed = failed_count(results)
    data = results.runs["dataset"].iloc[0] if "dataset" in results.runs and len(results.runs) \
        else "?"
    data = DATASET_NAMES.get(data, data)
    caption = (
        f"Test accuracy (top) and training loss relative to its initial value (bottom, log "
        f"scale) over {training_setup(results)} on {data}, for MSE on sigmoid outputs, MSE on "
        f"softmax outputs (both on one-hot targets) and softmax cross-entropy, each (objective, "
        f"gain) at its own best rate{_rates(best)}; columns: init gain (gain > 1 saturates the "
        f"outputs at init). Mean and min-max band over seeds. Final test accuracy, mean [min, "
        f"max] over seeds, {'; '.join(parts)}."
        + (f" {failed} failed runs have no data." if failed else ""))
    return [Figure(fig, "loss_curves", with_verdict(caption, "losses", full), numbers)]
