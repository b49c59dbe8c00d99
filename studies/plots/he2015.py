"""Figures of the `he2015` study (He et al. 2015): deep plain ReLU nets, Xavier vs He init.

- he_signal: the variance of each layer's pre-activation z_l at initialization (z_std^2 over the
  evaluation rows; log scale) and the RMS per unit of the back-propagated gradient dL/dz_l,
  against layer, with the predictions: Xavier on equal widths halves the variance per layer
  (Var z_{l+1} = n * (1/n) * Var(z_l)/2), He keeps it.
- he_training: training loss over steps per depth, seed bands, one color per init, each
  (depth, init) at its own best rate of the spec's rate grid (the finding's choice).

Both figures draw the runs at each (depth, init)'s best rate (at initialization the rate does
not matter; it only picks one run per seed).
"""
import numpy as np
from matplotlib.lines import Line2D

from studies.analysis.findings.common import at_best_rates, band, runs_with

from . import Figure, figure
from ._runs import with_verdict
from ._curves import (
    at_step,
    diverged_points,
    failed_count,
    groups,
    seed_curves,
    training_setup,
    with_keys,
)
from .style import (
    FULL_WIDTH,
    color_for,
    display,
    fmt,
    legend_below,
    legend_rows,
    linestyle_for,
    log_axis,
    mark_diverged,
    new_figure,
    seed_band,
)

PREDICTED_RATIO = {"xavier_normal": 0.5, "xavier_uniform": 0.5, "he_normal": 1.0,
                   "he_uniform": 1.0}
INIT_ORDER = ("xavier_normal", "he_normal")


def _rank(init):
    return INIT_ORDER.index(init) if init in INIT_ORDER else len(INIT_ORDER)


def variance_ratio(layers):
    """Geometric-mean per-layer ratio Var(z_{l+1}) / Var(z_l) over the hidden layers 1..depth of
    the given step-0 rows of one configuration (all seeds): the fitted per-layer signal factor."""
    ratios = []
    for _, run in layers.groupby("run_id"):
        run = run.sort_values("layer")
        var = run.loc[run["layer"] <= run["depth"], "z_std"].to_numpy(float) ** 2
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.log(var[1:] / var[:-1])
        ratios.extend(r[np.isfinite(r)])
    return float(np.exp(np.mean(ratios))) if ratios else np.nan


def _name(key):
    depth, init = key
    return f"{depth} layers {display(init)}"


@figure("he_signal")
def he_signal(results):
    full = results
    results, _ = at_best_rates(full, ("depth", "init"))
    layers = at_step(with_keys(results, results.layers, ["init", "depth", "width"]))
    depths = sorted(layers["depth"].unique()) if not layers.empty else []
    fig, axes = new_figure(ncols=2, width=FULL_WIDTH, height=2.7)
    numbers = {}
    for (init, depth), rows in sorted(groups(layers, ["init", "depth"]),
                                      key=lambda kv: (_rank(kv[0][0]), kv[0][1])):
        hidden = rows[rows["layer"] <= rows["depth"]]
        hidden = hidden.assign(var=hidden["z_std"] ** 2,
                               delta_rms=hidden["delta_norm"] / np.sqrt(hidden["width"]))
        color = color_for("init", init)
        style = linestyle_for(depths.index(depth))
        x = np.sort(hidden["layer"].unique())
        var = hidden.pivot_table(index="layer", columns="run_id", values="var").to_numpy().T
        grad = hidden.pivot_table(index="layer", columns="run_id",
                                  values="delta_rms").to_numpy().T
        seed_band(axes[0, 0], x, var, color, geometric=True, linestyle=style)
        seed_band(axes[0, 1], x, grad, color, geometric=True, linestyle=style)
        predicted = PREDICTED_RATIO.get(init)
        if predicted is not None and depth == max(depths):
            v1 = np.exp(np.nanmean(np.log(var[:, 0])))
            axes[0, 0].plot(x, v1 * predicted ** (x - 1), color=color, linewidth=0.6,
                            linestyle=":", zorder=1)
        ratio = variance_ratio(rows)
        per_seed = [variance_ratio(g) for _, g in rows.groupby("run_id")]
        with np.errstate(divide="ignore", invalid="ignore"):
            g = np.exp(np.nanmean(np.log(grad), axis=0))
            grad_ratio = float(np.exp(np.nanmean(np.log(g[:-1] / g[1:]))))
        numbers.setdefault(init, {})[f"depth {depth}"] = {
            "variance_ratio_per_layer": ratio, "variance_ratio_per_seed": per_seed,
            "grad_variance_ratio_per_layer": grad_ratio ** 2,
            "var_first": float(np.exp(np.nanmean(np.log(var[:, 0])))),
            "var_top": float(np.exp(np.nanmean(np.log(var[:, -1]))))}
    log_axis(axes[0, 0], "y", r"Var($z_l$) at init")
    axes[0, 0].set(xlabel="hidden layer l", title="(a) forward signal (dotted: predicted)")
    log_axis(axes[0, 1], "y", r"RMS of $\partial L/\partial z_l$ per unit at init")
    axes[0, 1].set(xlabel="hidden layer l", title="(b) back-propagated gradient")
    inits = sorted({i for i in numbers}, key=_rank)
    colors = [Line2D([], [], color=color_for("init", i), label=display(i)) for i in inits]
    styles = [Line2D([], [], color="0.3", linestyle=linestyle_for(k), label=f"{d} hidden layers")
              for k, d in enumerate(depths)]
    styles.append(Line2D([], [], color="0.3", linestyle=":", linewidth=0.6,
                         label="predicted: x1/2 (Xavier), x1 (He) per layer"))
    legend_rows(fig, [colors, styles])
    deepest = f"depth {max(depths)}" if depths else ""
    parts = [f"{display(i)} {band(numbers[i][deepest]['variance_ratio_per_seed'])} (predicted "
             f"{fmt(PREDICTED_RATIO.get(i, np.nan))})" for i in inits if deepest in numbers[i]]
    width = int(layers["width"].max()) if not layers.empty else 0
    caption = (
        f"(a) Variance of each hidden layer's pre-activation z_l and (b) RMS per unit of the "
        f"back-propagated gradient dL/dz_l at initialization, plain ReLU nets of width {width} "
        f"(log scale; geometric mean and min-max band over seeds; line style: depth). Per-layer "
        f"variance factor Var(z_(l+1))/Var(z_l) at {max(depths) if depths else 0} layers, mean "
        f"[min, max] over seeds: {'; '.join(parts)}.")
    return [Figure(fig, "he_signal", with_verdict(caption, "he2015", full), numbers)]


def _never_learns(results):
    """(depth, init) whose every run, at every rate, ends above 0.95x its initial loss."""
    runs = runs_with(results, ["depth", "init", "lr"])
    ratio = runs.assign(r=runs["end_loss"] / runs["initial_loss"]).groupby(["depth", "init"])
    return [k for k, g in ratio if (g["r"] > 0.95).all()]


@figure("he_training")
def he_training(results):
    full = results
    results, best = at_best_rates(full, ("depth", "init"))
    hist = with_keys(results, results.history, ["init", "depth"])
    depths = sorted(hist["depth"].unique()) if not hist.empty else []
    fig, axes = new_figure(ncols=max(1, len(depths)), width=FULL_WIDTH, height=2.5, sharey=True)
    numbers = {}
    for ax, depth in zip(axes[0], depths):
        part = hist[hist["depth"] == depth]
        curves = seed_curves(part, ["init"], "step", "train_loss")
        for (init,), (x, ys) in sorted(curves.items(), key=lambda kv: _rank(kv[0][0])):
            lr = best.get((depth, init), (np.nan,))[0]
            seed_band(ax, x, ys, color_for("init", init), label=display(init) if depth ==
                      depths[0] else None)
            start, end = float(np.nanmean(ys[:, 0])), float(np.nanmean(ys[:, -1]))
            numbers.setdefault(init, {})[f"depth {depth}"] = {
                "initial_loss": start, "final_loss": end, "relative_drop": 1 - end / start,
                "end_over_initial": list(ys[:, -1] / ys[:, 0]), "lr": lr}
        points = diverged_points(part, "step", "train_loss")
        if points:
            mark_diverged(ax, *zip(*points), label="diverged (last finite loss)")
        ax.set(title=f"{depth} hidden layers", xlabel="step")
        ax.set_ylim(bottom=0)
    if depths:
        axes[0, 0].set_ylabel("training loss (cross-entropy)")
    legend_below(fig, axes, ncol=3)
    parts = []
    for depth in depths:
        for init in sorted(numbers, key=_rank):
            v = numbers[init].get(f"depth {depth}")
            if v:
                parts.append(f"{depth} layers {display(init)} {band(v['end_over_initial'])} "
                             f"(lr {fmt(v['lr'])})")
    grid = next(iter(best.values()))[1] if best else []
    tuned = (f"each (depth, init) at its own best rate of the grid "
             f"{', '.join(fmt(g) for g in grid)}" if len(grid) > 1 else "one rate")
    failed = failed_count(results)
    caption = (
        f"Training loss of plain ReLU nets over {training_setup(results)}, Xavier against He "
        f"init, {tuned} (mean and min-max band over seeds; digits, width and steps far below "
        f"the paper's ImageNet nets). Final / initial loss: {'; '.join(parts)}. He et al. 2015: "
        f"at 30 layers Xavier stalls and He trains; at moderate depth both converge."
        + "".join(f" {_name(k)} learns at no rate of the grid (final / initial loss above "
                  f"0.95 on every run); it is drawn at its lowest final loss."
                  for k in (_never_learns(full) if len(grid) > 1 else []))
        + (f" {failed} failed runs have no data." if failed else ""))
    return [Figure(fig, "he_training", with_verdict(caption, "he2015", full), numbers)]
