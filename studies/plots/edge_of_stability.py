"""Figure of the `edge_of_stability` study (Cohen et al. 2021, Fig. 1): full-batch gradient
descent at several learning rates, with MSE and with cross-entropy.

- edge_of_stability: per loss (rows), (a) the sharpness (top eigenvalue of the training loss's
  Hessian) against step with its stability threshold 2/lr dashed in the same color, and (b) the
  training loss against step; one color per learning rate, mean line and min-max band over
  seeds. The caption quotes, per loss and lr, the mean sharpness/(2/lr) over the second half of
  training and when it first reached 2/lr (studies.analysis.findings.curvature).
"""
import numpy as np

from studies.analysis.findings.curvature import eos_table, objective_name

from . import Figure, figure
from ._curves import diverged_points, failed_count, seed_matrix, training_setup, with_keys
from ._runs import with_verdict
from .style import FULL_WIDTH, fmt, legend_below, log_axis, mark_diverged, new_figure, \
    seed_band

LR_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")


def _numbers(table):
    out = {}
    for (objective, lr), seeds in sorted(table.items()):
        late = np.array([m["late_ratio"] for m in seeds], float)
        reach = np.array([m["reach_step"] for m in seeds], float)
        with np.errstate(invalid="ignore"):
            out[f"{objective_name(objective)} lr {lr:g}"] = {
                "two_over_lr": 2 / lr, "late_ratio": float(np.nanmean(late)) if
                np.isfinite(late).any() else np.nan,
                "late_ratio_range": (float(np.nanmin(late)), float(np.nanmax(late)))
                if np.isfinite(late).any() else (np.nan, np.nan),
                "reach_step": float(np.nanmean(reach)) if np.isfinite(reach).any() else np.nan,
                "reached_seeds": int(np.isfinite(reach).sum()), "seeds": len(seeds),
                "initial_ratio": float(np.nanmean([m["initial"] for m in seeds])),
                "eos_rises": float(np.mean([m["eos_rises"] for m in seeds]))}
    return out


def _every(results):
    values = results.runs["metrics_every"].dropna().unique() if "metrics_every" in \
        results.runs else []
    return int(values[0]) if len(values) == 1 else "several"


@figure("edge_of_stability")
def edge_of_stability(results):
    hist = with_keys(results, results.history, ["objective", "lr"])
    objectives = sorted(hist["objective"].dropna().unique()) if not hist.empty else []
    lrs = sorted(hist["lr"].dropna().unique()) if not hist.empty else []
    colors = {lr: LR_COLORS[i % len(LR_COLORS)] for i, lr in enumerate(lrs)}
    fig, axes = new_figure(ncols=2, nrows=max(len(objectives), 1), width=FULL_WIDTH,
                           height=2.3 * max(len(objectives), 1))
    for i, objective in enumerate(objectives):
        sharp_ax, loss_ax = axes[i]
        part = hist[hist["objective"] == objective]
        for lr in lrs:
            runs = part[part["lr"] == lr]
            if runs.empty:
                continue
            measured = runs[runs["sharpness"].notna()]
            x, ys = seed_matrix(measured, "step", "sharpness")
            seed_band(sharp_ax, x, ys, colors[lr], label=f"lr {fmt(lr)}")
            sharp_ax.axhline(2 / lr, color=colors[lr], linestyle="--", linewidth=0.8,
                             label=f"2/lr = {fmt(2 / lr)}")
            x, ys = seed_matrix(runs, "step", "train_loss")
            seed_band(loss_ax, x, ys, colors[lr])
            points = diverged_points(runs, "step", "train_loss")
            if points:
                mark_diverged(loss_ax, *zip(*points), label="diverged (last finite loss)")
        name = objective_name(objective)
        sharp_ax.set_ylabel("sharpness (top Hessian eigenvalue)")
        sharp_ax.set_title(f"({chr(97 + 2 * i)}) {name}: sharpness")
        log_axis(loss_ax, "y", f"training loss ({name})")
        loss_ax.set_title(f"({chr(98 + 2 * i)}) {name}: training loss")
        top = max((2 / lr for lr in lrs), default=1.0)
        sharp_ax.set_ylim(0, 1.6 * top)
    for ax in axes[-1]:
        ax.set_xlabel("step")
    legend_below(fig, axes, ncol=2 * max(len(lrs), 1))
    numbers = _numbers(eos_table(results)) if objectives else {}
    parts = [f"{key}: {fmt(v['late_ratio'])} "
             f"[{fmt(v['late_ratio_range'][0])}, {fmt(v['late_ratio_range'][1])}] of 2/lr over "
             f"the second half, 2/lr first reached at step {fmt(v['reach_step'])} "
             f"({v['reached_seeds']}/{v['seeds']} seeds), {fmt(v['eos_rises'])} loss rises"
             for key, v in numbers.items()]
    failed = failed_count(results)
    caption = (
        f"Edge of stability: {training_setup(results)} of a tanh MLP, per learning rate (mean "
        f"and min-max band over seeds). Left, the sharpness (top eigenvalue of the whole "
        f"training loss's Hessian, Lanczos) with its threshold 2/lr dashed; right, the training "
        f"loss (log scale). Per loss and lr, the mean sharpness/(2/lr) over the second half "
        f"of training (mean over seeds [min, max]), the step at which it first reached 2/lr "
        f"(mean over the seeds that reached it) and the number of loss records (every "
        f"{_every(results)} steps) above the one before from then on (mean over seeds): {'; '.join(parts)}. Deviations from "
        f"Cohen et al. (2021): MNIST-1D instead of CIFAR-10, a 2x16 net, weights at 0.35 times "
        f"the Xavier scale, the sharpness every 20 steps rather than every step."
        + (f" {failed} failed runs have no data." if failed else ""))
    return [Figure(fig, "edge_of_stability", with_verdict(caption, "edge_of_stability",
                                                          results), numbers)]
