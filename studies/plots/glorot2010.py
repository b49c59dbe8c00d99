"""Figures of the `glorot2010` study (Glorot & Bengio 2010): deep sigmoid/tanh nets with the
standard init U(+-1/sqrt(fan_in)) and the normalized (Xavier) init.

- glorot_activations: per hidden layer at initialization, the distribution of the activations as
  percentile bars (p15-p85 box, whisker to p98, median dot; the store keeps percentiles 15, 50,
  85, 98 and mean/std per layer, not raw histograms): their Figs. 6 (activations).
- glorot_gradients: per layer at initialization, the back-propagated gradient
  of the hidden layers (RMS of dL/dz_l per unit: the batch-mean ||delta_l|| / sqrt(width)) and
  the weight gradient
  ||dL/dW_l||, log scale: their Fig. 7 (back-propagated gradients) in summary form.
- glorot_saturation: mean (solid) and 98th percentile (dashed) of each hidden layer's
  activations over training: their Figs. 2-3 (the top sigmoid layer pushed to 0).
"""
import numpy as np
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import NullLocator

from studies.analysis.findings.common import at_best_rates, band, rates_text

from . import Figure, figure
from ._runs import with_verdict
from ._curves import at_step, completed_runs, failed_count, training_setup, with_keys
from .style import (
    FULL_WIDTH,
    color_for,
    display,
    fmt,
    legend_below,
    legend_rows,
    log_axis,
    new_figure,
    seed_band,
)

INIT_NAMES = {"glorot_standard": "standard U(±1/√fan_in)",
              "xavier_uniform": "normalized (Xavier uniform)"}
ACT_ORDER = ("sigmoid", "tanh")
TOP_SATURATED = 0.1  # the top sigmoid layer counts as pushed to 0 below this mean activation


def _init_name(init):
    return INIT_NAMES.get(init, display(init))


def _ordered(values, order):
    values = list(dict.fromkeys(values))
    return sorted(values, key=lambda v: (order.index(v) if v in order else len(order), str(v)))


def _keys(results):
    return ["activation", "init", "depth", "width"]


def _tuned(results):
    """(the runs at each network's best learning rate, the full results for the verdict, a
    caption note naming the rates): each (activation, init) pair is tuned on its own grid."""
    tuned, best = at_best_rates(results, ("activation", "init"))
    grid = next(iter(best.values()))[1] if best else []
    note = (f" Each network at its own best SGD rate of {', '.join(fmt(v) for v in grid)} "
            f"(lowest mean final loss; a network whose runs all stall or diverge at every "
            f"rate has no best rate and is drawn at its least-bad one): " + rates_text(
                best, lambda k: f"{display(k[0])}/{_init_name(k[1]).split(' ')[0]}") + "."
            if len(grid) > 1 else "")
    if len(grid) > 1:
        runs = results.runs[results.runs["status"] != "failed"]
        acc = runs.groupby(["activation", "lr"])["final_test_accuracy"].mean()
        note += " Best mean test accuracy over the grid: " + ", ".join(
            f"{display(a)} {fmt(100 * acc[a].max())}%" for a in acc.index.levels[0]) + "."
    return tuned, results, note


def _hidden_at_init(results):
    layers = at_step(with_keys(results, results.layers, _keys(results)))
    return layers, layers[layers["layer"] <= layers["depth"]]


@figure("glorot_activations")
def glorot_activations(results):
    results, full, _ = _tuned(results)
    _, hidden = _hidden_at_init(results)
    acts = _ordered(hidden["activation"], ACT_ORDER) if not hidden.empty else []
    inits = _ordered(hidden["init"], list(INIT_NAMES)) if not hidden.empty else []
    fig, axes = new_figure(ncols=max(1, len(acts)), width=FULL_WIDTH, height=2.6)
    numbers = {}
    width = 0.8 / max(1, len(inits))
    for ax, act in zip(axes[0], acts):
        for j, init in enumerate(inits):
            rows = hidden[(hidden["activation"] == act) & (hidden["init"] == init)]
            mean = rows.groupby("layer").mean(numeric_only=True)
            color = color_for("init", init)
            for layer, row in mean.iterrows():
                x = layer + (j - (len(inits) - 1) / 2) * width
                p15, p50, p85, p98 = (row[f"a_p{q}"] for q in (15, 50, 85, 98))
                ax.add_patch(Rectangle((x - width * 0.4, p15), width * 0.8, p85 - p15,
                                       facecolor=color, edgecolor=color, alpha=0.6))
                ax.plot([x, x], [p85, p98], color=color, linewidth=0.8)
                ax.plot([x - width * 0.2, x + width * 0.2], [p98, p98], color=color,
                        linewidth=0.8)
                ax.plot([x], [p50], marker="o", markersize=2, color="black")
            if len(mean):
                per_run = rows.pivot_table(index="run_id", columns="layer", values="a_std")
                numbers.setdefault(act, {})[init] = {
                    "a_std_per_layer": [float(v) for v in mean["a_std"]],
                    "a_p98_per_layer": [float(v) for v in mean["a_p98"]],
                    "a_std_first_per_run": [float(v) for v in per_run.iloc[:, 0]],
                    "a_std_top_per_run": [float(v) for v in per_run.iloc[:, -1]]}
        ax.set_title(display(act))
        layers = sorted(hidden["layer"].unique())
        ax.set_xticks(layers)
        ax.set_xlim(0.4, max(layers) + 0.6)
        ax.set_xlabel("hidden layer l")
    if acts:
        axes[0, 0].set_ylabel("activation value at init")
    handles = [Patch(color=color_for("init", i), alpha=0.6, label=_init_name(i)) for i in inits]
    handles.append(Line2D([], [], marker="o", markersize=2.5, color="black", linestyle="none",
                          label="median (box p15-p85, whisker p98)"))
    legend_below(fig, handles=handles, labels=[h.get_label() for h in handles], ncol=3)
    parts = []
    for act in acts:
        for init in inits:
            v = numbers.get(act, {}).get(init)
            if v:
                parts.append(f"{display(act)} {_init_name(init).split(' ')[0]} "
                             f"{band(v['a_std_first_per_run'], 2)} -> "
                             f"{band(v['a_std_top_per_run'], 2)}")
    width_units = int(hidden["width"].max()) if not hidden.empty else 0
    caption = (
        f"Activation values per hidden layer at initialization ({int(hidden['depth'].max()) if not hidden.empty else 0}"
        f" hidden layers of {width_units} units; box: 15th-85th percentile, whisker: 98th, dot: "
        f"median; averaged over seeds), standard against normalized init (Glorot & Bengio 2010, "
        f"Fig. 6, from stored percentiles rather than histograms). Activation std from the first "
        f"to the top hidden layer (mean [min, max] over seeds): {'; '.join(parts)}."
        + _tanh_shrink(numbers))
    return [Figure(fig, "glorot_activations", with_verdict(caption, "glorot2010", full),
                   numbers)]


def _tanh_shrink(numbers):
    """What the tanh std from the first to the top hidden layer shows, per init (seed means)."""
    tanh = numbers.get("tanh", {})
    if "glorot_standard" not in tanh or "xavier_uniform" not in tanh:
        return ""
    kept = {i: tanh[i]["a_std_per_layer"][-1] / tanh[i]["a_std_per_layer"][0]
            for i in ("glorot_standard", "xavier_uniform")}
    shrinks = kept["glorot_standard"] < 1
    wider = kept["xavier_uniform"] > kept["glorot_standard"]
    return (f" Tanh keeps {fmt(kept['glorot_standard'])} of its first-layer std at the top "
            f"under the standard init ({'shrinking' if shrinks else 'not shrinking'} with "
            f"depth), {fmt(kept['xavier_uniform'])} under the normalized init "
            f"({'wider' if wider else 'not wider'}).")


@figure("glorot_gradients")
def glorot_gradients(results):
    results, full, _ = _tuned(results)
    layers, _ = _hidden_at_init(results)
    acts = _ordered(layers["activation"], ACT_ORDER) if not layers.empty else []
    inits = _ordered(layers["init"], list(INIT_NAMES)) if not layers.empty else []
    fig, axes = new_figure(ncols=max(1, len(acts)), width=FULL_WIDTH, height=2.6, sharey=True)
    numbers = {}
    for ax, act in zip(axes[0], acts):
        for init in inits:
            rows = layers[(layers["activation"] == act) & (layers["init"] == init)]
            if rows.empty:
                continue
            color = color_for("init", init)
            hidden = rows[rows["layer"] <= rows["depth"]]
            hidden = hidden.assign(delta_rms=hidden["delta_norm"] / np.sqrt(hidden["width"]))
            xh = np.sort(hidden["layer"].unique())
            x = np.sort(rows["layer"].unique())
            delta = hidden.pivot_table(index="layer", columns="run_id",
                                       values="delta_rms").to_numpy().T
            wgrad = rows.pivot_table(index="layer", columns="run_id",
                                     values="w_grad_norm").to_numpy().T
            seed_band(ax, xh, delta, color, label=f"{_init_name(init)}", geometric=True,
                      marker="o", markersize=2.5)
            seed_band(ax, x, wgrad, color, geometric=True, linestyle=(0, (4, 2)), marker="s",
                      markersize=2.5)
            with np.errstate(divide="ignore", invalid="ignore"):
                gm = lambda m: np.exp(np.nanmean(np.log(m), axis=0))
                d, w = gm(delta), gm(wgrad)
            depth = int(rows["depth"].iloc[0])
            with np.errstate(divide="ignore", invalid="ignore"):
                d_runs, w_runs = delta[:, 0] / delta[:, depth - 1], wgrad[:, 0] / wgrad[:, -1]
            numbers.setdefault(act, {})[init] = {
                "delta_ratio_per_run": [float(v) for v in d_runs],
                "w_grad_ratio_per_run": [float(v) for v in w_runs],
                "delta_rms_per_layer": [float(v) for v in d],
                "w_grad_per_layer": [float(v) for v in w],
                "delta_ratio_first_top": float(d[0] / d[depth - 1]),
                "w_grad_ratio_first_last": float(w[0] / w[-1])}
        ax.set_title(display(act))
        ax.set_xlabel("layer l (last = output layer)")
        ax.set_xticks(sorted(layers["layer"].unique()))
    if acts:
        log_axis(axes[0, 0], "y", "gradient at init")
    styles = [Line2D([], [], color="0.3", marker="o", markersize=2.5,
                     label=r"back-propagated: RMS of $\partial L/\partial z_l$ per unit"),
              Line2D([], [], color="0.3", linestyle=(0, (4, 2)), marker="s", markersize=2.5,
                     label=r"weight gradient $\|\partial L/\partial W_l\|$")]
    colors = [Line2D([], [], color=color_for("init", i), label=_init_name(i)) for i in inits]
    legend_rows(fig, [colors, styles])
    parts = []
    for act in acts:
        for init in inits:
            v = numbers.get(act, {}).get(init)
            if v:
                parts.append(f"{display(act)} {_init_name(init).split(' ')[0]}: "
                             f"{band(v['delta_ratio_per_run'], 2)} (weights "
                             f"{band(v['w_grad_ratio_per_run'], 2)})")
    caption = (
        "Gradients per layer at initialization (log scale; geometric mean and min-max band over "
        "seeds): the back-propagated gradient dL/dz_l as its RMS per unit (solid) and the weight "
        "gradient ||dL/dW_l|| (dashed), standard against normalized init (Glorot & Bengio 2010, "
        "Fig. 7, summarized by one number per layer). Back-propagated RMS of the first over the "
        f"top hidden layer (weight gradient: first over output layer; mean [min, max] over "
        f"seeds): {'; '.join(parts)}."
        + (f" {failed_count(results)} failed runs have no data." if failed_count(results) else ""))
    return [Figure(fig, "glorot_gradients", with_verdict(caption, "glorot2010", full),
                   numbers)]


def _evenness(numbers, acts):
    """What the measured first/top spread ratios say, per activation (1 = even)."""
    out = []
    for act in acts:
        v = numbers.get(act, {})
        if "glorot_standard" not in v or "xavier_uniform" not in v:
            continue
        std = v["glorot_standard"]["spread_ratio_first_top"]
        norm = v["xavier_uniform"]["spread_ratio_first_top"]
        evener = abs(np.log(norm)) < abs(np.log(std))
        out.append(f"{display(act)}: normalized {fmt(norm)} vs standard {fmt(std)}, "
                   + ("more even" if evener else "not more even")
                   + ("" if 0.5 <= norm <= 2 else f", still {fmt(1 / norm)}x narrower at the "
                      "input"))
    return ("Ratio near 1 means even: " + "; ".join(out) + ".") if out else ""


@figure("glorot_gradient_distributions")
def glorot_gradient_distributions(results):
    results, full, _ = _tuned(results)
    """Their Fig. 7: per hidden layer, the distribution of the back-propagated gradient
    dl_i/dz_l at initialization (box p15-p85, whiskers p2-p98, dot median; symlog scale)."""
    _, hidden = _hidden_at_init(results)
    if "g_p2" in hidden:
        hidden = hidden[np.isfinite(hidden["g_p2"])]
    else:
        hidden = hidden.iloc[0:0]
    acts = _ordered(hidden["activation"], ACT_ORDER) if not hidden.empty else []
    inits = _ordered(hidden["init"], list(INIT_NAMES)) if not hidden.empty else []
    fig, axes = new_figure(ncols=max(1, len(acts)), width=FULL_WIDTH, height=2.6)
    numbers, width = {}, 0.8 / max(1, len(inits))
    for ax, act in zip(axes[0], acts):
        spread_max = 0.0
        for j, init in enumerate(inits):
            rows = hidden[(hidden["activation"] == act) & (hidden["init"] == init)]
            mean = rows.groupby("layer").mean(numeric_only=True)
            color = color_for("init", init)
            for layer, row in mean.iterrows():
                x = layer + (j - (len(inits) - 1) / 2) * width
                p2, p15, p50, p85, p98 = (row[f"g_p{q}"] for q in (2, 15, 50, 85, 98))
                ax.add_patch(Rectangle((x - width * 0.4, p15), width * 0.8, p85 - p15,
                                       facecolor=color, edgecolor=color, alpha=0.6))
                ax.plot([x, x], [p2, p98], color=color, linewidth=0.8)
                ax.plot([x], [p50], marker="o", markersize=2, color="black")
                spread_max = max(spread_max, abs(p2), abs(p98))
            if len(mean):
                spread = (mean["g_p98"] - mean["g_p2"]).to_numpy()
                per_run = rows.assign(spread=rows["g_p98"] - rows["g_p2"]).pivot_table(
                    index="run_id", columns="layer", values="spread")
                numbers.setdefault(act, {})[init] = {
                    "spread_ratio_per_run": [float(v) for v in
                                             per_run.iloc[:, 0] / per_run.iloc[:, -1]],
                    "g_spread_per_layer": [float(v) for v in spread],
                    "g_std_per_layer": [float(v) for v in mean["g_std"]],
                    "spread_ratio_first_top": float(spread[0] / spread[-1])}
        linthresh = max(spread_max * 1e-3, 1e-12)
        ax.set_yscale("symlog", linthresh=linthresh)
        top = 10.0 ** np.ceil(np.log10(max(spread_max, linthresh)))
        ax.set_yticks([-top, -top / 100, 0.0, top / 100, top])  # a few labels that do not collide
        ax.yaxis.set_minor_locator(NullLocator())
        ax.set_title(display(act))
        layers = sorted(hidden["layer"].unique())
        ax.set_xticks(layers)
        ax.set_xlim(0.4, max(layers) + 0.6)
        ax.set_xlabel("hidden layer l")
    if acts:
        axes[0, 0].set_ylabel(r"back-propagated gradient $\partial l_i/\partial z_l$ at init")
    handles = [Patch(color=color_for("init", i), alpha=0.6, label=_init_name(i)) for i in inits]
    handles.append(Line2D([], [], marker="o", markersize=2.5, color="black", linestyle="none",
                          label="median (box p15-p85, whiskers p2-p98)"))
    legend_below(fig, handles=handles, labels=[h.get_label() for h in handles], ncol=3)
    parts = [f"{display(a)} {_init_name(i).split(' ')[0]} "
             f"{band(numbers[a][i]['spread_ratio_per_run'], 2)}"
             for a in acts for i in inits if i in numbers.get(a, {})]
    caption = (
        "Distribution of the back-propagated gradient dl_i/dz_l per hidden layer at "
        "initialization (box: 15th-85th percentile, whiskers: 2nd-98th, dot: median; symlog "
        "scale; averaged over seeds), standard against normalized init (Glorot & Bengio 2010, "
        "Fig. 7). Width of the 2nd-98th percentile range, first over top hidden layer (mean "
        "[min, max] over seeds): "
        f"{'; '.join(parts) or 'no gradient percentiles in this store'}. "
        + _evenness(numbers, acts))
    caption = with_verdict(caption, "glorot2010", full)
    return [Figure(fig, "glorot_gradient_distributions", caption,
                   numbers)]


def _top_by_rate(full):
    """' Top sigmoid layer's final mean per rate (standard init): lr 0.03 0.49 [..], ...' over
    the whole rate grid, so a net drawn at its least-bad rate is seen at the others too."""
    layers = with_keys(full, full.layers, _keys(full) + ["lr"])
    top = layers[(layers["activation"] == "sigmoid") & (layers["init"] == "glorot_standard")
                 & (layers["layer"] == layers["depth"]) & layers["a_mean"].notna()]
    if top.empty or top["lr"].nunique() < 2:
        return ""
    end = top[top["step"] == top.groupby("run_id")["step"].transform("max")]
    return (" Top sigmoid layer's final mean activation per rate (standard init; mean [min, "
            "max] over seeds): " + ", ".join(f"lr {fmt(lr)} {band(g['a_mean'])}"
                                             for lr, g in end.groupby("lr")) + ".")


@figure("glorot_saturation")
def glorot_saturation(results):
    results, full, rate_note = _tuned(results)
    layers = with_keys(results, results.layers, _keys(results))
    hidden = layers[layers["layer"] <= layers["depth"]] if not layers.empty else layers
    acts = _ordered(hidden["activation"], ACT_ORDER) if not hidden.empty else []
    inits = _ordered(hidden["init"], list(INIT_NAMES)) if not hidden.empty else []
    fig, axes = new_figure(ncols=max(1, len(inits)), nrows=max(1, len(acts)), width=FULL_WIDTH,
                           height=2.0 * max(1, len(acts)) + 0.5, sharex=True)
    numbers = {}
    depth = int(hidden["depth"].max()) if not hidden.empty else 1
    import matplotlib
    cmap = matplotlib.colormaps["viridis"]
    layer_color = {l: cmap(0.9 * (l - 1) / max(1, depth - 1)) for l in range(1, depth + 1)}
    diverged_runs = set(completed_runs(results).query("status == 'diverged'")["run_id"]) \
        if not completed_runs(results).empty else set()
    for r, act in enumerate(acts):
        for c, init in enumerate(inits):
            ax = axes[r, c]
            rows = hidden[(hidden["activation"] == act) & (hidden["init"] == init)]
            for layer, part in rows.groupby("layer"):
                center = "a_mean" if act == "sigmoid" else "a_std"  # tanh: symmetric about 0
                for col, style in ((center, "-"), ("a_p98", (0, (4, 2)))):
                    table = part.pivot_table(index="step", columns="run_id", values=col)
                    seed_band(ax, table.index.to_numpy(), table.to_numpy().T, layer_color[layer],
                              linestyle=style, label=f"layer {layer}" if style == "-" else None)
            ax.set_title(f"{display(act)}, {_init_name(init)}")
            if act == "sigmoid":
                ax.axhline(TOP_SATURATED, color="0.5", linewidth=0.6, linestyle=":")
            top = rows[rows["layer"] == rows["depth"]]
            if not top.empty:
                mean = top.groupby("step")["a_mean"].mean()
                below = mean[mean < TOP_SATURATED]
                per_run = top.pivot_table(index="step", columns="run_id", values="a_mean")
                numbers.setdefault(act, {})[init] = {
                    "top_mean_init_per_run": [float(v) for v in per_run.iloc[0]],
                    "top_mean_final_per_run": [float(v) for v in per_run.iloc[-1]],
                    "top_mean_init": float(mean.iloc[0]), "top_mean_min": float(mean.min()),
                    "top_mean_final": float(mean.iloc[-1]),
                    "top_p98_final": float(top.groupby("step")["a_p98"].mean().iloc[-1]),
                    "first_step_top_below": int(below.index[0]) if len(below) else None,
                    "saturated_fraction_final": [
                        float(v) for v in rows[rows["step"] == rows["step"].max()]
                        .groupby("layer")["saturated_fraction"].mean()]}
            if diverged_runs & set(rows["run_id"]):
                ax.text(0.98, 0.95, "diverged run(s): curves end", transform=ax.transAxes,
                        ha="right", va="top", fontsize=6)
    for ax in axes[-1]:
        ax.set_xlabel("step")
    for r, act in enumerate(acts):
        axes[r, 0].set_ylabel(f"{display(act)} activation")
    colors = [Line2D([], [], color=layer_color[l], label=f"hidden layer {l}")
              for l in range(1, depth + 1)]
    styles = [Line2D([], [], color="0.3", label="mean (sigmoid) / std (tanh)"),
              Line2D([], [], color="0.3", linestyle=(0, (4, 2)), label="98th percentile")]
    legend_rows(fig, [colors, styles])
    sig = numbers.get("sigmoid", {})
    parts = []
    for init in inits:
        v = sig.get(init)
        if v:
            when = (f"below {TOP_SATURATED} from step {v['first_step_top_below']}"
                    if v["first_step_top_below"] is not None else f"never below {TOP_SATURATED}")
            parts.append(f"{_init_name(init).split(' ')[0]}: "
                         f"{band(v['top_mean_init_per_run'], 2)} at init, {when} (seed mean), "
                         f"{band(v['top_mean_final_per_run'], 2)} at the end")
    tanh = numbers.get("tanh", {})
    tanh_parts = [f"{_init_name(i).split(' ')[0]} "
                  + "/".join(fmt(100 * s, 1) for s in tanh[i]["saturated_fraction_final"])
                  for i in inits if i in tanh]
    caption = (
        f"Mean (sigmoid; tanh: std, its mean sits at 0 by symmetry; solid) and 98th "
        f"percentile (dashed) of each hidden layer's activations over "
        f"{training_setup(results)} (mean over seeds; Glorot & Bengio 2010, Figs. 2-3). Top hidden "
        f"sigmoid layer's mean activation (mean [min, max] over seeds): "
        f"{'; '.join(parts) or 'n/a'} (the paper: pushed to its "
        f"lower saturation 0 early in training). Tanh units saturated (|a| > 0.97) at the end, "
        f"layers 1..{depth}, %: {'; '.join(tanh_parts) or 'n/a'}.")
    return [Figure(fig, "glorot_saturation",
                   with_verdict(caption + rate_note + _top_by_rate(full), "glorot2010", full),
                   numbers)]
