"""Figures of the `dead_relu` study (report sec. 7.3-7.4): ReLU against Leaky ReLU, ELU and GELU
on a learning-rate grid under Adam.

Dead (the store's dead_fraction): the fraction of a hidden layer's ReLU units whose input is
<= 0 on every row of the training set; such a unit gets exactly zero gradient. Leaky ReLU, ELU
and GELU pass gradient at z <= 0, so they cannot have dead units (NaN in the store): they are
compared with ReLU by test accuracy, which shows whether a net collapsed.

- dead_relu_layers: top row, ReLU's dead fraction per hidden layer over training; bottom row,
  every activation's test accuracy over training; one column per learning rate; seed bands;
  diverged runs marked where they stopped.
- dead_relu_lr: ReLU's final dead fraction (mean over hidden layers 2..depth: layer 1 sees the
  mixed-sign inputs and does not die, so it would only dilute the mean) and every activation's
  final test accuracy against the learning rate.
"""
import matplotlib as mpl
import numpy as np
from matplotlib.lines import Line2D

from studies.analysis.findings.gradients import relu_dead_by_run

from . import Figure, figure
from ._runs import failed_note, joined, ordered, runs_with_data, with_verdict
from .style import (ACTIVATION_COLORS, FULL_WIDTH, color_for, display, fmt,
                    legend_rows, log_axis, mark_diverged, new_figure, seed_band)

KEYS = ("activation", "lr", "depth")


def layer_color(layer, depth):
    """Hidden layer l of `depth`: dark purple (first) through magenta and orange to yellow
    (last)."""
    return mpl.colormaps["plasma"](0.88 * (layer - 1) / max(int(depth) - 1, 1))


def _relu_layers(results, runs):
    lay = joined(results.layers, runs, KEYS)
    return lay[(lay["activation"] == "relu") & (lay["layer"] <= lay["depth"])] \
        .dropna(subset=["dead_fraction"])


def final_table(results):
    """One row per run: keys, seed, status, final test accuracy and, for ReLU runs, the final
    dead fraction (mean over hidden layers 2..depth; NaN for the other activations)."""
    runs, failed = runs_with_data(results, KEYS)
    table = runs[["run_id", "seed", "status", "final_test_accuracy", *KEYS]].copy()
    table["dead_mean"] = table["run_id"].map(relu_dead_by_run(results, runs))
    return table, failed


def _dataset_text(runs):
    """'MNIST-1D' / 'the 8x8 digits' / the stored dataset name."""
    names = sorted(set(runs["dataset"].astype(str))) if "dataset" in runs else []
    known = {"mnist1d": "MNIST-1D", "digits": "the 8x8 digits"}
    return ", ".join(known.get(n, n) for n in names) or "its dataset"


def _accuracy_text(table, act, lr):
    fin = table[(table["activation"] == act) & (table["lr"] == lr)]
    acc = fin["final_test_accuracy"].where(fin["status"] == "completed", 0.0).to_numpy(float)
    if not acc.size:
        return f"{display(act)} n/a"
    text = f"{display(act)} {fmt(100 * acc.mean())}% [{fmt(100 * acc.min())}, " \
        f"{fmt(100 * acc.max())}]"
    ndiv = int((fin["status"] == "diverged").sum())
    return text + (f" ({ndiv} diverged)" if ndiv else "")


@figure("dead_relu_layers")
def dead_relu_layers(results):
    runs, failed = runs_with_data(results, KEYS)
    lay = _relu_layers(results, runs)
    hist = joined(results.history, runs, KEYS).dropna(subset=["test_accuracy"])
    acts = ordered(runs["activation"], ACTIVATION_COLORS)
    lrs = sorted(runs["lr"].unique())
    depth = int(runs["depth"].max())
    fig, axes = new_figure(ncols=len(lrs), nrows=2, width=FULL_WIDTH, height=3.6,
                           sharex=True, sharey="row")
    table, _ = final_table(results)
    diverged_total = 0
    for j, lr in enumerate(lrs):
        dead_ax, acc_ax = axes[0, j], axes[1, j]
        sub = lay[lay["lr0" if "lr0" in lay else "lr"] == lr]
        for layer in sorted(sub["layer"].unique()):
            piv = sub[sub["layer"] == layer].pivot_table(index="seed", columns="step",
                                                         values="dead_fraction")
            seed_band(dead_ax, piv.columns.to_numpy(), piv.to_numpy(float),
                      layer_color(layer, depth))
        h = hist[hist["lr0" if "lr0" in hist else "lr"] == lr]
        for act in acts:
            one = h[h["activation"] == act]
            if one.empty:
                continue
            piv = one.pivot_table(index="seed", columns="step", values="test_accuracy")
            seed_band(acc_ax, piv.columns.to_numpy(), 100 * piv.to_numpy(float),
                      color_for("activation", act))
            for r in table[(table["activation"] == act) & (table["lr"] == lr)
                           & (table["status"] == "diverged")].itertuples():
                diverged_total += 1
                last = one[one["run_id"] == r.run_id].tail(1)
                mark_diverged(acc_ax, last["step"], 100 * last["test_accuracy"])
        dead_ax.set_title(f"Adam lr {fmt(lr)}")
        dead_ax.set_ylim(-0.03, 1.03)
        acc_ax.set_ylim(0, 104)
        acc_ax.set_xlabel("step")
    axes[0, 0].set_ylabel("ReLU dead fraction")
    axes[1, 0].set_ylabel("test accuracy (%)")
    layer_handles = [Line2D([], [], color=layer_color(layer, depth), label=f"ReLU layer {layer}")
                     for layer in range(1, depth + 1)]
    act_handles = [Line2D([], [], color=color_for("activation", a), label=display(a))
                   for a in acts]
    if diverged_total:
        act_handles.append(Line2D([], [], marker="x", color="black", linestyle="none",
                                  label="diverged"))
    legend_rows(fig, [layer_handles, act_handles])
    relu = table[table["activation"] == "relu"]
    dead = relu.groupby("lr")["dead_mean"].agg(["mean", "min", "max"])
    top = lrs[-1]
    caption = (f"A 4x64 MLP on {_dataset_text(runs)}, Adam on a half-decade learning-rate grid "
               f"(columns), {runs['seed'].nunique()} seeds (line: mean, band: seed range). "
               f"Top: fraction of ReLU units per hidden layer with input <= 0 on every "
               f"training row (dead: zero gradient); final, mean over layers 2..depth: "
               + ", ".join(f"lr {fmt(lr)} {fmt(r['mean'])} [{fmt(r['min'])}, {fmt(r['max'])}]"
                           for lr, r in dead.iterrows())
               + f". Bottom: test accuracy of every activation (Leaky ReLU, ELU and GELU cannot "
               f"have dead units). Final test accuracy at lr {fmt(top)}: "
               + "; ".join(_accuracy_text(table, a, top) for a in acts)
               + " (a diverged run counted as 0)." + failed_note(failed))
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
    acc_text = "; ".join(_accuracy_text(table, a, top) for a in acts)
    caption = (f"Left: ReLU's final dead fraction (input <= 0 on every training row, mean over "
               f"hidden layers 2..depth: layer 1 sees mixed-sign inputs and does not die; the "
               f"other activations pass gradient where z <= 0, so they cannot have dead units); "
               f"right: final test accuracy (completed runs) per activation against Adam's "
               f"learning rate; mean and seed range over {table['seed'].nunique()} seeds. "
               f"ReLU dead (mean): {dead_text or 'n/a'}. Test accuracy at lr {fmt(top)} "
               f"(diverged counted as 0): {acc_text}."
               + failed_note(failed))
    return [Figure(fig, "dead_relu_lr", with_verdict(caption, "dead_relu", results), numbers)]
