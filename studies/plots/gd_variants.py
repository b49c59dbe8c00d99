"""Figure of the `gd_variants` study (report sec. 5.1): batch, stochastic and mini-batch
gradient descent for the same number of steps, each batch size at its own best rate of the
spec's rate grid (the finding's choice).

- gd_variants: the loss on the whole training set against epochs, against gradient evaluations
  (samples processed = step x batch) and against the seconds spent in the training kernel
  (history.train_time), log x axes; one color per batch size, seed bands.
"""
import numpy as np
import pandas as pd

from studies.analysis.findings.common import at_best_rates, band, rates_text
from studies.analysis.findings.training import gd_comparison, gd_label

from . import Figure, figure
from ._runs import with_verdict
from ._curves import (
    completed_runs,
    diverged_points,
    failed_count,
    first_below,
    seed_matrix,
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

# Fixed colors: batch GD, SGD, and mini-batch sizes by rank.
BATCH_GD_COLOR, SGD_COLOR = "#1f77b4", "#d62728"
MINI_BATCH_COLORS = ("#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
TARGET_LOSS = 0.5


def variant_name(batch, n_train):
    if batch == 0 or (n_train and batch >= n_train):
        return f"batch GD ({n_train} rows)" if n_train else "batch GD"
    if batch == 1:
        return "SGD (1 row)"
    return f"mini-batch ({batch} rows)"


def _colors(batches):
    minis = [b for b in batches if b not in (0, 1)]
    out = {0: BATCH_GD_COLOR, 1: SGD_COLOR}
    out.update({b: MINI_BATCH_COLORS[i % len(MINI_BATCH_COLORS)] for i, b in enumerate(minis)})
    return out


def _history(results):
    """History of finished runs with batch_size, rows per step and samples processed."""
    runs = completed_runs(results)
    if runs.empty or results.history.empty:
        return pd.DataFrame(), {}
    hist = results.history.merge(runs[["run_id", "batch_size", "seed", "status"]], on="run_id")
    # Steps per epoch from the stored epoch counter (epoch = step / floor(N / B)); the training
    # rows N follow from a mini-batch size (exactly from B = 1), and batch GD takes N per step.
    steps_per_epoch = {}
    for batch, rows in hist.groupby("batch_size"):
        r = rows[(rows["epoch"] > 0) & (rows["step"] > 0)]
        steps_per_epoch[int(batch)] = float(np.median(r["step"] / r["epoch"])) if len(r) \
            else np.nan
    sizes = [b * k for b, k in steps_per_epoch.items() if b > 0 and np.isfinite(k)]
    full = steps_per_epoch.get(1, np.nan) if 1 in steps_per_epoch else \
        (max(sizes) if sizes else np.nan)
    rows_per_step = {b: (full if b == 0 else b) for b in steps_per_epoch}
    hist = hist.assign(samples=hist["step"] * hist["batch_size"].map(
        lambda b: rows_per_step.get(int(b), np.nan)))
    n = round(full) if np.isfinite(full) else None
    return hist, {"n_train": n}


@figure("gd_variants")
def gd_variants(results):
    full = results
    results, best = at_best_rates(full, ("batch_size",))
    hist, info = _history(results)
    n_train = info.get("n_train")
    batches = sorted(int(b) for b in hist["batch_size"].unique()) if not hist.empty else []
    colors = _colors(batches)
    fig, axes = new_figure(ncols=3, width=FULL_WIDTH, height=2.6, sharey=True)
    panels = (("epoch", "epochs"), ("samples", "gradient evaluations (samples processed)"),
              ("train_time", "training time (s, kernel only)"))
    numbers = {}
    initial = []
    for batch in batches:
        part = hist[hist["batch_size"] == batch]
        name = variant_name(batch, n_train)
        entry = numbers.setdefault(name, {})
        for ax, (x, label) in zip(axes[0], panels):
            later = part[part["step"] > 0]   # log x: the initial point sits at x = 0
            _xs, ys = seed_matrix(later, "step", "train_loss")
            xv = seed_matrix(later, "step", x)[1]
            with np.errstate(invalid="ignore"):
                xmean = np.nanmean(xv, axis=0)
            seed_band(ax, xmean, ys, colors[batch], label=name)
            points = [(float(px), float(py)) for px, py in
                      diverged_points(part[part["step"] > 0], x, "train_loss")]
            if points:
                mark_diverged(ax, *zip(*points), label="diverged (last finite loss)")
            if x == "epoch":
                final = ys[:, -1][np.isfinite(ys[:, -1])] if ys.size else np.array([])
                entry["final_loss_range"] = (float(final.min()), float(final.max())) \
                    if final.size else (np.nan, np.nan)
                entry["final_epoch"] = float(np.nanmax(xmean)) if len(xmean) else np.nan
                entry["final_loss"] = float(np.nanmean(ys[:, -1])) if ys.size else np.nan
                entry["lr"] = best.get((batch,), (np.nan,))[0]
            elif x == "samples":
                entry[f"samples_to_loss_{TARGET_LOSS}"] = first_below(xmean, ys, TARGET_LOSS)
            else:
                entry[f"seconds_to_loss_{TARGET_LOSS}"] = first_below(xmean, ys, TARGET_LOSS)
                entry["seconds_total"] = float(np.nanmax(xmean)) if len(xmean) else np.nan
        start = part[part["step"] == 0]["train_loss"]
        if len(start):
            initial.append(float(start.mean()))
    for ax, (x, label) in zip(axes[0], panels):
        log_axis(ax, "x", label)
        if initial:
            ax.axhline(np.mean(initial), color="0.5", linestyle=":", linewidth=0.8,
                       label="loss at initialization")
        ax.axhline(TARGET_LOSS, color="0.6", linestyle="-", linewidth=0.5,
                   label=f"loss {TARGET_LOSS:g} (target in the caption)")
    log_axis(axes[0, 0], "y", "training-set loss (cross-entropy)")
    axes[0, 0].set_title("(a) per epoch")
    axes[0, 1].set_title("(b) per gradient evaluation")
    axes[0, 2].set_title("(c) per second")
    legend_below(fig, axes, ncol=5)
    failed = failed_count(results)
    epochs, steps, per_epoch, per_step = gd_comparison(results) if batches else (0, 0, {}, {})
    for batch in per_epoch:
        entry = numbers[variant_name(int(batch), n_train)]
        entry["loss_at_common_epochs"] = list(per_epoch[batch])
        entry["common_epochs"] = epochs
    grid = next(iter(best.values()))[1] if best else []
    rates = (f", each at its own best rate of the grid {fmt(grid[0])}-{fmt(grid[-1])} "
             f"({rates_text(best, lambda k: gd_label(k[0]))})" if len(grid) > 1 else "")
    at_epochs = "; ".join(f"{gd_label(b)} {band(v)}" for b, v in per_epoch.items())
    at_steps = "; ".join(f"{gd_label(b)} {band(v)}" for b, v in per_step.items())
    every = int(results.runs["metrics_every"].iloc[0]) if "metrics_every" in results.runs and \
        len(results.runs) else 0
    to_target = "; ".join(f"{n.split(' (')[0]} {fmt(v.get(f'samples_to_loss_{TARGET_LOSS}'))}"
                          for n, v in numbers.items())
    caption = (
        f"Loss on the whole training set for batch, stochastic and mini-batch gradient descent, "
        f"{steps} steps each of the plain SGD update ({n_train} training rows){rates}; mean and min-max band over seeds, against (a) "
        f"epochs, (b) gradient evaluations (samples processed = step x batch) and (c) seconds "
        f"in the training kernel (log scales; dotted: the loss at initialization). Train loss, "
        f"mean [min, max] over seeds, at {fmt(epochs)} epochs (SGD's last record; the others "
        f"read linearly between their records every {every} steps; batch GD has then taken "
        f"{fmt(epochs)} steps): {at_epochs}. After {steps} steps: {at_steps}. Samples "
        f"processed to loss {TARGET_LOSS:g} (seed mean; n/a: never): {to_target}." + (f" {failed} failed runs have no data." if failed else ""))
    return [Figure(fig, "gd_variants", with_verdict(caption, "gd_variants", full), numbers)]
