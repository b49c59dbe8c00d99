"""Figure of the `optimizers` study (report sec. 6; Kingma & Ba 2015's MLP comparison, reduced).

- optimizer_curves: (a) training loss over steps of each optimizer at its best learning rate
  (lowest seed-mean final training loss among the rates it ran; seed bands), (b) test accuracy
  over steps at the same rates, (c) final training loss against learning rate per optimizer
  (log-log), diverged runs as crosses at the top of the panel.
"""
import numpy as np
import pandas as pd

from . import Figure, figure
from ._runs import with_verdict
from ._curves import (
    completed_runs,
    diverged_points,
    failed_count,
    first_below,
    label_short_log,
    seed_curves,
    with_keys,
)
from .style import (
    DIVERGED_MARKER,
    FULL_WIDTH,
    OPTIMIZER_COLORS,
    color_for,
    display,
    fmt,
    legend_below,
    log_axis,
    new_figure,
    seed_band,
)

TARGET_LOSS = 1.0


def _rank(name):
    order = list(OPTIMIZER_COLORS)
    return order.index(name) if name in order else len(order)


def final_losses(results):
    """One row per (optimizer, lr): seed-mean final training loss of completed runs, the number
    of seeds and of diverged seeds."""
    runs = completed_runs(results)
    if runs.empty:
        return pd.DataFrame(columns=["optimizer", "lr", "final_loss", "seeds", "diverged"])
    rows = []
    for (opt, lr), part in runs.groupby(["optimizer", "lr"]):
        ok = part[part["status"] == "completed"]["final_loss"].astype(float)
        rows.append({"optimizer": opt, "lr": float(lr),
                     "final_loss": float(ok.mean()) if len(ok) else np.nan,
                     "seeds": len(part), "diverged": int((part["status"] == "diverged").sum())})
    return pd.DataFrame(rows)


def best_rates(table):
    """{optimizer: lr} with the lowest seed-mean final loss among rates where no seed diverged."""
    best = {}
    for opt, part in table.groupby("optimizer"):
        ok = part[(part["diverged"] == 0) & np.isfinite(part["final_loss"])]
        if len(ok):
            best[opt] = float(ok.loc[ok["final_loss"].idxmin(), "lr"])
    return best


@figure("optimizer_curves")
def optimizer_curves(results):
    table = final_losses(results)
    best = best_rates(table)
    hist = with_keys(results, results.history, ["optimizer", "lr"])
    fig, axes = new_figure(ncols=3, width=FULL_WIDTH, height=2.6)
    numbers = {}
    for opt in sorted(best, key=_rank):
        part = hist[(hist["optimizer"] == opt) & np.isclose(hist["lr"], best[opt])]
        color = color_for("optimizer", opt)
        label = f"{display(opt)} (lr {fmt(best[opt])})"
        loss = seed_curves(part, ["optimizer"], "step", "train_loss")
        acc = seed_curves(part, ["optimizer"], "step", "test_accuracy")
        for (x, ys), ax in ((next(iter(loss.values())), axes[0, 0]),
                            (next(iter(acc.values())), axes[0, 1])):
            seed_band(ax, x, ys, color, label=label)
        x, ys = next(iter(loss.values()))
        _xa, ya = next(iter(acc.values()))
        numbers[opt] = {"best_lr": best[opt], "final_train_loss": float(np.nanmean(ys[:, -1])),
                        "final_test_accuracy": float(np.nanmean(ya[:, -1])),
                        f"steps_to_loss_{TARGET_LOSS:g}": first_below(x, ys, TARGET_LOSS)}
    log_axis(axes[0, 0], "y", "training loss (cross-entropy)")
    axes[0, 0].set(xlabel="step", title="(a) training loss at the best lr")
    axes[0, 1].set(xlabel="step", ylabel="test accuracy", title="(b) test accuracy at the best lr")
    ax = axes[0, 2]
    top = np.nanmax(table["final_loss"]) if len(table) and np.isfinite(table["final_loss"]).any() \
        else 1.0
    for opt, part in sorted(table.groupby("optimizer"), key=lambda kv: _rank(kv[0])):
        part = part.sort_values("lr")
        ax.plot(part["lr"], part["final_loss"], color=color_for("optimizer", opt), marker="o",
                markersize=2.5, label=display(opt) if opt not in best else None)
        bad = part[part["diverged"] > 0]
        if len(bad):
            ax.plot(bad["lr"], [top * 2.0] * len(bad), markersize=5, **DIVERGED_MARKER)
            ax.plot(bad["lr"], [top * 2.0] * len(bad), marker="x", markersize=3,
                    linestyle="none", color=color_for("optimizer", opt))
        numbers.setdefault(opt, {})["final_loss_by_lr"] = {
            fmt(r.lr): (None if not np.isfinite(r.final_loss) else float(r.final_loss))
            for r in part.itertuples()}
        numbers[opt]["diverged_lrs"] = [float(v) for v in bad["lr"]]
    if (table["diverged"] > 0).any():
        ax.plot([], [], markersize=5, label="diverged (at least one seed)", **DIVERGED_MARKER)
    log_axis(ax, "both")
    ax.set(xlabel="learning rate", ylabel="final training loss (completed seeds)",
           title="(c) final loss against learning rate")
    points = diverged_points(hist, "step", "train_loss")
    for panel in (axes[0, 0], ax):
        label_short_log(panel, "y")
    legend_below(fig, axes, ncol=4)
    parts = [f"{display(o)} lr {fmt(v['best_lr'])}: loss {fmt(v['final_train_loss'])}, test acc "
             f"{fmt(v['final_test_accuracy'])}, loss {TARGET_LOSS:g} at step "
             f"{fmt(v[f'steps_to_loss_{TARGET_LOSS:g}'])}"
             for o, v in sorted(numbers.items(), key=lambda kv: _rank(kv[0])) if "best_lr" in v]
    runs = completed_runs(results)
    setup = ""
    if not runs.empty:
        first = runs.iloc[0]
        setup = (f"{int(first['depth'])} hidden layers of {int(first['width'])} "
                 f"{display(first['activation'])} units, {first['dataset']}, batch "
                 f"{int(first['batch_size'])}, {int(runs['steps_done'].max())} steps")
    failed = failed_count(results)
    caption = (
        f"SGD, momentum, Nesterov, RMSProp and Adam on an MLP ({setup}; Kingma & Ba 2015's MLP "
        f"comparison at reduced scale): (a) training loss and (b) test accuracy of each "
        f"optimizer at its best learning rate (lowest mean final training loss on the grid, no "
        f"diverged seed; mean and min-max band over seeds), (c) final loss against learning rate "
        f"(crosses: diverged). {'; '.join(parts)}. "
        f"{len(points)} run(s) diverged."
        + (f" {failed} failed runs have no data." if failed else ""))
    return [Figure(fig, "optimizer_curves", with_verdict(caption, "optimizers", results), numbers)]
