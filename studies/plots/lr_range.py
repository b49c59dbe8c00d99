"""Figure of the `lr_range` study (report sec. 9, Smith 2017): the range test's loss against
its exponentially growing rate, with the suggested rate, and the final loss of the fixed-rate
grid with its divergence edge and 2/lambda_max at initialization (numbers:
studies.analysis.findings.batching).
"""
import numpy as np
from matplotlib.lines import Line2D
from matplotlib.transforms import blended_transform_factory

from studies.analysis.findings.batching import lr_range_summary

from . import Figure, figure
from ._runs import with_verdict
from .style import FULL_WIDTH, fmt, legend_rows, log_axis, new_figure, seed_band

RANGE, GRID = "#7570b3", "#1b9e77"
SUGGEST, BEST, STABLE, EDGE = "#d95f02", "#000000", "#e7298a", "#666666"


def _gmean(values):
    v = np.asarray([x for x in values if np.isfinite(x) and x > 0], float)
    return float(np.exp(np.mean(np.log(v)))) if v.size else np.nan


def _lines(ax, per_seed, best):
    """Vertical lines at the suggested rate, the best fixed rate, 2/lambda_max and the
    divergence edge (geometric means over seeds; a value no seed has is not drawn)."""
    for value, style in ((_gmean(v["suggested"] for v in per_seed.values()),
                          dict(color=SUGGEST, linestyle="--", linewidth=0.9)),
                         (best, dict(color=BEST, linewidth=0.9)),
                         (_gmean(v["stable"] for v in per_seed.values()),
                          dict(color=STABLE, linestyle=":", linewidth=1.1)),
                         (_gmean(v["edge"] for v in per_seed.values()),
                          dict(color=EDGE, linestyle="-.", linewidth=0.9))):
        if np.isfinite(value):
            ax.axvline(value, **style)


@figure("lr_range")
def lr_range(results):
    s = lr_range_summary(results)
    curves, grid, per_seed, best = s["curves"], s["grid"], s["per_seed"], s["best"]
    fig, axes = new_figure(ncols=2, width=FULL_WIDTH, height=2.6)
    test, fixed = axes[0]
    for seed, c in curves.items():
        test.plot(c["lr"], c["loss"], color=RANGE, linewidth=0.8, alpha=0.8)
    if curves:  # the blow-up is drawn up to 1000x the initial loss
        first = max(float(c["loss"].iloc[0]) for c in curves.values() if len(c))
        low = min(float(c["loss"].min()) for c in curves.values() if len(c))
        test.set_ylim(low / 2, 1e3 * first)
    if len(grid):
        piv = grid.pivot_table(index="seed", columns="lr0", values="final_loss")
        lrs = piv.columns.to_numpy(float)
        vals = piv.to_numpy(float)
        seed_band(fixed, lrs, np.where(np.isfinite(vals), vals, np.nan), GRID, geometric=True,
                  marker="o", markersize=3)
        div = grid[grid["status"] == "diverged"]
        if len(div):
            row = blended_transform_factory(fixed.transData, fixed.transAxes)
            fixed.plot(div["lr0"], np.full(len(div), 0.93), "x", color=GRID, markersize=4,
                       transform=row, clip_on=False)
    for ax in (test, fixed):
        if per_seed:
            _lines(ax, per_seed, best)
        log_axis(ax, "x", "learning rate")
        log_axis(ax, "y", None)
    test.set_ylabel("training loss")
    test.set_title("range test: lr = lr0 g^t")
    fixed.set_title("fixed rates: final loss (x: diverged)")
    legend_rows(fig, [[Line2D([], [], color=RANGE, label="range test (one line per seed)"),
                       Line2D([], [], color=GRID, marker="o", markersize=3,
                              label="fixed rate (seed mean, range)"),
                       Line2D([], [], color=SUGGEST, linestyle="--", label="suggested")],
                      [Line2D([], [], color=BEST, label="best fixed"),
                       Line2D([], [], color=STABLE, linestyle=":", label="2/lambda_max (init)"),
                       Line2D([], [], color=EDGE, linestyle="-.", label="divergence edge")]])
    n = len(per_seed)
    pick = lambda key: ", ".join(fmt(v[key]) for v in per_seed.values())  # noqa: E731
    steps = int(results.runs["steps"].max())
    caption = (f"Learning-rate range test (left): full-batch GD on digits (MSE) with the rate "
               f"raised by a constant factor every step over {steps} steps, one line per seed "
               f"({n}), up to the run's stop; suggested rate = rate at the lowest loss before "
               f"the loss exceeds 4x its minimum (per seed {pick('suggested')}; a tenth of it: "
               f"{pick('tenth')}). Right: final loss after {steps} steps of the same setup at "
               f"fixed rates (mean and range over seeds; crosses: diverged runs); best fixed "
               f"rate {fmt(best)}; divergence edge (geometric mean of the last completed and "
               f"first diverged rate) per seed {pick('edge')} against 2/lambda_max at "
               f"initialization {pick('stable')}. Deviations from the paper: the rate grows "
               f"exponentially (Smith raises it linearly), full-batch GD instead of mini-batch "
               f"SGD, and the loss (not the accuracy) is read.")
    numbers = {"best": best, "interior": s["interior"], "per_seed": per_seed}
    return [Figure(fig, "lr_range", with_verdict(caption, "lr_range", results), numbers)]
