"""Figure of the `critical_batch` study (report sec. 5.1, McCandlish et al. 2018): steps and
examples needed to reach a target training loss against the batch size, each batch size at its
best rate of the grid, the fit (S/S_min - 1)(E/E_min - 1) = 1 and its knee B_crit = E_min/S_min
beside the measured noise scale B_simple (numbers: studies.analysis.findings.batching).
"""
import numpy as np
from matplotlib.lines import Line2D

from studies.analysis.findings.batching import critical_batch_summary

from . import Figure, figure
from ._runs import with_verdict
from .style import FULL_WIDTH, fmt, legend_rows, log_axis, new_figure, seed_band

DATA, FIT, NOISE = "#1b9e77", "#000000", "#d95f02"


@figure("critical_batch")
def critical_batch(results):
    s = critical_batch_summary(results)
    t, pooled, seeds = s["tuned"], s["pooled"], s["per_seed"]
    fig, axes = new_figure(ncols=2, width=FULL_WIDTH, height=2.6)
    ax, pareto = axes[0]
    numbers = {"pooled": pooled, "per_seed": seeds, "best_lr": s["best_lr"],
               "steps": {int(b): float(v) for b, v in s["steps_mean"].items()},
               "target": s["target"]}
    if len(t):
        piv = t.pivot_table(index="seed", columns="batch_size", values="steps")
        sizes = piv.columns.to_numpy(float)
        seed_band(ax, sizes, piv.to_numpy(float), DATA, geometric=True, marker="o",
                  markersize=3)
        ex = t.pivot_table(index="seed", columns="batch_size", values="examples")
        for seed in piv.index:
            pareto.plot(ex.loc[seed].to_numpy(float), piv.loc[seed].to_numpy(float), "o",
                        color=DATA, markersize=3, alpha=0.7)
        if np.isfinite(pooled["B_crit"]):
            b = np.geomspace(sizes.min() / 2, sizes.max() * 2, 100)
            fit_s = pooled["S_min"] + pooled["E_min"] / b
            ax.plot(b, fit_s, color=FIT, linewidth=0.8, linestyle="--")
            pareto.plot(fit_s * b, fit_s, color=FIT, linewidth=0.8, linestyle="--")
            ax.axvline(pooled["B_crit"], color=FIT, linewidth=0.8)
        noise = [v["B_simple"] for v in seeds.values() if np.isfinite(v["B_simple"])]
        if noise:
            ax.axvspan(min(noise), max(noise), color=NOISE, alpha=0.2, linewidth=0)
            ax.axvline(pooled["B_simple"], color=NOISE, linewidth=1.0)
    log_axis(ax, "x", "batch size B")
    log_axis(ax, "y", f"steps to train loss {s['target']:g}")
    log_axis(pareto, "x", "examples E = B S")
    log_axis(pareto, "y", "steps S")
    ax.set_title("steps against batch size (best rate per B)")
    pareto.set_title("steps against examples")
    legend_rows(fig, [[Line2D([], [], color=DATA, marker="o", markersize=3,
                              label="measured (seed mean, range)"),
                       Line2D([], [], color=FIT, linestyle="--", label="fit S = S_min + E_min/B"),
                       Line2D([], [], color=FIT, label="B_crit = E_min/S_min"),
                       Line2D([], [], color=NOISE, label="B_simple at the target (seed range)")]])
    rates = ", ".join(f"B {b}: {fmt(lr)}" for b, lr in s["best_lr"].items())
    n = len(seeds)
    caption = (f"Steps S to reach training loss {s['target']:g} against batch size B (left) and "
               f"against examples E = B S (right), SGD on digits, each batch size at the rate "
               f"of its grid that reaches the target in the fewest steps ({rates}); mean and "
               f"range over {n} seeds. Fit of (S/S_min - 1)(E/E_min - 1) = 1: S_min "
               f"{fmt(pooled['S_min'])}, E_min {fmt(pooled['E_min'])}, B_crit "
               f"{fmt(pooled['B_crit'])} (per seed {', '.join(fmt(v['B_crit']) for v in seeds.values())}); "
               f"measured noise scale B_simple = tr(Sigma)/|G|^2 on the training set where the "
               f"tuned runs reach the target {fmt(pooled['B_simple'])} (per seed "
               f"{', '.join(fmt(v['B_simple']) for v in seeds.values())}). Deviations from the "
               f"paper: a small MLP on a 640-row training set, a factor-2 rate grid instead of a "
               f"finer tuning, steps counted at metric rows every "
               f"{int(results.runs['metrics_every'].max())} steps (log-loss interpolation).")
    return [Figure(fig, "critical_batch", with_verdict(caption, "critical_batch", results),
                   numbers)]
