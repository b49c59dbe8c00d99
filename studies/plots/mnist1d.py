"""Figure of the `mnist1d` study: the MNIST-1D baselines (Greydanus 2020) next to the published
numbers.

- mnist1d_accuracy: test accuracy over training (seed band; train accuracy dashed) of the
  ReLU 40-100-100-10 MLP (depth 2) and logistic regression (depth 0), with the mnist1d README's
  accuracies (MLP 68%, logistic regression 32%) and the reference PyTorch loop's 64-66% for the
  MLP; right: the final test accuracy of every seed next to those numbers.
"""
import numpy as np
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from . import Figure, figure
from ._runs import failed_note, joined, runs_with_data, seed_stats, with_verdict
from .style import FULL_WIDTH, color_for, fmt, legend_below, mark_diverged, new_figure, seed_band

README = {2: 0.68, 0: 0.32}          # mnist1d README: MLP, logistic regression
PYTORCH_REFERENCE = (0.64, 0.66)     # the same MLP setup trained in PyTorch
MODEL_COLORS = {2: color_for("activation", "relu"), 0: color_for("activation", "identity")}


def model_name(depth):
    return "logistic regression" if int(depth) == 0 else f"MLP ({int(depth)} hidden layers)"


def final_accuracies(results):
    """{depth: array of final test accuracies of the completed runs}, the runs table and the
    number of failed runs."""
    runs, failed = runs_with_data(results, ["depth"])
    out = {}
    for depth, group in runs.groupby("depth"):
        done = group[group["status"] == "completed"]
        out[int(depth)] = done["final_test_accuracy"].to_numpy(float)
    return out, runs, failed


@figure("mnist1d_accuracy")
def mnist1d_accuracy(results):
    finals, runs, failed = final_accuracies(results)
    hist = joined(results.history, runs, ["depth", "width"])
    fig, axes = new_figure(ncols=2, width=FULL_WIDTH, height=2.6,
                           gridspec_kw={"width_ratios": [2.2, 1]})
    ax, dots = axes[0]
    depths = sorted(finals, reverse=True)
    diverged = []
    for depth in depths:
        color = MODEL_COLORS.get(depth, "#333333")
        h = hist[hist["depth"] == depth]
        table = h.pivot_table(index="seed", columns="step", values="test_accuracy")
        seed_band(ax, table.columns.to_numpy(), 100 * table.to_numpy(float), color,
                  label=f"ours: {model_name(depth)}")
        train = h.pivot_table(index="seed", columns="step", values="train_accuracy")
        ax.plot(train.columns, 100 * np.nanmean(train.to_numpy(float), axis=0), color=color,
                linestyle=(0, (2, 1.5)), linewidth=0.8)
        for rid in runs[(runs["depth"] == depth) & (runs["status"] == "diverged")]["run_id"]:
            last = h[h["run_id"] == rid].dropna(subset=["test_accuracy"]).tail(1)
            if len(last):
                mark_diverged(ax, last["step"], 100 * last["test_accuracy"])
                diverged.append(rid)
        if depth in README:
            ax.axhline(100 * README[depth], color=color, linestyle=":", linewidth=1.0)
    ax.axhspan(100 * PYTORCH_REFERENCE[0], 100 * PYTORCH_REFERENCE[1], color="0.75",
               alpha=0.5, linewidth=0)
    ax.set_xlabel("step (batches of 100)")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 104)  # the train-accuracy line reaches 100%: keep it inside the frame
    for i, depth in enumerate(depths):
        color = MODEL_COLORS.get(depth, "#333333")
        values = 100 * finals[depth]
        jitter = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else np.zeros(1)
        dots.plot(i + jitter[:len(values)], values, "o", color=color, markersize=3.5,
                  markerfacecolor="none")
        if len(values):
            dots.plot([i - 0.2, i + 0.2], [values.mean()] * 2, color=color, linewidth=1.5)
        if depth in README:
            dots.plot([i - 0.3, i + 0.3], [100 * README[depth]] * 2, color=color,
                      linestyle=":", linewidth=1.0)
        if depth > 0:
            dots.fill_between([i - 0.3, i + 0.3], 100 * PYTORCH_REFERENCE[0],
                              100 * PYTORCH_REFERENCE[1], color="0.75", alpha=0.5,
                              linewidth=0)
    dots.set_xticks(range(len(depths)), ["MLP" if d else "logistic\nregression"
                                         for d in depths])
    dots.set_xlim(-0.6, len(depths) - 0.4)
    dots.set_ylabel("final test accuracy (%)")
    dots.set_title("each seed; bar: mean")
    handles = [Line2D([], [], color=MODEL_COLORS.get(d, "#333333"),
                      label=f"ours: {model_name(d)}") for d in depths]
    handles += [Line2D([], [], color="0.3", linestyle=(0, (2, 1.5)), linewidth=0.8,
                       label="ours, train accuracy"),
                Line2D([], [], color="0.3", linestyle=":", label="mnist1d README"),
                Patch(color="0.75", alpha=0.5, label="PyTorch reference (MLP)")]
    if diverged:
        handles.append(Line2D([], [], markersize=5, label="diverged", marker="x",
                              color="black", linestyle="none"))
    legend_below(fig, handles=handles, labels=[h.get_label() for h in handles], ncol=3)
    numbers, parts = {}, []
    steps = int(runs["steps"].max()) if "steps" in runs else None
    for depth in depths:
        mean, low, high, n = seed_stats(finals[depth])
        std = float(np.std(finals[depth], ddof=1)) if n > 1 else float("nan")
        numbers[model_name(depth)] = {"mean": mean, "std": std, "min": low, "max": high,
                                      "seeds": n, "readme": README.get(depth)}
        parts.append(f"{model_name(depth)} {fmt(100 * mean)}% +- {fmt(100 * std)} (range "
                     f"{fmt(100 * low)}-{fmt(100 * high)}, {n} seeds; README "
                     f"{fmt(100 * README[depth]) + '%' if depth in README else 'n/a'})")
    caption = (f"MNIST-1D (the package's 4,000/1,000 split) with Adam (lr 1e-2, PyTorch's eps "
               f"placement), batches of 100, {steps} steps: test accuracy over training (band: "
               f"seed range; dashed: train accuracy), and each seed's final test accuracy. "
               f"Ours: {'; '.join(parts)}. PyTorch on the same MLP setup: about "
               f"{fmt(100 * PYTORCH_REFERENCE[0])}-{fmt(100 * PYTORCH_REFERENCE[1])}%."
               + (f" {len(diverged)} run(s) diverged (crosses)." if diverged else "")
               + failed_note(failed))
    return [Figure(fig, "mnist1d_accuracy", with_verdict(caption, "mnist1d", results), numbers)]
