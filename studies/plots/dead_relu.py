"""Figures of the `dead_relu` study (report sec. 7.3-7.4): ReLU against Leaky ReLU, ELU and GELU
at low and high learning rates.

"Never active" (the store's dead_fraction): the fraction of a hidden layer's units whose input
is <= 0 on every evaluation row. For ReLU these units get exactly zero gradient (dead); Leaky
ReLU keeps slope 0.01 there, ELU exp(z), GELU a small slope, so the test accuracy tells whether
the "off" units were lost.

- dead_relu_layers: never-active fraction per hidden layer over training; one column per
  activation, one row per learning rate; seed band; diverged runs marked where they stopped.
- dead_relu_lr: ReLU's final dead fraction (mean over hidden layers 2..depth: layer 1 sees
  mixed-sign inputs and does not die, so it would only dilute the mean; the other activations
  pass gradient where z <= 0, so none of their units is dead) and every activation's final
  test accuracy against the learning rate.
"""
import matplotlib as mpl
import numpy as np
from matplotlib.lines import Line2D

from . import Figure, figure
from ._runs import failed_note, joined, ordered, runs_with_data, with_verdict
from .style import (ACTIVATION_COLORS, DIVERGED_COLOR, FULL_WIDTH, color_for, display, fmt,
                    legend_rows, log_axis, mark_diverged, new_figure, seed_band)

KEYS = ("activation", "lr", "depth")


def layer_color(layer, depth):
    """Hidden layer l of `depth`: dark purple (first) through magenta and orange to yellow
    (last)."""
    return mpl.colormaps["plasma"](0.88 * (layer - 1) / max(int(depth) - 1, 1))


def _hidden(results, runs):
    lay = joined(results.layers, runs, KEYS)
    return lay[lay["layer"] <= lay["depth"]].dropna(subset=["dead_fraction"])


def final_table(results):
    """One row per run: keys, seed, status, final mean never-active fraction over hidden layers
    2..depth (all of them for one hidden layer) at the last recorded step, the largest
    layer's, and the final test accuracy."""
    runs, failed = runs_with_data(results, KEYS)
    lay = _hidden(results, runs)
    last = lay[lay["step"] == lay.groupby("run_id")["step"].transform("max")]
    last = last[(last["layer"] > 1) | (last["depth"] < 2)]
    agg = last.groupby("run_id").agg(dead_mean=("dead_fraction", "mean"),
                                     dead_max=("dead_fraction", "max"),
                                     last_step=("step", "max")).reset_index()
    table = runs[["run_id", "seed", "status", "final_test_accuracy", *KEYS]].merge(
        agg, on="run_id", how="left")
    return table, failed


@figure("dead_relu_layers")
def dead_relu_layers(results):
    runs, failed = runs_with_data(results, KEYS)
    lay = _hidden(results, runs)
    acts = ordered(runs["activation"], ACTIVATION_COLORS)
    lrs = sorted(runs["lr"].unique())
    depth = int(runs["depth"].max())
    fig, axes = new_figure(ncols=len(acts), nrows=len(lrs), width=FULL_WIDTH,
                           height=1.45 * len(lrs) + 0.6, sharex=True, sharey=True)
    table, _ = final_table(results)
    diverged_total = 0
    for i, lr in enumerate(lrs):
        for j, act in enumerate(acts):
            ax = axes[i, j]
            sub = lay[(lay["activation"] == act) & (lay["lr"] == lr)]
            for layer in sorted(sub["layer"].unique()):
                one = sub[sub["layer"] == layer]
                piv = one.pivot_table(index="seed", columns="step", values="dead_fraction")
                seed_band(ax, piv.columns.to_numpy(), piv.to_numpy(float),
                          layer_color(layer, depth))
            fin = table[(table["activation"] == act) & (table["lr"] == lr)]
            for r in fin[fin["status"] == "diverged"].itertuples():
                diverged_total += 1
                at = sub[sub["run_id"] == r.run_id]
                if len(at):
                    at = at[at["step"] == at["step"].max()]
                    mark_diverged(ax, at["step"], at["dead_fraction"])
            acc = fin.loc[fin["status"] == "completed", "final_test_accuracy"]
            text = f"test acc {fmt(100 * acc.mean())}%" if len(acc) else "no completed run"
            ndiv = int((fin["status"] == "diverged").sum())
            if ndiv:
                text += f", {ndiv} diverged"
            ax.text(0.03, 0.93, text, transform=ax.transAxes, fontsize=5.5, va="top",
                    color=DIVERGED_COLOR)
            ax.set_ylim(-0.03, 1.03)
            if i == 0:
                ax.set_title(display(act))
            if j == 0:
                ax.set_ylabel(f"lr {fmt(lr)}\nnever active")
            if i == len(lrs) - 1:
                ax.set_xlabel("step")
    handles = [Line2D([], [], color=layer_color(layer, depth), label=f"layer {layer}")
               for layer in range(1, depth + 1)]
    extra = [Line2D([], [], marker="x", color="black", linestyle="none", label="diverged")] \
        if diverged_total else []
    legend_rows(fig, [handles + extra])
    top = lrs[-1]
    parts = []
    for act in acts:
        fin = table[(table["activation"] == act) & (table["lr"] == top)]
        done = fin[fin["status"] == "completed"]
        parts.append(f"{display(act)} {fmt(fin['dead_mean'].mean())} never active, test "
                     f"accuracy {fmt(100 * done['final_test_accuracy'].mean())}%"
                     + (f" ({int((fin['status'] == 'diverged').sum())} diverged)"
                        if (fin["status"] == "diverged").any() else ""))
    low = lrs[0]
    low_dead = table[table["lr"] == low]["dead_mean"].max()
    caption = (f"Fraction of each hidden layer's units that are never active (input <= 0 on "
               f"every evaluation row) over training, Adam at learning rates "
               f"{', '.join(fmt(v) for v in lrs)} (rows), per activation (columns); band: "
               f"seed range. For ReLU such units get zero gradient (dead); for the variants "
               f"they still pass a small gradient. At lr {fmt(top)} (final, mean over layers 2.. "
               f"depth and seeds): {'; '.join(parts)}. At lr {fmt(low)} no run has more than "
               f"{fmt(low_dead)} never active." + failed_note(failed))
    numbers = {"final": table.drop(columns=["run_id"]).to_dict("records")}
    return [Figure(fig, "dead_relu_layers", with_verdict(caption, "dead_relu", results), numbers)]


@figure("dead_relu_lr")
def dead_relu_lr(results):
    table, failed = final_table(results)
    acts = ordered(table["activation"], ACTIVATION_COLORS)
    fig, axes = new_figure(ncols=2, width=FULL_WIDTH, height=2.4)
    dead_ax, acc_ax = axes[0]
    numbers = {}
    for act in acts:
        color = color_for("activation", act)
        sub = table[table["activation"] == act]
        if act == "relu":  # the only activation whose "off" units get no gradient
            dead = sub.pivot_table(index="seed", columns="lr", values="dead_mean")
            seed_band(dead_ax, dead.columns.to_numpy(), dead.to_numpy(float), color,
                      label=display(act), marker="o", markersize=2.5)
        done = sub[sub["status"] == "completed"]
        acc = done.pivot_table(index="seed", columns="lr", values="final_test_accuracy")
        if len(acc):
            seed_band(acc_ax, acc.columns.to_numpy(), 100 * acc.to_numpy(float), color,
                      marker="o", markersize=2.5)
        div = sub[sub["status"] == "diverged"]
        if len(div):
            if act == "relu":
                mark_diverged(dead_ax, div["lr"], div["dead_mean"].fillna(1.0))
            mark_diverged(acc_ax, div["lr"], np.full(len(div), 5.0))
        numbers[act] = {float(lr): {"dead_mean": float(g["dead_mean"].mean()),
                                    "test_accuracy": float(g.loc[g["status"] == "completed",
                                                                 "final_test_accuracy"].mean()),
                                    "diverged": int((g["status"] == "diverged").sum())}
                        for lr, g in sub.groupby("lr")}
    log_axis(dead_ax, "x", "learning rate (Adam)")
    log_axis(acc_ax, "x", "learning rate (Adam)")
    dead_ax.set_ylabel("ReLU dead fraction\n(final, mean over layers 2..depth)")
    dead_ax.set_ylim(-0.03, 1.03)
    acc_ax.set_ylabel("final test accuracy (%)")
    acc_ax.set_ylim(0, 104)
    handles = [Line2D([], [], color=color_for("activation", a), marker="o", markersize=2.5,
                      label=display(a)) for a in acts]
    if (table["status"] == "diverged").any():
        handles.append(Line2D([], [], marker="x", color="black", linestyle="none",
                              label="diverged (accuracy drawn at 5%)"))
    legend_rows(fig, [handles])
    top = max(table["lr"]) if len(table) else None
    relu = numbers.get("relu", {})
    dead_text = ", ".join(f"lr {fmt(lr)} {fmt(v['dead_mean'])}" for lr, v in sorted(relu.items()))
    acc_text = ", ".join(f"{display(a)} {fmt(100 * numbers[a][top]['test_accuracy'])}%"
                         + (f" ({numbers[a][top]['diverged']} diverged)"
                            if numbers[a][top]["diverged"] else "")
                         for a in acts if top in numbers[a])
    caption = (f"Left: ReLU's final dead fraction (units never active on the evaluation rows, "
               f"mean over hidden layers 2..depth; the other activations pass gradient where "
               f"z <= 0, so they have no dead units); right: final test accuracy, per "
               f"activation, against Adam's learning rate (mean and seed range). ReLU dead: "
               f"{dead_text or 'n/a'}. Test accuracy at lr {fmt(top)}: {acc_text}."
               + failed_note(failed))
    return [Figure(fig, "dead_relu_lr", with_verdict(caption, "dead_relu", results), numbers)]
