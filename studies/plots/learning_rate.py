"""Figures of the `learning_rate` study (report sec. 9): final loss against the learning rate on
a log grid per optimizer and schedule, and the schedules compared.

- learning_rate_sweep: final training loss (log) against the learning rate (log), one panel per
  schedule, one color per optimizer (seed band); diverged runs are crosses in the "diverged" row
  at the top of each panel, never dropped.
- learning_rate_schedules: top, each schedule's lr(t)/lr0 as recorded; bottom, the training
  loss over steps under each schedule, per optimizer at the learning rate that was best for it
  with a constant schedule.
"""

import numpy as np
from matplotlib.lines import Line2D
from matplotlib.transforms import blended_transform_factory

from . import Figure, figure
from ._runs import failed_note, joined, ordered, runs_with_data, with_verdict
from .style import (FULL_WIDTH, OPTIMIZER_COLORS, color_for, display, fmt, legend_rows,
                    log_axis, mark_diverged, new_figure, seed_band)

KEYS = ("optimizer", "schedule", "lr")
SCHEDULE_ORDER = ("constant", "step", "exponential", "inverse_time", "cosine")
SCHEDULE_COLORS = {"constant": "#000000", "step": "#1b9e77", "exponential": "#e6ab02",
                   "inverse_time": "#7570b3", "cosine": "#e7298a"}
SCHEDULE_NAMES = {"constant": "constant", "step": "step decay", "exponential": "exponential",
                  "inverse_time": "inverse time", "cosine": "cosine"}
DIVERGED_ROW = 0.93   # axes fraction of the "diverged" row


def final_table(results):
    """One row per non-failed run: keys, seed, status, final training loss (NaN if diverged)."""
    runs, failed = runs_with_data(results, KEYS)
    table = runs[["run_id", "seed", "status", "final_loss", "final_test_accuracy", *KEYS]].copy()
    table["final_loss"] = table["final_loss"].where(table["status"] == "completed")
    return table, failed


def best_lr(table, optimizer, schedule):
    """(lr, mean final loss) with the lowest mean final loss over seeds among learning rates at
    which no seed diverged; (None, nan) when every rate diverged."""
    sub = table[(table["optimizer"] == optimizer) & (table["schedule"] == schedule)]
    ok = sub.groupby("lr").filter(lambda g: (g["status"] == "completed").all())
    if ok.empty:
        return None, float("nan")
    mean = ok.groupby("lr")["final_loss"].mean()
    return float(mean.idxmin()), float(mean.min())


def smallest_diverged(table, optimizer, schedule):
    sub = table[(table["optimizer"] == optimizer) & (table["schedule"] == schedule)
                & (table["status"] == "diverged")]
    return float(sub["lr"].min()) if len(sub) else None


@figure("learning_rate_sweep")
def learning_rate_sweep(results):
    table, failed = final_table(results)
    schedules = ordered(table["schedule"], SCHEDULE_ORDER)
    optimizers = ordered(table["optimizer"], OPTIMIZER_COLORS)
    fig, axes = new_figure(ncols=len(schedules), width=FULL_WIDTH, height=2.5, sharey=True)
    numbers, parts = {}, []
    finite = table["final_loss"][np.isfinite(table["final_loss"]) & (table["final_loss"] > 0)]
    y_low = max(float(finite.min()) / 3, 1e-7) if len(finite) else 1e-3
    y_high = float(finite.max()) * 30 if len(finite) else 10.0
    any_diverged = False
    for ax, schedule in zip(axes[0], schedules):
        row = blended_transform_factory(ax.transData, ax.transAxes)
        for k, opt in enumerate(optimizers):
            sub = table[(table["optimizer"] == opt) & (table["schedule"] == schedule)]
            color = color_for("optimizer", opt)
            piv = sub.pivot_table(index="seed", columns="lr", values="final_loss",
                                  dropna=False)
            if len(piv.columns):
                seed_band(ax, piv.columns.to_numpy(float), piv.to_numpy(float), color,
                          geometric=True, marker="o", markersize=2.5, label=display(opt))
            div = sub[sub["status"] == "diverged"]
            if len(div):
                any_diverged = True
                lrs = div["lr"].to_numpy(float) * (1 + 0.12 * (k - (len(optimizers) - 1) / 2))
                ax.plot(lrs, np.full(len(div), DIVERGED_ROW - 0.045 * k), marker="x",
                        color=color, linestyle="none", markersize=4, transform=row,
                        clip_on=False)
            lr, loss = best_lr(table, opt, schedule)
            first_bad = smallest_diverged(table, opt, schedule)
            numbers.setdefault(schedule, {})[opt] = {"best_lr": lr, "best_loss": loss,
                                                     "smallest_diverged_lr": first_bad}
        ax.axhline(y_high, color="0.6", linewidth=0.6)
        ax.text(0.02, DIVERGED_ROW - 0.045, "diverged:", transform=ax.transAxes, fontsize=5.5,
                color="0.3", va="center")
        log_axis(ax, "x", "learning rate")
        log_axis(ax, "y", None)
        ax.set_ylim(y_low, y_high * 20)
        ax.set_title(f"schedule: {SCHEDULE_NAMES.get(schedule, schedule)}")
    axes[0, 0].set_ylabel("final training loss")
    handles = [Line2D([], [], color=color_for("optimizer", o), marker="o", markersize=2.5,
                      label=display(o)) for o in optimizers]
    if any_diverged:
        handles.append(Line2D([], [], marker="x", color="0.3", linestyle="none",
                              label="diverged (top row, optimizer color)"))
    legend_rows(fig, [handles])
    for schedule in schedules:
        for opt in optimizers:
            v = numbers[schedule][opt]
            bad = v["smallest_diverged_lr"]
            parts.append(f"{display(opt)}/{SCHEDULE_NAMES.get(schedule, schedule)}: best lr "
                         f"{fmt(v['best_lr'])} (loss {fmt(v['best_loss'])}), diverged from "
                         f"{fmt(bad) if bad else 'none'}")
    n_div = int((table["status"] == "diverged").sum())
    steps = int(results.runs["steps"].max()) if "steps" in results.runs else None
    n_seeds = int(table["seed"].nunique())
    spread = "one seed" if n_seeds == 1 else f"mean and seed range over {n_seeds} seeds"
    caption = (f"Final training loss after {steps} steps against the learning rate (log-log; "
               f"{spread}), per schedule and optimizer; crosses in the top row: "
               f"runs that diverged (loss non-finite, or its running mean above 10x the initial "
               f"training loss), {n_div} of "
               f"{len(table)}. {'; '.join(parts)}." + failed_note(failed))
    return [Figure(fig, "learning_rate_sweep", with_verdict(caption, "learning_rate", results),
                   numbers)]


@figure("learning_rate_schedules")
def learning_rate_schedules(results):
    table, failed = final_table(results)
    runs, _ = runs_with_data(results, KEYS)
    hist = joined(results.history, runs, KEYS)
    schedules = ordered(table["schedule"], SCHEDULE_ORDER)
    optimizers = ordered(table["optimizer"], OPTIMIZER_COLORS)
    fig, axes = new_figure(ncols=len(optimizers), nrows=2, width=FULL_WIDTH, height=4.2,
                           sharex=True, gridspec_kw={"height_ratios": [1, 2]})
    numbers, parts = {}, []
    for j, opt in enumerate(optimizers):
        top, ax = axes[0, j], axes[1, j]
        lr, _ = best_lr(table, opt, "constant") if "constant" in schedules else \
            best_lr(table, opt, schedules[0])
        if lr is None:
            ax.text(0.5, 0.5, "every constant-lr run diverged", transform=ax.transAxes,
                    ha="center", fontsize=6)
            continue
        for schedule in schedules:
            color = SCHEDULE_COLORS.get(schedule, "#333333")
            sub = hist[(hist["optimizer"] == opt) & (hist["schedule"] == schedule)
                       & np.isclose(hist["lr0"], lr)]
            if sub.empty:
                continue
            first = sub[sub["seed"] == sub["seed"].min()].dropna(subset=["lr"])
            if j == 0:  # lr(t)/lr0 is the same for every optimizer: drawn once
                top.plot(first["step"], first["lr"] / lr, color=color,
                         drawstyle="steps-post" if schedule == "step" else "default")
            piv = sub.pivot_table(index="seed", columns="step", values="train_loss")
            seed_band(ax, piv.columns.to_numpy(), piv.to_numpy(float), color, geometric=True)
            ids = sub["run_id"].unique()
            diverged = table[table["run_id"].isin(ids) & (table["status"] == "diverged")]
            for rid in diverged["run_id"]:
                last = sub[sub["run_id"] == rid].dropna(subset=["train_loss"]).tail(1)
                if len(last):
                    mark_diverged(ax, last["step"], last["train_loss"])
            final = table[table["run_id"].isin(ids)]
            loss = float(final["final_loss"].mean())
            numbers.setdefault(opt, {"lr": lr})[schedule] = loss
        top.set_title(f"{display(opt)}, lr$_0$ = {fmt(lr)}", color="black")
        top.set_ylim(-0.05, 1.1)
        if j > 0:
            top.set_axis_off()
            top.text(0.5, 0.3, "lr(t)/lr$_0$ as in the first panel", transform=top.transAxes,
                     ha="center", fontsize=6, color="0.4")
        log_axis(ax, "y", None)
        ax.set_xlabel("step")
        parts.append(f"{display(opt)} at lr {fmt(lr)}: " + ", ".join(
            f"{SCHEDULE_NAMES.get(s, s)} {fmt(numbers[opt].get(s))}" for s in schedules))
    axes[0, 0].set_ylabel(r"lr(t) / lr$_0$")
    axes[1, 0].set_ylabel("training loss")
    handles = [Line2D([], [], color=SCHEDULE_COLORS.get(s, "#333333"),
                      label=SCHEDULE_NAMES.get(s, s)) for s in schedules]
    legend_rows(fig, [handles])
    high = []
    for opt in optimizers:
        ok = table[(table["optimizer"] == opt) & (table["schedule"] == schedules[0])]
        ok = ok.groupby("lr").filter(lambda g: (g["status"] == "completed").all())
        if ok.empty:
            continue
        top_lr = float(ok["lr"].max())
        losses = {s: table[(table["optimizer"] == opt) & (table["schedule"] == s)
                           & np.isclose(table["lr"], top_lr)] for s in schedules}
        high.append(f"{display(opt)} at lr {fmt(top_lr)}: " + ", ".join(
            f"{SCHEDULE_NAMES.get(s, s)} "
            + (fmt(g["final_loss"].mean()) if (g["status"] == "completed").all() else "diverged")
            for s, g in losses.items()))
        numbers.setdefault(opt, {})["largest_stable_constant_lr"] = top_lr
    n_seeds = int(table["seed"].nunique())
    spread = "one seed" if n_seeds == 1 else f"mean and seed range over {n_seeds} seeds"
    caption = (f"Learning-rate schedules compared: lr(t)/lr0 as the runs recorded it (top, the "
               f"same for every optimizer) and the training loss on the full training set "
               f"(bottom; {spread}), per "
               f"optimizer at the learning rate that was best with a constant schedule. Final "
               f"training loss: {'; '.join(parts)}. At the largest learning rate at which the "
               f"{SCHEDULE_NAMES.get(schedules[0], schedules[0])} schedule completed: "
               f"{'; '.join(high)}." + failed_note(failed))
    return [Figure(fig, "learning_rate_schedules", with_verdict(caption, "learning_rate", results),
                   numbers)]
