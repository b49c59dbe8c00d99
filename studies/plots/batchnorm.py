"""Figures of the `batchnorm` study (Ioffe & Szegedy 2015, Fig. 1; report sec. 8.1): a 3x100
sigmoid MLP trained with and without batch norm.

- batchnorm_accuracy: test accuracy over training steps, with and without batch norm (seed
  band), diverged runs marked.
- batchnorm_unit_input: the 15th, 50th and 85th percentiles of one unit's sigmoid input (unit 0
  of the last hidden layer: z without batch norm, the batch-norm output gamma xhat + beta with
  it; measured on the evaluation rows with batch statistics) over training, one panel each.

Both figures draw each net at its own best rate of the spec's rate grid (the finding's choice).
"""
import numpy as np
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from studies.analysis.findings.common import at_best_rates, band, rates_text

from . import Figure, figure
from ._runs import failed_note, joined, runs_with_data, seed_stats, with_verdict
from .style import FULL_WIDTH, fmt, legend_below, mark_diverged, new_figure, seed_band

BN_COLORS = {False: "#1f77b4", True: "#d95f02"}   # fixed: without / with batch norm
BN_NAMES = {False: "without batch norm", True: "with batch norm"}
THRESHOLDS = (0.4, 0.5, 0.6)                      # accuracy levels whose first step is reported


def _bool(value):
    return bool(value) if not isinstance(value, str) else value.lower() == "true"


def tuned(results):
    """(The runs at each net's best rate, the best_rates of with and without batch norm)."""
    return at_best_rates(results, ("batchnorm",))


def rates_caption(best):
    """'each at its own best rate of the grid 0.1-10 (plain lr 1, BN lr 1)', or ''."""
    grid = next(iter(best.values()))[1] if best else []
    if len(grid) < 2:
        return ""
    names = rates_text(best, lambda k: "with batch norm" if k[0] else "without")
    return f", each at its own best rate of the grid {fmt(grid[0])}-{fmt(grid[-1])} ({names})"


def _runs(results):
    runs, failed = runs_with_data(results, ["batchnorm", "depth"])
    runs = runs.assign(batchnorm=runs["batchnorm"].map(_bool))
    return runs, failed


def first_step_reaching(steps, values, level):
    """The first recorded step whose value is >= level (None if never)."""
    hits = np.flatnonzero(np.asarray(values, float) >= level)
    return int(np.asarray(steps)[hits[0]]) if hits.size else None


def accuracy_table(results):
    """Per batchnorm setting at its best rate: steps, the seeds x steps test accuracies, finals,
    diverged runs."""
    results, _ = tuned(results)
    runs, failed = _runs(results)
    hist = joined(results.history, runs, ["batchnorm"])
    out = {}
    for bn in (False, True):
        sub = hist[hist["batchnorm"] == bn].dropna(subset=["test_accuracy"])
        if sub.empty:
            continue
        table = sub.pivot_table(index="seed", columns="step", values="test_accuracy")
        group = runs[runs["batchnorm"] == bn]
        out[bn] = {"steps": table.columns.to_numpy(), "acc": table.to_numpy(float),
                   "final": group.loc[group["status"] == "completed",
                                      "final_test_accuracy"].to_numpy(float),
                   "diverged": group.loc[group["status"] == "diverged", "run_id"].tolist(),
                   "history": sub}
    return out, failed


@figure("batchnorm_accuracy")
def batchnorm_accuracy(results):
    table, failed = accuracy_table(results)
    fig, axes = new_figure(width=FULL_WIDTH * 0.6, height=2.5)
    ax = axes[0, 0]
    numbers, parts = {}, []
    for bn, t in table.items():
        color = BN_COLORS[bn]
        seed_band(ax, t["steps"], 100 * t["acc"], color, label=BN_NAMES[bn])
        for rid in t["diverged"]:
            last = t["history"][t["history"]["run_id"] == rid].tail(1)
            mark_diverged(ax, last["step"], 100 * last["test_accuracy"])
        mean_curve = np.nanmean(t["acc"], axis=0)
        reach = {lv: first_step_reaching(t["steps"], mean_curve, lv) for lv in THRESHOLDS}
        mean, low, high, n = seed_stats(t["final"])
        numbers[BN_NAMES[bn]] = {"final_mean": mean, "final_min": low, "final_max": high,
                                 "seeds": n, "first_step_reaching": reach,
                                 "diverged": len(t["diverged"])}
        parts.append(f"{BN_NAMES[bn]} {band(100 * t['final'])}%")
    ax.set_xlabel("step (batches of 60)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    handles = [Line2D([], [], color=BN_COLORS[bn], label=BN_NAMES[bn]) for bn in table]
    if any(t["diverged"] for t in table.values()):
        handles.append(Line2D([], [], marker="x", color="black", linestyle="none",
                              label="diverged"))
    legend_below(fig, handles=handles, labels=[h.get_label() for h in handles])
    steps = max(int(t["steps"].max()) for t in table.values())
    lift = ""
    if len(numbers) == 2:
        gain = numbers[BN_NAMES[True]]["final_mean"] - numbers[BN_NAMES[False]]["final_mean"]
        lift = f" Batch norm lifts accuracy by {fmt(100 * gain)} points."
    _, best = tuned(results)
    caption = (f"Ioffe & Szegedy's 3x100 sigmoid MLP (batch 60, SGD) on MNIST-1D (MNIST in the "
               f"paper; {steps} steps): test accuracy over training with and without batch "
               f"norm{rates_caption(best)}; mean and min-max band over seeds. Final test "
               f"accuracy, mean [min, max] over seeds: {'; '.join(parts)}." + lift
               + failed_note(failed))
    return [Figure(fig, "batchnorm_accuracy", with_verdict(caption, "batchnorm", results), numbers)]


def unit_percentiles(results):
    """Per batchnorm setting: the first seed's (steps, p15, p50, p85) of unit 0's sigmoid input
    in the last hidden layer, and the layer index, at each setting's best rate."""
    results, _ = tuned(results)
    runs, failed = _runs(results)
    layers = joined(results.layers, runs, ["batchnorm", "depth"])
    out = {}
    for bn in (False, True):
        sub = layers[(layers["batchnorm"] == bn) & (layers["layer"] == layers["depth"])]
        sub = sub.dropna(subset=["unit0_p50"])
        if sub.empty:
            continue
        seed = sorted(sub["seed"].unique())[0]
        one = sub[sub["seed"] == seed].sort_values("step")
        out[bn] = {"seed": int(seed), "layer": int(one["layer"].iloc[0]),
                   "steps": one["step"].to_numpy(),
                   **{f"p{q}": one[f"unit0_p{q}"].to_numpy(float) for q in (15, 50, 85)},
                   "diverged": bool((runs.loc[runs["run_id"] == one["run_id"].iloc[0],
                                              "status"] == "diverged").any())}
    return out, failed


def unit_drift(results):
    """Per (batchnorm, seed): how far the median of unit 0's sigmoid input (last hidden layer)
    moved over training, in units of its initial 15th-85th percentile spread, at each
    setting's best rate."""
    results, _ = tuned(results)
    runs, _ = _runs(results)
    layers = joined(results.layers, runs, ["batchnorm", "depth"])
    sub = layers[layers["layer"] == layers["depth"]].dropna(subset=["unit0_p50"])
    out = {}
    for (bn, seed), g in sub.sort_values("step").groupby(["batchnorm", "seed"]):
        spread = float(g["unit0_p85"].iloc[0] - g["unit0_p15"].iloc[0])
        drift = float(g["unit0_p50"].iloc[-1] - g["unit0_p50"].iloc[0])
        out[(bool(bn), int(seed))] = abs(drift) / spread if spread > 0 else float("inf")
    return out


@figure("batchnorm_unit_input")
def batchnorm_unit_input(results):
    table, failed = unit_percentiles(results)
    fig, axes = new_figure(ncols=len(table), width=FULL_WIDTH, height=2.4, sharey=True)
    numbers, parts = {}, []
    for ax, (bn, t) in zip(axes[0], table.items()):
        color = BN_COLORS[bn]
        ax.fill_between(t["steps"], t["p15"], t["p85"], color=color, alpha=0.25, linewidth=0)
        ax.plot(t["steps"], t["p50"], color=color)
        ax.plot(t["steps"], t["p15"], color=color, linewidth=0.6)
        ax.plot(t["steps"], t["p85"], color=color, linewidth=0.6)
        if t["diverged"]:
            mark_diverged(ax, t["steps"][-1:], t["p50"][-1:])
        ax.axhline(0.0, color="0.5", linewidth=0.6)
        ax.set_title(f"{BN_NAMES[bn]} (layer {t['layer']}, unit 0, seed {t['seed']})")
        ax.set_xlabel("step")
        spread0, spread1 = t["p85"][0] - t["p15"][0], t["p85"][-1] - t["p15"][-1]
        drift = t["p50"][-1] - t["p50"][0]
        numbers[BN_NAMES[bn]] = {"p50_start": float(t["p50"][0]), "p50_end": float(t["p50"][-1]),
                                 "median_drift": float(drift), "spread_start": float(spread0),
                                 "spread_end": float(spread1)}
    axes[0, 0].set_ylabel("sigmoid input of one unit")
    drift = unit_drift(results)
    for bn in table:
        values = [v for (b, _), v in drift.items() if b == bn]
        numbers[BN_NAMES[bn]]["drift_in_spreads"] = values
        parts.append(f"{BN_NAMES[bn]} {band(values)}")
    handles = [Line2D([], [], color="0.3", label="50th percentile"),
               Patch(color="0.3", alpha=0.25, label="15th-85th percentile")]
    legend_below(fig, handles=handles, labels=[h.get_label() for h in handles])
    _, best = tuned(results)
    caption = (f"The distribution of one sigmoid unit's input over training (15th, 50th, 85th "
               f"percentiles over the evaluation rows; unit 0 of the last hidden layer, first "
               f"seed; with batch norm its input is gamma xhat + beta), as in Ioffe & Szegedy's "
               f"Fig. 1(b, c){rates_caption(best)}. |Median drift| over training in units of "
               f"the initial 15-85th spread, mean [min, max] over seeds: {'; '.join(parts)}."
               + failed_note(failed))
    return [Figure(fig, "batchnorm_unit_input", with_verdict(caption, "batchnorm", results),
                   numbers)]
