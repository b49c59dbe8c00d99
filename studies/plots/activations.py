"""Figures of the `activations` study (report sec. 7).

- activation_functions: every elementwise activation of the registry and its derivative, drawn
  analytically from kernels.activations' NumPy references (softmax acts on rows and is left out).
- activation_layers: per hidden layer at initialization, the distribution of the activation
  input z (grey) and output a (color) as percentile bars: p15-p85 box, whisker to p98, median dot.
- activation_training: the weight-gradient norm per layer at initialization (log scale) and the
  training loss over steps (seed bands), one color per activation.
"""
import numpy as np
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle

from kernels.activations import ACTIVATIONS, derivative_reference, forward_reference

from studies.analysis.findings.common import at_best_rates, band, rates_text

from . import Figure, figure
from ._runs import with_verdict
from ._curves import (
    at_step,
    completed_runs,
    diverged_points,
    failed_count,
    groups,
    seed_curves,
    training_setup,
    with_keys,
)
from .style import (
    ACTIVATION_COLORS,
    FULL_WIDTH,
    color_for,
    display,
    fmt,
    legend_below,
    log_axis,
    mark_diverged,
    new_figure,
    seed_band,
)

ELEMENTWISE = [name for name, a in ACTIVATIONS.items() if a.hidden]
X_RANGE = (-4.0, 4.0)


def _order(names):
    rank = {n: i for i, n in enumerate(ACTIVATION_COLORS)}
    return sorted(set(names), key=lambda n: (rank.get(n, len(rank)), n))


def _rank(item):
    """Sort key of ((activation,), ...) pairs: the fixed activation order of the color table."""
    return _order(ACTIVATION_COLORS).index(item[0][0]) if item[0][0] in ACTIVATION_COLORS \
        else len(ACTIVATION_COLORS)


def _dash(name):
    """GELU's tanh approximation lies on top of GELU: dashed, so both stay visible."""
    return (0, (4, 2)) if name == "gelu_tanh" else "-"


def _rates_note(best):
    """' Each activation at its best SGD rate: ...' when the study swept a rate grid."""
    if all(len(grid) < 2 for _, grid, _ in best.values()):
        return ""
    return (" Each activation at its best SGD rate (lowest mean final loss): "
            + rates_text(best, lambda k: display(k[0])) + ".")


@figure("activation_functions")
def activation_functions(results):
    """f(x) and f'(x) of every elementwise activation (analytic; independent of the runs)."""
    x = np.linspace(*X_RANGE, 801)
    fig, axes = new_figure(ncols=2, width=FULL_WIDTH, height=2.6)
    numbers = {}
    for i, name in enumerate(ELEMENTWISE):
        style = {"color": color_for("activation", name), "label": display(name),
                     "linestyle": _dash(name)}
        d = derivative_reference(name, x)
        axes[0, 0].plot(x, forward_reference(name, x), **style)
        axes[0, 1].plot(x, d, **style)
        numbers[name] = {"max_derivative": float(d.max()),
                         "derivative_at_-4": float(derivative_reference(name, np.array([-4.0]))[0]),
                         "derivative_at_4": float(derivative_reference(name, np.array([4.0]))[0])}
    axes[0, 0].set(xlabel="input x", ylabel="f(x)", title="(a) activation", ylim=(-1.6, 4.1))
    axes[0, 1].set(xlabel="input x", ylabel="f'(x)", title="(b) derivative", ylim=(-0.15, 1.2))
    for ax in axes[0]:
        ax.set_xlim(*X_RANGE)
    legend_below(fig, axes, ncol=8)
    caption = (
        "Every elementwise activation of the registry (a) and its derivative (b), from the NumPy "
        "references of kernels.activations (softmax acts on rows: the output layer only). "
        f"Largest slope: sigmoid {fmt(numbers['sigmoid']['max_derivative'])}, tanh "
        f"{fmt(numbers['tanh']['max_derivative'])}, GELU {fmt(numbers['gelu']['max_derivative'])} "
        f"(above 1 near x = 1.4). At x = -4 the slope is {fmt(numbers['sigmoid']['derivative_at_-4'])} "
        f"for sigmoid, {fmt(numbers['tanh']['derivative_at_-4'])} for tanh, 0 for ReLU, "
        f"{fmt(numbers['leaky_relu']['derivative_at_-4'])} for Leaky ReLU and "
        f"{fmt(numbers['elu']['derivative_at_-4'])} for ELU: saturating units pass almost no "
        "gradient, ReLU passes none on its negative side.")
    return [Figure(fig, "activation_functions", with_verdict(caption, "activations", results),
                   numbers)]


def _bar(ax, x, row, prefix, color, width):
    """One percentile bar: p15-p85 box, thin whisker p85-p98, median dot."""
    p15, p50, p85, p98 = (row[f"{prefix}_p{q}"] for q in (15, 50, 85, 98))
    if not np.isfinite([p15, p50, p85]).all():
        return
    ax.add_patch(Rectangle(
        (x - width / 2, p15), width, p85 - p15, facecolor=color, edgecolor=color, alpha=0.55,
        linewidth=0.6))
    if np.isfinite(p98):
        ax.plot([x, x], [p85, p98], color=color, linewidth=0.8)
        ax.plot([x - width / 4, x + width / 4], [p98, p98], color=color, linewidth=0.8)
    ax.plot([x], [p50], marker="o", markersize=2.2, color="black", linestyle="none")


@figure("activation_layers")
def activation_layers(results):
    full = results
    results, best = at_best_rates(results, ("activation",))
    layers = at_step(with_keys(results, results.layers, ["activation", "depth"]))
    hidden = layers[layers["layer"] <= layers["depth"]]
    names = _order(hidden["activation"]) if not hidden.empty else []
    # GELU's tanh form matches GELU to plotting precision: one panel for both
    twin = "gelu_tanh" in names and "gelu" in names
    names = [n for n in names if not (twin and n == "gelu_tanh")]
    ncols = 4
    nrows = max(1, int(np.ceil(len(names) / ncols)))
    fig, axes = new_figure(ncols=ncols, nrows=nrows, width=FULL_WIDTH, height=1.55 * nrows + 0.5)
    numbers = {}
    for ax, name in zip(axes.ravel(), names):
        rows = hidden[hidden["activation"] == name]
        mean = rows.groupby("layer").mean(numeric_only=True)  # percentiles averaged over seeds
        for layer, row in mean.iterrows():
            _bar(ax, layer - 0.17, row, "z", "0.55", 0.3)
            _bar(ax, layer + 0.17, row, "a", color_for("activation", name), 0.3)
        ax.set_title(display(name))
        ax.set_xticks(list(mean.index))
        ax.set_xlim(0.4, mean.index.max() + 0.6)
        per_run = rows.pivot_table(index="run_id", columns="layer", values="a_std")
        numbers[name] = {"a_std_first": float(mean["a_std"].iloc[0]),
                         "a_std_top": float(mean["a_std"].iloc[-1]),
                         "a_std_first_per_run": [float(v) for v in per_run.iloc[:, 0]],
                         "a_std_top_per_run": [float(v) for v in per_run.iloc[:, -1]],
                         "z_std_first": float(mean["z_std"].iloc[0]),
                         "z_std_top": float(mean["z_std"].iloc[-1])}
    for ax in axes.ravel()[len(names):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("hidden layer l")
    for ax in axes[:, 0]:
        ax.set_ylabel("value at init")
    handles = [Patch(color="0.55", alpha=0.55, label="input z: p15-p85 (whisker p98)"),
               Patch(color=ACTIVATION_COLORS["relu"], alpha=0.55,
                     label="output a = f(z), in the activation's color"),
               Line2D([], [], marker="o", markersize=2.5, color="black", linestyle="none",
                   label="median")]
    legend_below(fig, handles=handles, labels=[h.get_label() for h in handles], ncol=3)
    summary = "; ".join(f"{display(n)} {band(v['a_std_first_per_run'], 2)} -> "
                        f"{band(v['a_std_top_per_run'], 2)}" for n, v in numbers.items())
    depth = int(hidden["depth"].max()) if not hidden.empty else 0
    caption = (
        f"Distribution of each hidden layer's input z (grey) and output a = f(z) (color) at "
        f"initialization, over {len(completed_runs(results))} runs' evaluation rows ({depth} hidden "
        f"layers, matched init: He normal for the ReLU family, Xavier normal otherwise; bars: "
        f"15th-85th percentile, whisker to the 98th, dot: median; averaged over seeds). Std of "
        f"a from layer 1 to layer {depth} (mean [min, max] over seeds): {summary}."
        + (" GELU (tanh) is not drawn: it matches GELU's panel." if twin else "")
        + (f" {failed_count(results)} failed runs have no data." if failed_count(results) else ""))
    return [Figure(fig, "activation_layers", with_verdict(caption + _rates_note(best), "activations", full),
                   numbers)]


@figure("activation_training")
def activation_training(results):
    full = results
    results, best = at_best_rates(results, ("activation",))
    layers = at_step(with_keys(results, results.layers, ["activation"]))
    hist = with_keys(results, results.history, ["activation"])
    fig, axes = new_figure(ncols=2, width=FULL_WIDTH, height=2.5)
    numbers = {}
    for (name,), rows in sorted(groups(layers, ["activation"]), key=_rank):
        x = np.sort(rows["layer"].unique())
        ys = rows.pivot_table(index="layer", columns="run_id", values="w_grad_norm").to_numpy().T
        seed_band(axes[0, 0], x, ys, color_for("activation", name), label=display(name),
                  geometric=True, marker="o", markersize=2, linestyle=_dash(name))
        with np.errstate(divide="ignore", invalid="ignore"):
            per_run = ys[:, 0] / ys[:, -1]
            ratio = np.exp(np.nanmean(np.log(per_run)))
        numbers.setdefault(name, {})["grad_ratio_first_last"] = float(ratio)
        numbers[name]["grad_ratio_per_run"] = [float(v) for v in per_run]
    log_axis(axes[0, 0], "y", r"$\|\partial L/\partial W_l\|$ at init")
    axes[0, 0].set(xlabel="layer l (last = output layer)", title="(a) weight gradient per layer")
    curves = seed_curves(hist, ["activation"], "step", "train_loss")
    for (name,), (x, ys) in sorted(curves.items(), key=_rank):
        seed_band(axes[0, 1], x, ys, color_for("activation", name), label=display(name),
                  linestyle=_dash(name))
        entry = numbers.setdefault(name, {})
        entry["initial_loss"] = float(np.nanmean(ys[:, 0]))
        entry["final_loss"] = float(np.nanmean(ys[:, -1]))
        entry["final_loss_per_run"] = [float(v) for v in ys[:, -1]]
        runs = completed_runs(results)
        acc = runs[runs["activation"] == name]["final_test_accuracy"]
        entry["final_test_accuracy"] = float(acc.mean()) if len(acc) else np.nan
        entry["final_test_accuracy_per_run"] = [float(v) for v in acc]
    diverged = diverged_points(hist, "step", "train_loss")
    if diverged:
        mark_diverged(axes[0, 1], *zip(*diverged), label="diverged (last finite loss)")
    log_axis(axes[0, 1], "y", "training loss (cross-entropy)")
    axes[0, 1].set(xlabel="step", title="(b) training loss (band: min-max over seeds)")
    legend_below(fig, axes, ncol=8)
    order = _order(numbers)
    summary = "; ".join(
        f"{display(n)} r = {band(numbers[n].get('grad_ratio_per_run', []), 2)}, loss "
        f"{band(numbers[n].get('final_loss_per_run', []))}, test acc "
        f"{band(numbers[n].get('final_test_accuracy_per_run', []), 2)}"
        for n in order)
    caption = (
        "(a) Weight-gradient norm per layer at initialization (log scale) and (b) training loss "
        f"over {training_setup(results)}, per activation (mean and min-max band over seeds). "
        f"r = ||dL/dW_1|| / ||dL/dW_L|| at init, final training loss and test accuracy (mean "
        f"[min, max] over seeds): {summary}."
        + (f" {len(diverged)} run(s) diverged (crosses)." if diverged else " No run diverged."))
    return [Figure(fig, "activation_training", with_verdict(caption + _rates_note(best), "activations", full),
                   numbers)]
