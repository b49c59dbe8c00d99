"""Figures of the `clipping` study (report sec. 8.1; Pascanu et al. 2013): global-norm gradient
clipping on an exploding setup, with the threshold swept.

The unclipped runs of the spec's grid repeat once per threshold (clip = none ignores the
threshold); the figures keep one per (learning rate, seed). Thresholds are plotted as they are
(the same x for every learning rate) and quoted as multiples of a reference norm, Pascanu et
al.'s "average norm over a sufficiently large number of updates": the mean over the recorded steps of the global gradient norm (before clipping) of the
unclipped runs at the smallest learning rate whose unclipped runs all completed (at a rate where
they diverge within a few steps, their average measures only the explosion); when every
unclipped run diverged, the mean norm at step 0.

- clipping_curves: training loss and gradient norm (before clipping) over steps, without
  clipping and at every threshold, one column per learning rate.
- clipping_threshold: final training loss and test accuracy against threshold / average
  gradient norm, per learning rate, with the unclipped result as a dashed line (or a cross in
  the "diverged" row) and Pascanu et al.'s 0.5-10x range shaded.
"""
import math

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.transforms import blended_transform_factory

from . import Figure, figure
from ._runs import failed_note, joined, runs_with_data, with_verdict
from .style import FULL_WIDTH, fmt, legend_rows, log_axis, mark_diverged, new_figure, seed_band

KEYS = ("lr", "clip", "clip_threshold")
NO_CLIP = "none"
NO_CLIP_COLOR = "#000000"
PASCANU_RANGE = (0.5, 10.0)
DIVERGED_ROW = 0.93


def threshold_color(value, values):
    """Thresholds from light (small) to dark red (large) on a fixed log scale."""
    lo, hi = math.log(min(values)), math.log(max(values))
    t = 0.5 if hi == lo else (math.log(value) - lo) / (hi - lo)
    return mpl.colormaps["viridis"](0.1 + 0.75 * t)


def lr_color(lr, lrs):
    rank = sorted(lrs).index(lr)
    return ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b")[rank % 5]


def distinct_runs(results):
    """The runs table without the unclipped duplicates (one per lr and seed), and the number of
    failed runs. Unclipped runs get clip_threshold NaN."""
    runs, failed = runs_with_data(results, KEYS)
    clipped = runs[runs["clip"] != NO_CLIP]
    plain = runs[runs["clip"] == NO_CLIP].sort_values("clip_threshold") \
        .drop_duplicates(["lr", "seed"]).assign(clip_threshold=np.nan)
    return pd.concat([plain, clipped], ignore_index=True), failed


def average_norms(results, runs):
    """{lr: mean global gradient norm (before clipping) of its unclipped runs over their
    recorded steps (up to divergence)}."""
    hist = joined(results.history, runs[runs["clip"] == NO_CLIP], ["lr"])
    out = {}
    for lr, g in hist.groupby("lr0"):
        v = g["grad_norm"].to_numpy(float)
        v = v[np.isfinite(v)]
        out[float(lr)] = float(v.mean()) if v.size else float("nan")
    return out


def reference_norm(results, runs):
    """(norm, where): the average unclipped norm at the smallest learning rate whose unclipped
    runs all completed, else the mean step-0 norm (see the module docstring)."""
    averages = average_norms(results, runs)
    plain = runs[runs["clip"] == NO_CLIP]
    for lr in sorted(plain["lr"].unique()):
        if (plain[plain["lr"] == lr]["status"] == "completed").all() and \
                np.isfinite(averages.get(float(lr), np.nan)):
            return averages[float(lr)], f"the unclipped runs at lr {fmt(lr)}"
    h = results.history
    first = h[h["run_id"].isin(plain["run_id"]) & (h["step"] == 0)]["grad_norm"]
    return float(first.mean()), "step 0 (every unclipped run diverged)"


def setup_text(results):
    """'A 10-layer tanh net (width 64, sigma_w^2 = 9: chaotic phase), SGD on digits'."""
    r = results.runs.iloc[0]
    return (f"A {int(r['depth'])}-layer {r['activation']} net (width {int(r['width'])}, "
            f"sigma_w^2 = {fmt(r['sigma_w2'])}: chaotic phase, exploding gradients), SGD on "
            f"{r['dataset']}")


def _label(row):
    return "no clipping" if row["clip"] == NO_CLIP else f"c = {fmt(row['clip_threshold'])}"


@figure("clipping_curves")
def clipping_curves(results):
    runs, failed = distinct_runs(results)
    hist = joined(results.history, runs, KEYS)
    lrs = sorted(runs["lr"].unique())
    thresholds = sorted(runs["clip_threshold"].dropna().unique())
    fig, axes = new_figure(ncols=len(lrs), nrows=2, width=FULL_WIDTH, height=4.3, sharex=True)
    averages = average_norms(results, runs)
    numbers = {}
    for j, lr in enumerate(lrs):
        loss_ax, norm_ax = axes[0, j], axes[1, j]
        for threshold in [None] + thresholds:
            if threshold is None:
                sel = runs[(runs["lr"] == lr) & (runs["clip"] == NO_CLIP)]
                color, width = NO_CLIP_COLOR, 1.3
            else:
                sel = runs[(runs["lr"] == lr) & (runs["clip_threshold"] == threshold)]
                color, width = threshold_color(threshold, thresholds), 0.9
            sub = hist[hist["run_id"].isin(sel["run_id"])].dropna(subset=["loss"])
            if sub.empty:
                continue
            loss = sub.pivot_table(index="seed", columns="step", values="loss")
            norm = sub.pivot_table(index="seed", columns="step", values="grad_norm")
            seed_band(loss_ax, loss.columns.to_numpy(), loss.to_numpy(float), color,
                      geometric=True, linewidth=width)
            seed_band(norm_ax, norm.columns.to_numpy(), norm.to_numpy(float), color,
                      geometric=True, linewidth=width)
            if threshold is not None:
                norm_ax.axhline(threshold, color=color, linestyle=":", linewidth=0.7)
            for r in sel[sel["status"] == "diverged"].itertuples():
                last = sub[sub["run_id"] == r.run_id].tail(1)
                mark_diverged(loss_ax, last["step"], last["loss"])
                mark_diverged(norm_ax, last["step"], last["grad_norm"])
        plain = runs[(runs["lr"] == lr) & (runs["clip"] == NO_CLIP)]
        loss_ax.set_title(f"SGD lr = {fmt(lr)}; " + (
            "every unclipped run diverged" if (plain["status"] == "diverged").all()
            else f"mean unclipped ||g|| = {fmt(averages.get(lr))}"))
        log_axis(loss_ax, "y", "mini-batch loss" if j == 0 else None)
        log_axis(norm_ax, "y", r"$\|g\|$ before clipping" if j == 0 else None)
        norm_ax.set_xlabel("step")
        numbers[float(lr)] = {"average_norm": averages.get(lr)}
    handles = [Line2D([], [], color=NO_CLIP_COLOR, linewidth=1.3, label="no clipping")]
    handles += [Line2D([], [], color=threshold_color(t, thresholds), label=f"c = {fmt(t)}")
                for t in thresholds]
    handles += [Line2D([], [], color="0.4", linestyle=":", label="threshold c"),
                Line2D([], [], marker="x", color="black", linestyle="none", label="diverged")]
    legend_rows(fig, [handles])
    summary = []
    for lr in lrs:
        plain = runs[(runs["lr"] == lr) & (runs["clip"] == NO_CLIP)]
        n_div = int((plain["status"] == "diverged").sum())
        if n_div == len(plain):
            at = plain["steps_done"].max() if "steps_done" in plain else None
            summary.append(f"lr {fmt(lr)}: every unclipped run diverged (by step {at})")
        else:
            summary.append(f"lr {fmt(lr)}: mean unclipped norm {fmt(averages.get(lr))}, "
                           f"{n_div} of {len(plain)} unclipped runs diverged")
    caption = (f"{setup_text(results)}: mini-batch loss (top) and global gradient norm before "
               f"clipping (bottom) over training, without clipping (black) and with global-norm "
               f"clipping at each threshold c (dotted: c); geometric mean and seed range over "
               f"{runs['seed'].nunique()} seeds, crosses: diverged runs. "
               f"{'; '.join(summary)}." + failed_note(failed))
    return [Figure(fig, "clipping_curves", with_verdict(caption, "clipping", results), numbers)]


def threshold_table(results):
    """Per (lr, threshold or None): seeds' final loss and accuracy, status counts, the threshold
    as a multiple of the reference norm, and how many of the recorded steps (every
    metrics_every-th step, not every step) had a norm above the threshold."""
    runs, failed = distinct_runs(results)
    averages = average_norms(results, runs)
    reference, _ = reference_norm(results, runs)
    hist = joined(results.history, runs, KEYS)
    rows = []
    for (lr, threshold), g in runs.groupby(["lr", runs["clip_threshold"].fillna(-1.0)]):
        threshold = None if threshold < 0 else float(threshold)
        h = hist[hist["run_id"].isin(g["run_id"])]
        norms = h["grad_norm"].to_numpy(float)
        finite = norms[np.isfinite(norms)]
        active = int(np.sum(finite > threshold)) if threshold is not None else 0
        done = g[g["status"] == "completed"]
        rows.append({"lr": float(lr), "threshold": threshold,
                     "multiple": threshold / reference if threshold is not None
                     else float("nan"),
                     "final_loss": float(done["final_loss"].mean()) if len(done) else np.nan,
                     "loss_min": float(done["final_loss"].min()) if len(done) else np.nan,
                     "loss_max": float(done["final_loss"].max()) if len(done) else np.nan,
                     "test_accuracy": float(done["final_test_accuracy"].mean())
                     if len(done) else np.nan,
                     "diverged": int((g["status"] == "diverged").sum()), "runs": len(g),
                     "recorded_above": active, "recorded": int(np.isfinite(norms).sum())})
    return pd.DataFrame(rows), averages, failed


def _result(r):
    """'loss 0.05 [0.04, 0.06], 85%' of a threshold_table row (completed seeds)."""
    return (f"loss {fmt(r['final_loss'])} [{fmt(r['loss_min'])}, {fmt(r['loss_max'])}], "
            f"{fmt(100 * r['test_accuracy'])}%")


@figure("clipping_threshold")
def clipping_threshold(results):
    table, averages, failed = threshold_table(results)
    runs, _ = distinct_runs(results)
    reference, where = reference_norm(results, runs)
    lrs = sorted(table["lr"].unique())
    fig, axes = new_figure(ncols=2, width=FULL_WIDTH, height=2.5)
    loss_ax, acc_ax = axes[0]
    for ax in (loss_ax, acc_ax):  # absolute thresholds; grey: 0.5-10x the reference norm
        ax.axvspan(*(np.asarray(PASCANU_RANGE) * reference), color="0.9", linewidth=0,
                   zorder=0)
    handles, plain_diverged = [], []
    for k, lr in enumerate(lrs):
        color = lr_color(lr, lrs)
        handles.append(Line2D([], [], color=color, marker="o", markersize=2.5,
                              label=f"lr {fmt(lr)}"))
        sub = runs[(runs["lr"] == lr) & (runs["clip"] != NO_CLIP)].copy()
        sub["multiple"] = sub["clip_threshold"]  # x: c itself, the same for every lr
        for ax, column, scale in ((loss_ax, "final_loss", 1.0),
                                  (acc_ax, "final_test_accuracy", 100.0)):
            done = sub.assign(value=sub[column].where(sub["status"] == "completed") * scale)
            piv = done.pivot_table(index="seed", columns="multiple", values="value",
                                   dropna=False)
            seed_band(ax, piv.columns.to_numpy(float), piv.to_numpy(float), color,
                      geometric=column == "final_loss", marker="o", markersize=2.5)
            row = blended_transform_factory(ax.transData, ax.transAxes)
            div = sub[sub["status"] == "diverged"]
            if len(div):
                ax.plot(div["multiple"], np.full(len(div), DIVERGED_ROW - 0.05 * k), "x",
                        color=color, transform=row, markersize=4, clip_on=False)
            plain = table[(table["lr"] == lr) & table["threshold"].isna()].iloc[0]
            if plain["diverged"] < plain["runs"]:
                ax.axhline(plain["final_loss" if column == "final_loss" else "test_accuracy"]
                           * scale, color=color, linestyle="--", linewidth=0.8)
            elif column == "final_loss":
                plain_diverged.append(Line2D([], [], color=color, marker="x", linestyle="none",
                                             label=f"lr {fmt(lr)} without clipping: diverged"))
        for ax in (loss_ax, acc_ax):
            ax.text(0.02, DIVERGED_ROW, "diverged:", transform=ax.transAxes, va="center",
                    fontsize=5.5, color="0.3")
    xlabel = "clipping threshold c (global gradient norm)"
    log_axis(loss_ax, "both", xlabel)
    loss_ax.set_ylabel("final training loss")
    top = loss_ax.get_ylim()[1]
    loss_ax.set_ylim(top=top * 30)
    log_axis(acc_ax, "x", xlabel)
    low = min(PASCANU_RANGE[0] * reference, np.nanmin(table["threshold"])) / 2
    high = max(PASCANU_RANGE[1] * reference, np.nanmax(table["threshold"])) * 2
    for ax in (loss_ax, acc_ax):
        ax.set_xlim(low, high)
    acc_ax.set_ylabel("final test accuracy (%)")
    acc_ax.set_ylim(0, 115)
    handles += [Line2D([], [], color="0.3", linestyle="--", label="no clipping"),
                Line2D([], [], marker="x", color="0.3", linestyle="none",
                       label="diverged (top row)"),
                Patch(color="0.9", label=f"Pascanu et al.: 0.5-10x {fmt(reference)}")]
    legend_rows(fig, [handles, plain_diverged])
    parts = []
    for lr in lrs:
        sub = table[table["lr"] == lr]
        plain = sub[sub["threshold"].isna()].iloc[0]
        base = (f"no clipping {_result(plain)}" if plain["diverged"] < plain["runs"] else
                f"no clipping diverged ({int(plain['diverged'])}/{int(plain['runs'])})")
        done = sub[sub["threshold"].notna() & (sub["diverged"] < sub["runs"])]
        best = done.loc[done["final_loss"].idxmin()] if done["final_loss"].notna().any() \
            else None
        parts.append(f"lr {fmt(lr)}: {base}" + (
            f", best c = {fmt(best['threshold'])} ({fmt(best['multiple'])}x) {_result(best)}"
            if best is not None else ", every clipped run diverged"))
    numbers = {"table": table.to_dict("records"), "average_norm": averages,
               "reference_norm": reference}
    caption = (f"{setup_text(results)}: final training loss and test accuracy against the "
               f"global-norm clipping threshold c, per learning rate (mean and seed range over "
               f"{runs['seed'].nunique()} seeds); dashed: without clipping; grey: the 0.5-10x "
               f"range Pascanu et al. recommend around the average unclipped gradient norm "
               f"{fmt(reference)} (mean norm before clipping over the recorded steps of {where}). "
               f"Final loss (mean [seed range]) and test accuracy: {' | '.join(parts)}."
               + failed_note(failed))
    return [Figure(fig, "clipping_threshold", with_verdict(caption, "clipping", results), numbers)]
