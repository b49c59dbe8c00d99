"""Figures of the `vanishing` study (report sec. 8): how the weight-gradient norm ||dL/dW_l||
changes from layer to layer, across depth, activation and initialization, at initialization
and through training.

- vanishing_profiles: ||dL/dW_l|| against layer index (log scale), one column per activation,
  one row per training step (0, middle, last); color = init, line style = depth.
- vanishing_ratio: the first-to-last layer ratio r = ||dL/dW_1|| / ||dL/dW_L|| against depth at
  step 0 and at the last step, with the label thresholds.
- vanishing_heatmap: layer x step maps of log10 ||dL/dW_l|| for representative deep runs.

Layers are numbered 1..L with L = depth + 1: `depth` hidden layers and the output layer.
Diverged runs stay in every figure (crosses, hatched steps, named in the captions); failed runs
have no data and are counted in the captions.

The data tables and caption numbers behind them (run_table, _summary, the *_sentence
helpers) are in studies/plots/_vanishing_table.py.
"""
import matplotlib.ticker as mticker
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.transforms import blended_transform_factory

from kernels.activations import ACTIVATIONS

from . import Figure, figure
from ._runs import with_verdict
from ._vanishing_table import (
    STANDARD_INIT,
    _check,
    _contrast_sentence,
    _final_sentence,
    _geo,
    _grads,
    _key,
    _name,
    _ordered,
    _stall_sentence,
    _status_sentence,
    _summary,
    _thresholds,
    run_table,
    tuned,
)
from .style import (
    ACTIVATION_COLORS,
    DIVERGED_COLOR,
    FULL_WIDTH,
    INIT_COLORS,
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

GRAD_LABEL = r"$\|\partial L/\partial W_l\|$"
MATCHED_INIT = {n: a.matched_init for n, a in ACTIVATIONS.items()}  # He for relu-like, else Xavier
NONFINITE_GREY = "0.6"


# ---------------------------------------------------------------- figures

def _profile_steps(table):
    """Step 0, a middle step and the last step recorded by the completed runs."""
    done = table[(table["status"] == "completed") & (table["layers"] > 0)]
    source = done if len(done) else table[table["layers"] > 0]
    steps = sorted({s for ss in source["steps"] for s in ss})
    if len(steps) <= 2:
        return steps
    last = steps[-1]
    middle = min(steps[1:-1], key=lambda s: abs(s - last / 2))
    return [steps[0], middle, last]


@figure("vanishing_profiles")
def profiles(results):
    """||dL/dW_l|| against layer index, per activation (columns) and step (rows)."""
    _check(results)
    full = results
    results, rate_note = tuned(results, short=True)
    table = run_table(results)
    numbers = _summary(table, _thresholds(results))
    grads = _grads(results)
    data = table[table["layers"] > 0]
    activations = _ordered(data["activation"], ACTIVATION_COLORS)
    inits = _ordered(data["init"], INIT_COLORS)
    depths = sorted(data["depth"].unique(), reverse=True)
    style = {d: linestyle_for(i) for i, d in enumerate(depths)}
    steps = _profile_steps(table)
    fig, axes = new_figure(ncols=len(activations), nrows=len(steps), width=FULL_WIDTH,
                           height=1.55 * len(steps) + 0.7, sharex=True, sharey=True)
    any_nonfinite = any_zero = False
    for row, step in enumerate(steps):
        for col, act in enumerate(activations):
            ax = axes[row, col]
            missing = []
            for (init, depth), group in data[data["activation"] == act].groupby(
                    ["init", "depth"], sort=False):
                profiles_ = []
                for run in group.itertuples():
                    if step in run.steps:
                        profiles_.append(grads.loc[(run.run_id, step)].to_numpy(float)
                                         [:run.layers])
                    elif run.status == "diverged":
                        missing.append(f"{display(init)} d{int(depth)}"
                                       + (f"@{int(run.diverged_at)}"
                                          if run.diverged_at is not None else ""))
                if not profiles_:
                    continue
                ys = np.array(profiles_)
                x = np.arange(1, ys.shape[1] + 1)
                seed_band(ax, x, ys, color_for("init", init), geometric=True,
                          linestyle=style[depth])
                bad = ~np.isfinite(ys).all(axis=0)
                if bad.any():
                    any_nonfinite = True
                    mark_diverged(ax, x[bad], np.full(bad.sum(), 0.97),
                                  size=4)[0].set_transform(
                        blended_transform_factory(ax.transData, ax.transAxes))
                zero = (ys == 0).any(axis=0)
                if zero.any():
                    any_zero = True
                    _mark_zero(ax, x[zero], color_for("init", init), size=3)
            title = f"{display(act)}, step {step}" + (" (initialization)" if step == 0 else "")
            if missing:
                title += "\n× diverged before: " + ", ".join(missing[:3]) + \
                    (" ..." if len(missing) > 3 else "")
                any_nonfinite = True
            ax.set_title(title)
            log_axis(ax, "y")
            if col == 0:
                ax.set_ylabel(GRAD_LABEL)
            if row == len(steps) - 1:
                ax.set_xlabel("layer l (1 = first hidden, L = output)")
    max_layers = int(data["layers"].max())
    axes[0, 0].set_xlim(0.8, max_layers + 0.2)
    axes[0, 0].xaxis.set_major_locator(mticker.MaxNLocator(integer=True, nbins=6))
    colors = [Line2D([], [], color=color_for("init", i), lw=1.6, label=f"{display(i)} init")
              for i in inits]
    marks = []
    if any_nonfinite or numbers["diverged"]:
        marks.append(Line2D([], [], label="non-finite / diverged", markersize=5,
                            marker="x", color=DIVERGED_COLOR, linestyle="none"))
    if any_zero:
        marks.append(Line2D([], [], marker="v", color="0.5", markeredgecolor="black",
                            markeredgewidth=0.4, linestyle="none", label="zero gradient"))
    legend_rows(fig, [colors + marks, [Line2D([], [], color="0.3", linestyle=style[d],
                                              label=f"depth {int(d)}") for d in depths]])
    seeds = table["seed"].nunique()
    caption = (f"Per-layer weight-gradient norm {'||dL/dW_l||'} against layer index l "
               f"(1 = first hidden layer, L = depth + 1 = output layer; log scale) at steps "
               f"{', '.join(map(str, steps))} (rows) for each hidden activation (columns); "
               f"color = initialization, line style = depth; "
               + (f"geometric mean over {seeds} seeds with min-max band. " if seeds > 1
                  else "one seed. ")
               + _contrast_sentence(numbers) + " " + _status_sentence(numbers) + " "
               + rate_note)
    return [Figure(fig, "vanishing_profiles", with_verdict(caption, "vanishing", full), numbers)]


@figure("vanishing_ratio")
def ratio(results):
    """First-to-last layer gradient ratio against depth, at step 0 and at the last step."""
    _check(results)
    full = results
    results, rate_note = tuned(results)
    thresholds = _thresholds(results)
    table = run_table(results)
    numbers = _summary(table, thresholds)
    data = table[table["layers"] > 0]
    activations = _ordered(data["activation"], ACTIVATION_COLORS)
    inits = _ordered(data["init"], INIT_COLORS)
    fig, axes = new_figure(ncols=len(activations), width=FULL_WIDTH, height=2.6, sharey=True)
    for col, act in enumerate(activations):
        ax = axes[0, col]
        sub = data[data["activation"] == act]
        for init in inits:
            g = sub[sub["init"] == init]
            if g.empty:
                continue
            depths = sorted(g["depth"].unique())
            color = color_for("init", init)
            for column, ls, face in (("r0", "-", color), ("r_end", "--", "white")):
                ys = [g[g["depth"] == d][column].to_numpy(float) for d in depths]
                y = [_geo(v) for v in ys]
                ax.plot(depths, y, color=color, linestyle=ls, marker="o", markersize=3.5,
                        markerfacecolor=face)
                lo = [np.nanmin(v) if np.isfinite(v).any() else np.nan for v in ys]
                hi = [np.nanmax(v) if np.isfinite(v).any() else np.nan for v in ys]
                if any(len(v) > 1 for v in ys):
                    ax.vlines(depths, lo, hi, color=color, alpha=0.4, lw=2)
            div = g[g["status"] == "diverged"]
            if len(div):
                mark_diverged(ax, div["depth"].to_numpy(float), div["r_last"].to_numpy(float),
                              size=6)
            zero = g[g["zero_end"] & (g["status"] != "diverged")]
            if len(zero):
                _mark_zero(ax, zero["depth"].to_numpy(float), color)
        ax.axhline(1.0, color="0.6", lw=0.6)
        ax.set_title(display(act))
        log_axis(ax, "y")
        ax.set_xlabel("depth (hidden layers)")
        ax.set_xticks(sorted(data["depth"].unique()))
        if col == 0:
            ax.set_ylabel(r"$r = \|\partial L/\partial W_1\| \,/\, \|\partial L/\partial W_L\|$")
    _threshold_lines(axes[0], thresholds)
    handles = [Line2D([], [], color=color_for("init", i), lw=1.6, label=f"{display(i)} init")
               for i in inits]
    handles += [Line2D([], [], color="0.3", marker="o", markersize=3.5, label="step 0"),
                Line2D([], [], color="0.3", marker="o", markersize=3.5, linestyle="--",
                       markerfacecolor="white", label="last step")]
    if numbers["diverged"]:
        handles.append(Line2D([], [], marker="x", color=DIVERGED_COLOR, linestyle="none",
                              label="diverged (last finite r)"))
    if numbers["zero_gradient"]:
        handles.append(Line2D([], [], marker="v", color="0.5", markeredgecolor="black",
                              markeredgewidth=0.4, linestyle="none",
                              label="last step: zero gradient"))
    legend_below(fig, handles=handles, labels=[h.get_label() for h in handles],
                 ncol=min(len(handles), 6))
    last = max((s for ss in table["steps"] for s in ss), default=0)
    caption = ("First-to-last layer gradient ratio r = ||dL/dW_1|| / ||dL/dW_L|| against depth "
               f"(log scale), per hidden activation, at step 0 (solid, filled) and at the last "
               f"recorded step {last} (dashed, open); color = initialization; dotted: the "
               f"vanishing-label threshold {fmt(thresholds.vanishing_ratio)} (and the exploding "
               f"one, {fmt(thresholds.exploding_ratio)}, where the data come near it). "
               + _contrast_sentence(numbers) + " "
               + _final_sentence(numbers, last) + " "
               + _stall_sentence(numbers) + " "
               + _status_sentence(numbers) + " " + rate_note)
    return [Figure(fig, "vanishing_ratio", with_verdict(caption, "vanishing", full), numbers)]


def _mark_zero(ax, x, color, size=4):
    """Downward triangles at the bottom edge: gradients exactly zero (no point on a log axis)."""
    ax.plot(x, np.full(len(x), 0.03), marker="v", linestyle="none", color=color,
            markersize=size, markeredgecolor="black", markeredgewidth=0.4, zorder=5,
            clip_on=False, transform=blended_transform_factory(ax.transData, ax.transAxes))


def _threshold_lines(axes, thresholds):
    """Dotted label thresholds; the exploding one only when the data come within a decade of
    it (it would otherwise squeeze the data into part of the panel)."""
    lo, hi = axes[0].get_ylim()
    lines = [(thresholds.vanishing_ratio, "vanishing", "bottom")]
    if hi > thresholds.exploding_ratio / 10:
        lines.append((thresholds.exploding_ratio, "exploding", "top"))
    lo = min(lo, thresholds.vanishing_ratio / 3)
    hi = max(hi, 10.0, *(v * 3 for v, _, _ in lines))
    for i, ax in enumerate(axes):
        for value, name, where in lines:
            ax.axhline(value, color="0.35", lw=0.8, linestyle=":")
            if i == len(axes) - 1:
                ax.text(0.98, value, f"{name} threshold {fmt(value)}", va=where, ha="right",
                        fontsize=5.5, color="0.3", transform=blended_transform_factory(
                            ax.transAxes, ax.transData))
        ax.set_ylim(lo, hi)


def _representative(table):
    """Up to 6 deepest runs (first seed): per activation, the standard init and the matched
    one (He for the ReLU family, Xavier otherwise), else any other init."""
    data = table[table["layers"] > 0]
    if data.empty:
        return []
    deepest = data["depth"].max()
    deep = data[data["depth"] == deepest]
    deep = deep[deep["seed"] == deep["seed"].min()]
    picks = []
    activations = _ordered(deep["activation"], ACTIVATION_COLORS)[:3]
    for act in activations:
        sub = deep[deep["activation"] == act]
        inits = _ordered(sub["init"], INIT_COLORS)
        wanted = [STANDARD_INIT, MATCHED_INIT.get(act, "xavier_normal")]
        chosen = [i for i in wanted if i in inits]
        chosen += [i for i in inits if i not in chosen][:2 - len(chosen)]
        for init in chosen[:2]:
            picks.append(sub[sub["init"] == init].iloc[0])
    return picks


def _step_edges(steps):
    """Cell edges centred on the recorded steps."""
    steps = np.asarray(steps, float)
    if len(steps) == 1:
        return np.array([steps[0] - 0.5, steps[0] + 0.5])
    mids = (steps[1:] + steps[:-1]) / 2
    return np.concatenate([[2 * steps[0] - mids[0]], mids, [2 * steps[-1] - mids[-1]]])


@figure("vanishing_heatmap")
def heatmap(results):
    """log10 ||dL/dW_l|| over layers and steps for representative deep runs."""
    import matplotlib.colors as mcolors
    import matplotlib.pyplot as plt
    _check(results)
    full = results
    results, rate_note = tuned(results, short=True)
    table = run_table(results)
    numbers = _summary(table, _thresholds(results))
    picks = _representative(table)
    if not picks:
        raise ValueError("vanishing_heatmap: no run recorded per-layer gradients")
    grads = _grads(results)
    all_steps = sorted({s for p in picks for s in p["steps"]})
    x_edges = _step_edges(all_steps)
    norms = [grads.loc[p["run_id"]].reindex(index=all_steps).iloc[:, :p["layers"]]
             .to_numpy(float).T for p in picks]  # layer x step
    positive = np.concatenate([g[np.isfinite(g) & (g > 0)] for g in norms] + [np.ones(1)])
    vmin, vmax = np.floor(np.log10(positive.min())), np.ceil(np.log10(positive.max()))
    vmax = max(vmax, vmin + 1)
    acts = _ordered([p["activation"] for p in picks], ACTIVATION_COLORS)
    rows = max(sum(1 for p in picks if p["activation"] == a) for a in acts)
    fig, axes = new_figure(ncols=len(acts), nrows=rows, width=FULL_WIDTH,
                           height=1.7 * rows + 0.6, sharex=True, sharey=True)
    # NaN/inf (not finite, or not recorded) grey; exactly zero (below vmin) white
    cmap = plt.get_cmap("viridis").with_extremes(bad=NONFINITE_GREY, under="white")
    norm = mcolors.Normalize(vmin, vmax)
    per_panel, mesh, seen = {}, None, set()
    filled = [0] * len(acts)  # panels used per column
    for p, g in zip(picks, norms):
        col = acts.index(p["activation"])
        row = filled[col]
        filled[col] += 1
        ax = axes[row, col]
        n_layers = g.shape[0]
        with np.errstate(divide="ignore", invalid="ignore"):
            logs = np.where(g == 0, vmin - 1, np.log10(g))
        seen.update({"zero"} if (g == 0).any() else set())
        recorded = np.isin(all_steps, p["steps"])
        seen.update({"nonfinite"} if (~np.isfinite(g[:, recorded])).any() else set())
        mesh = ax.pcolormesh(x_edges, np.arange(0.5, n_layers + 1), np.ma.masked_invalid(logs),
                             cmap=cmap, norm=norm, shading="flat", rasterized=True)
        ax.grid(False)
        ax.spines[:].set_visible(True)  # frames the white (zero) cells
        ax.set_xlim(x_edges[0], x_edges[-1])
        labels = p["labels"]
        ax.set_title(f"{_name(p['activation'], p['init'], p['depth'])}\n"
                     f"labels: {labels.replace(',', ', ') or 'none'}")
        if p["status"] == "diverged":
            seen.add("diverged")
            start = int(p["diverged_at"]) if p["diverged_at"] is not None \
                and not pd.isna(p["diverged_at"]) else max(p["steps"])
            ax.add_patch(Rectangle((start, 0.5), x_edges[-1] - start, n_layers, fill=False,
                                   hatch="///", edgecolor=DIVERGED_COLOR, lw=0))
            ax.text(0.98, 0.5, f"diverged at step {start}", transform=ax.transAxes,
                    ha="right", va="center", fontsize=6, color=DIVERGED_COLOR,
                    bbox=dict(fc="white", ec="none", alpha=0.8, pad=1))
        last = np.flatnonzero(recorded)[-1]
        per_panel[_key(p["activation"], p["init"], p["depth"])] = {
            "first_layer_step0": float(g[0, 0]), "first_layer_last": float(g[0, last]),
            "output_layer_step0": float(g[-1, 0]), "last_step": int(all_steps[last]),
            "labels": labels, "status": p["status"]}
        if col == 0:
            ax.set_ylabel("layer l (1 = first hidden)")
    for col, count in enumerate(filled):
        axes[count - 1, col].set_xlabel("training step")
        axes[count - 1, col].xaxis.set_tick_params(labelbottom=True)
        for row in range(count, rows):
            axes[row, col].set_visible(False)
    axes[0, 0].yaxis.set_major_locator(mticker.MaxNLocator(integer=True, nbins=6))
    ticks = all_steps if len(all_steps) <= 7 else all_steps[::int(np.ceil(len(all_steps) / 6))]
    axes[0, 0].set_xticks(ticks)
    fig.colorbar(mesh, ax=axes, label=r"$\log_{10} \|\partial L/\partial W_l\|$", shrink=0.9,
                 aspect=25, pad=0.02)
    keys = {"zero": Patch(fc="white", ec="black", lw=0.5, label="exactly zero"),
            "nonfinite": Patch(fc=NONFINITE_GREY, ec="none", label="not finite"),
            "diverged": Patch(fill=False, hatch="///", edgecolor=DIVERGED_COLOR,
                              label="after divergence (not recorded)")}
    if seen:
        handles = [keys[k] for k in keys if k in seen]
        fig.legend(handles=handles, loc="outside lower center", ncol=len(handles))
    numbers["panels"] = per_panel
    details = "; ".join(
        f"{_name(*k.split('/')[:2])}: ||dL/dW_1|| = {fmt(v['first_layer_step0'])} at step 0 and "
        f"{fmt(v['first_layer_last'])} at step {v['last_step']} (output layer "
        f"{fmt(v['output_layer_step0'])} at step 0)"
        + (f" [{v['labels']}]" if v["labels"] and v["labels"] != "healthy" else "")
        for k, v in per_panel.items())
    caption = (f"Layer x step maps of log10 ||dL/dW_l|| (shared color scale) for representative "
               f"runs at depth {int(picks[0]['depth'])} (seed {int(picks[0]['seed'])}): per "
               f"activation, the standard init and the matched one (Xavier for sigmoid/tanh, "
               f"He for ReLU). White: exactly zero; grey: not finite; hatched: steps after a "
               f"divergence. {details}. {rate_note}")
    return [Figure(fig, "vanishing_heatmap", with_verdict(caption, "vanishing", full), numbers)]
