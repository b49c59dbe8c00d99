"""Figures of the `mean_field` study (Poole et al. 2016; Schoenholz et al. 2017; report sec. 8):
the measured per-layer growth of the backpropagated gradient at initialization against the
mean-field factor chi_1 (studies.theory.mean_field), for tanh and ReLU across sigma_w^2.

Measured quantity (stated in every caption): ||delta_l||, the batch mean of the per-example
norms of delta_l = dL/dz_l, recorded at step 0 (the first batch, before any update). The
measured log chi_1 of a run is minus the least-squares slope of log ||delta_l||^2 against l over
the hidden layers l = depth//4 + 1 .. depth (the first quarter is skipped: there q_l is still
relaxing from the data's length to q*; the 10-unit output layer is left out). Predicted:
log chi_1 at the fixed point q* of the length map; the profiles also show the per-layer
prediction sum_k log chi_1(q_k) with q_k = E[z_k^2] measured at layer k.

- mean_field_profiles: ||delta_l||^2 / ||delta_depth||^2 against l (log), measured (seed band)
  and predicted, one panel per activation, one color per sigma_w^2.
- mean_field_chi1: chi_1 against sigma_w^2, theory curve and measured points (min-max over
  seeds), and the residual measured - predicted log chi_1.
- mean_field_phase: the order-to-chaos line (critical sigma_w^2 against sigma_b^2, from
  studies.theory.mean_field.critical_sigma_w2) with the runs placed on it, colored by measured log chi_1.
"""
import math

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from studies.theory import mean_field as theory

from . import Figure, figure
from ._runs import failed_note, runs_with_data, with_verdict
from .style import (FULL_WIDTH, color_for, display, fmt, legend_rows, log_axis, new_figure,
                    seed_band)

KEYS = ("activation", "sigma_w2", "sigma_b2", "depth", "width")
UNBOUNDED = ("relu", "leaky_relu")  # homogeneous: q has no fixed point above the line
ACTIVATION_ORDER = ("tanh", "relu", "sigmoid", "elu", "gelu", "leaky_relu", "gelu_tanh")
PHASE_COLOR_LIMIT = 0.5   # |log chi_1| at which the phase diagram's colors saturate
TOLERANCE = 0.03     # |measured - predicted| log chi_1 band drawn in the residual panel
SIGMA_W2_RANGE = (0.4, 5.0)
DELTA = r"\|\delta_l\|^2"


def sigma_w2_color(value):
    """A fixed color per sigma_w^2 (plasma over log sigma_w^2 in SIGMA_W2_RANGE)."""
    lo, hi = (math.log(v) for v in SIGMA_W2_RANGE)
    t = (math.log(max(value, 1e-12)) - lo) / (hi - lo)
    return mpl.colormaps["plasma"](0.05 + 0.85 * min(max(t, 0.0), 1.0))


def fit_layers(depth):
    """The hidden layers (1-based) the slope is fitted over."""
    return np.arange(int(depth) // 4 + 1, int(depth) + 1)


def _predicted_log_chi(sigma_w2, sigma_b2, activation, q=None):
    try:
        value = theory.chi_1(float(sigma_w2), float(sigma_b2), activation, q=q)
    except ValueError:
        return np.nan
    return math.log(value) if value > 0 else -np.inf


def measure(results):
    """One row per (non-failed) run: keys, seed, status, the measured and predicted log chi_1,
    and the per-layer arrays (layers, log ||delta_l||^2, per-layer predicted log chi_1(q_l)).
    Also returns the number of failed runs."""
    runs, failed = runs_with_data(results, KEYS)
    layers = results.layers
    rows = []
    for run in runs.to_dict("records"):
        depth = int(run["depth"])
        lay = layers[(layers["run_id"] == run["run_id"]) & (layers["step"] == 0)] \
            if not layers.empty else layers
        lay = lay.drop_duplicates("layer", keep="last").set_index("layer").sort_index()
        record = {k: run[k] for k in KEYS}
        record.update(run_id=run["run_id"], seed=run["seed"], status=run["status"],
                      measured=np.nan, n_fit=0)
        record["predicted"] = _predicted_log_chi(run["sigma_w2"], run["sigma_b2"],
                                                 run["activation"])
        hidden = np.arange(1, depth + 1)
        if len(lay) and "delta_norm" in lay:
            d = lay["delta_norm"].reindex(hidden).to_numpy(float)
            q = (lay["z_std"] ** 2 + lay["z_mean"] ** 2).reindex(hidden).to_numpy(float)
        else:
            d, q = np.full(depth, np.nan), np.full(depth, np.nan)
        with np.errstate(divide="ignore", invalid="ignore"):
            log_d = np.where((d > 0) & np.isfinite(d), np.log(d ** 2), np.nan)
        per_layer = np.array([_predicted_log_chi(run["sigma_w2"], run["sigma_b2"],
                                                 run["activation"], q=qq)
                              if np.isfinite(qq) else np.nan for qq in q])
        fit = fit_layers(depth)
        ok = np.isfinite(log_d[fit - 1])
        if ok.sum() >= 3:
            slope = np.polyfit(fit[ok], log_d[fit - 1][ok], 1)[0]
            record["measured"] = -float(slope)
            record["n_fit"] = int(ok.sum())
        record["predicted_q_l"] = float(np.nanmean(per_layer[fit[:-1] - 1])) \
            if np.isfinite(per_layer[fit[:-1] - 1]).any() else np.nan
        record.update(layers=hidden, log_delta2=log_d, per_layer=per_layer)
        rows.append(record)
    return pd.DataFrame(rows), failed


def summary_table(table):
    """Mean over seeds per (activation, sigma_b2, sigma_w2): predicted and measured log chi_1,
    their difference, and the seed range of the measurement."""
    if table.empty:
        return table
    g = table.groupby(["activation", "sigma_b2", "sigma_w2"], sort=True)
    out = g.agg(predicted=("predicted", "first"), measured=("measured", "mean"),
                low=("measured", "min"), high=("measured", "max"),
                seeds=("measured", lambda v: int(np.isfinite(v).sum())),
                depth=("depth", "first"), width=("width", "first")).reset_index()
    out["error"] = out["measured"] - out["predicted"]
    rank = {a: i for i, a in enumerate(ACTIVATION_ORDER)}
    out["_r"] = out["activation"].map(lambda a: rank.get(a, 99))
    return out.sort_values(["_r", "sigma_b2", "sigma_w2"]).drop(columns="_r") \
        .reset_index(drop=True)


def _activations(table):
    rank = {a: i for i, a in enumerate(ACTIVATION_ORDER)}
    return sorted(table["activation"].unique(), key=lambda a: (rank.get(a, 99), a))


def _setup_text(table):
    depth = int(table["depth"].iloc[0])
    width = int(table["width"].iloc[0])
    fit = fit_layers(depth)
    return (f"Width {width}, depth {depth}; measured log chi_1 = minus the slope of "
            f"log ||delta_l||^2 over hidden layers {fit[0]}-{fit[-1]} at step 0 (delta_l = "
            f"dL/dz_l, batch mean of per-example norms, before any update)")


def _diverged_note(table):
    """Runs stopped as diverged after step 0 are measured like the others: say which."""
    div = table[table["status"] == "diverged"]
    if div.empty:
        return ""
    configs = sorted({(r.activation, float(r.sigma_w2)) for r in div.itertuples()})
    return (f" {len(div)} run(s) were stopped as diverged at step 0, their first batch loss "
            f"being above 10x the training-set loss ("
            + ", ".join(f"{display(a)} sigma_w^2={fmt(s)}" for a, s in configs)
            + "); only their step-0 gradients are used, as for every run.")


def _worst(summary):
    """The setting whose measured log chi_1 is farthest from the prediction, as text."""
    finite = summary[np.isfinite(summary["error"])]
    if finite.empty:
        return "none measured"
    r = finite.loc[finite["error"].abs().idxmax()]
    return (f"{display(r.activation)} sigma_w^2={fmt(r.sigma_w2)}: chi_1 "
            f"{fmt(math.exp(r.predicted))} predicted vs {fmt(math.exp(r.measured))} measured "
            f"[{fmt(math.exp(r.low))}, {fmt(math.exp(r.high))}]")


def _numbers(summary):
    finite = summary[np.isfinite(summary["error"])]
    return {"table": [{"activation": r.activation, "sigma_w2": float(r.sigma_w2),
                       "sigma_b2": float(r.sigma_b2), "chi1_predicted": math.exp(r.predicted),
                       "chi1_measured": math.exp(r.measured) if np.isfinite(r.measured)
                       else float("nan"), "log_error": float(r.error), "seeds": int(r.seeds)}
                      for r in summary.itertuples()],
            "max_abs_log_error": float(finite["error"].abs().max()) if len(finite) else None,
            "mean_abs_log_error": float(finite["error"].abs().mean()) if len(finite) else None}


@figure("mean_field_profiles")
def mean_field_profiles(results):
    table, failed = measure(results)
    acts = _activations(table)
    fig, axes = new_figure(ncols=len(acts), width=FULL_WIDTH, height=2.9)
    sigmas = sorted(table["sigma_w2"].unique())
    b2 = sorted(table["sigma_b2"].unique())
    shown_b2 = 0.05 if 0.05 in b2 else b2[0]
    for ax, act in zip(axes[0], acts):
        sub = table[(table["activation"] == act) & (table["sigma_b2"] == shown_b2)]
        depth = int(sub["depth"].iloc[0])
        fit = fit_layers(depth)
        ax.axvspan(0.5, fit[0] - 0.5, color="0.9", zorder=0, linewidth=0)
        for s in sigmas:
            group = sub[sub["sigma_w2"] == s]
            if group.empty:
                continue
            color = sigma_w2_color(s)
            prof = np.vstack([r.log_delta2 - r.log_delta2[depth - 1] for r in group.itertuples()])
            layers = group["layers"].iloc[0]
            seed_band(ax, layers, np.exp(prof), color, geometric=True)
            per = np.nanmean(np.vstack(group["per_layer"].to_list()), axis=0)
            # predicted log(d_l/d_depth) = sum_{k=l}^{depth-1} log chi_1(q_k)
            pred = np.concatenate([np.cumsum(per[:-1][::-1])[::-1], [0.0]])
            ax.plot(layers, np.exp(pred), color=color, linestyle=(0, (3, 2)), linewidth=0.9)
        log_axis(ax, "y", rf"${DELTA} / \|\delta_{{{depth}}}\|^2$ at step 0")
        ax.set_xlabel("layer l (hidden)")
        ax.set_xlim(0.5, depth + 0.5)
        ax.set_title(f"{display(act)}, $\\sigma_b^2$ = {fmt(shown_b2)}")
        ax.text(0.02, 0.03, "not fitted", transform=ax.transAxes, fontsize=6, color="0.4")
    colors = [Line2D([], [], color=sigma_w2_color(s), label=f"$\\sigma_w^2$={fmt(s)}")
              for s in sigmas]
    styles = [Line2D([], [], color="0.3", label="measured (band: seeds)"),
              Line2D([], [], color="0.3", linestyle=(0, (3, 2)),
                     label=r"predicted: product of $\chi_1(q_k)$, $k \geq l$")]
    legend_rows(fig, [colors, styles])
    summary = summary_table(table)
    caption = (f"Backpropagated gradient ||delta_l||^2 per hidden layer at initialization, "
               f"relative to the last hidden layer (log scale), against the mean-field "
               f"prediction prod_k chi_1(q_k) with q_k = E[z_k^2] measured per layer (dashed); "
               f"grey: layers left out of the fit. {_setup_text(table)}. Per-layer factor "
               f"chi_1 predicted (at q*) vs measured (mean over seeds), largest log "
               f"difference: {_worst(summary[summary['sigma_b2'] == shown_b2])} (every setting "
               f"in the mean_field_chi1 figure)." + _diverged_note(table) + failed_note(failed))
    return [Figure(fig, "mean_field_profiles", with_verdict(caption, "mean_field", results),
                   _numbers(summary))]


def _theory_curve(activation, sigma_b2, grid):
    return np.array([math.exp(v) if np.isfinite(v) else np.nan
                     for v in (_predicted_log_chi(s, sigma_b2, activation) for s in grid)])


def _critical(activation, sigma_b2):
    try:
        return theory.critical_sigma_w2(float(sigma_b2), activation)
    except ValueError:
        return np.nan


@figure("mean_field_chi1")
def mean_field_chi1(results):
    table, failed = measure(results)
    summary = summary_table(table)
    acts = _activations(table)
    b2s = sorted(summary["sigma_b2"].unique())
    fig, axes = new_figure(ncols=2, width=FULL_WIDTH, height=2.7)
    ax, res = axes[0]
    lo = min(SIGMA_W2_RANGE[0], summary["sigma_w2"].min() * 0.9)
    hi = max(summary["sigma_w2"].max() * 1.1, 2.2)
    grid = np.linspace(lo, hi, 60)
    markers = ("o", "s", "^", "D")
    styles = ("-", (0, (5, 1.5)), (0, (1.5, 1)), (0, (5, 1.5, 1.5, 1.5)))
    handles_b2 = []
    crit_text = []
    for j, b2 in enumerate(b2s):
        handles_b2.append(Line2D([], [], color="0.3", linestyle=styles[j % 4],
                                 marker=markers[j % 4], markersize=3,
                                 label=f"$\\sigma_b^2$={fmt(b2)}"))
        for act in acts:
            color = color_for("activation", act)
            ax.plot(grid, _theory_curve(act, b2, grid), color=color, linestyle=styles[j % 4],
                    linewidth=0.9)
            sub = summary[(summary["activation"] == act) & (summary["sigma_b2"] == b2)]
            if sub.empty:
                continue
            y = np.exp(sub["measured"].to_numpy(float))
            err = np.vstack([y - np.exp(sub["low"].to_numpy(float)),
                             np.exp(sub["high"].to_numpy(float)) - y])
            ax.errorbar(sub["sigma_w2"], y, yerr=err, fmt=markers[j % 4], color=color,
                        markersize=3, capsize=1.5, linewidth=0.8, markerfacecolor="none")
            res.errorbar(sub["sigma_w2"] + 0.02 * (j - (len(b2s) - 1) / 2),
                         sub["error"], yerr=np.vstack([sub["measured"] - sub["low"],
                                                      sub["high"] - sub["measured"]]),
                         fmt=markers[j % 4], color=color, markersize=3, capsize=1.5,
                         linewidth=0.8, markerfacecolor="none")
            crit = _critical(act, b2)
            if np.isfinite(crit):
                ax.axvline(crit, color=color, linestyle=":", linewidth=0.8)
                crit_text.append(f"{display(act)} {fmt(crit)} (sigma_b^2={fmt(b2)})")
    ax.axhline(1.0, color="0.4", linewidth=0.8)
    log_axis(ax, "y", r"$\chi_1$ (per-layer factor of $\|\delta\|^2$)")
    ax.yaxis.set_major_locator(mpl.ticker.FixedLocator([0.125, 0.25, 0.5, 1, 2, 4, 8]))
    ax.yaxis.set_major_formatter(mpl.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlabel(r"$\sigma_w^2$")
    ax.text(0.03, 0.95, r"$\chi_1 > 1$: exploding", transform=ax.transAxes, fontsize=6,
            va="top")
    ax.text(0.97, 0.05, r"$\chi_1 < 1$: vanishing", transform=ax.transAxes, fontsize=6,
            ha="right")
    res.axhspan(-TOLERANCE, TOLERANCE, color="0.88", linewidth=0, zorder=0)
    res.axhline(0.0, color="0.4", linewidth=0.8)
    res.set_xlabel(r"$\sigma_w^2$")
    res.set_ylabel(r"measured $-$ predicted $\log\chi_1$")
    res.set_xlim(ax.get_xlim())
    acts_handles = [Line2D([], [], color=color_for("activation", a), marker="o",
                           markerfacecolor="none", markersize=3, label=display(a))
                    for a in acts]
    extra = [Line2D([], [], color="0.3", label="theory (at $q^*$)"),
             Line2D([], [], color="0.3", linestyle=":", label=r"critical $\sigma_w^2$"),
             Line2D([], [], color="0.88", linewidth=5, label=f"$\\pm${TOLERANCE}")]
    legend_rows(fig, [acts_handles + extra, handles_b2 if len(b2s) > 1 else []])
    numbers = _numbers(summary)
    bias = summary.groupby("activation")["error"].mean()
    numbers["mean_signed_log_error"] = {a: float(v) for a, v in bias.items()}
    signed = ", ".join(f"{display(a)} {bias[a]:+.3f}" for a in acts if a in bias)
    caption = (f"Per-layer gradient factor chi_1 against sigma_w^2: mean-field theory at the "
               f"fixed point q* (lines) and measured (markers: mean over seeds, bars: seed "
               f"range); right: the measured minus predicted log chi_1 (grey band "
               f"+-{TOLERANCE}). {_setup_text(table)}. Largest |measured - predicted| log "
               f"chi_1: {fmt(numbers['max_abs_log_error'])} ({_worst(summary)}), mean "
               f"{fmt(numbers['mean_abs_log_error'])}; mean signed difference "
               f"{signed} (finite width biases the measured log ratio slightly low, as "
               f"E[log X] < log E[X]). Critical sigma_w^2 (chi_1 = 1): "
               f"{'; '.join(crit_text)}." + _diverged_note(table) + failed_note(failed))
    return [Figure(fig, "mean_field_chi1", with_verdict(caption, "mean_field", results), numbers)]


@figure("mean_field_phase")
def mean_field_phase(results):
    table, failed = measure(results)
    summary = summary_table(table)
    acts = _activations(table)
    fig, axes = new_figure(ncols=len(acts), width=FULL_WIDTH, height=2.6)
    b_max = max(0.5, float(summary["sigma_b2"].max()) * 1.3)
    w_max = max(4.5, float(summary["sigma_w2"].max()) * 1.1)
    # the line leaves (1, 0) steeply for tanh: sample small sigma_b^2 densely
    b_grid = np.unique(np.concatenate([[0.0], np.geomspace(1e-4, b_max, 24)]))
    norm = mpl.colors.TwoSlopeNorm(vmin=-PHASE_COLOR_LIMIT, vcenter=0.0, vmax=PHASE_COLOR_LIMIT)
    cmap = mpl.colormaps["RdBu_r"]
    lines = []
    for ax, act in zip(axes[0], acts):
        crit = np.array([_critical(act, b) for b in b_grid])
        ax.plot(crit, b_grid, color="black", linewidth=1.2, label="order-to-chaos line")
        ok = np.isfinite(crit)
        unbounded = act in UNBOUNDED  # no chaotic phase: above the line q grows without bound
        ax.fill_betweenx(b_grid[ok], 0, crit[ok], color="#d6e4f0", linewidth=0, zorder=0)
        ax.fill_betweenx(b_grid[ok], crit[ok], w_max, color="#eeeeee" if unbounded
                         else "#f5dcd6", hatch="///" if unbounded else None,
                         edgecolor="#cccccc" if unbounded else None, linewidth=0, zorder=0)
        sub = summary[summary["activation"] == act]
        sc = ax.scatter(sub["sigma_w2"], sub["sigma_b2"], c=sub["measured"], cmap=cmap,
                        norm=norm, s=22, edgecolors="black", linewidths=0.5, zorder=3)
        ax.set_xlim(0, w_max)
        ax.set_ylim(-0.02 * b_max, b_max)
        ax.set_xlabel(r"$\sigma_w^2$")
        ax.set_ylabel(r"$\sigma_b^2$")
        ax.set_title(display(act))
        ax.text(0.04, 0.9, "ordered\n(vanishing)", transform=ax.transAxes, fontsize=6)
        ax.text(0.96, 0.9, "q unbounded\n(no chaotic phase;\nexploding)" if unbounded
                else "chaotic\n(exploding)", transform=ax.transAxes, fontsize=6, ha="right")
        lines.append(f"{display(act)}: " + ", ".join(
            f"{fmt(_critical(act, b))} at sigma_b^2={fmt(b)}" for b in (0.0, 0.05, 0.5)))
    cbar = fig.colorbar(sc, ax=axes[0].tolist(), shrink=0.9, pad=0.01, extend="both")
    cbar.set_label(r"measured $\log\chi_1$")
    sides = []
    for r in summary.itertuples():
        if np.isfinite(r.measured) and np.isfinite(r.predicted):
            sides.append(np.sign(r.measured) == np.sign(r.predicted) or abs(r.predicted) < 0.02)
    numbers = _numbers(summary)
    numbers["same_phase"] = int(sum(sides))
    numbers["configurations"] = len(sides)
    caption = (f"Order-to-chaos phase diagram: the critical sigma_w^2 at which chi_1 = 1, "
               f"against sigma_b^2 (studies.theory.mean_field.critical_sigma_w2; blue: ordered, "
               f"gradients vanish; red: chaotic, they explode; hatched grey for ReLU, which "
               f"has no chaotic phase: above sigma_w^2 = 2 the length q grows without bound "
               f"and gradients grow by sigma_w^2/2 per layer), with the studied "
               f"configurations colored by their measured log chi_1 (mean over seeds). "
               f"Critical line: {'; '.join(lines)}. {sum(sides)} of {len(sides)} "
               f"configurations fall on the predicted side (|predicted log chi_1| < 0.02 "
               f"counts as on the line). {_setup_text(table)}." + _diverged_note(table)
               + failed_note(failed))
    return [Figure(fig, "mean_field_phase", with_verdict(caption, "mean_field", results), numbers)]


CORRELATION_SIGMA_W2 = (1.0, 1.76, 2.5, 4.0)   # ordered, critical, two chaotic (tanh)


def _xi_c(sigma_w2, sigma_b2, activation):
    try:
        return theory.depth_scales(float(sigma_w2), float(sigma_b2), activation)[1]
    except ValueError:
        return np.nan


def _shown_sigma_b2(results):
    runs = results.runs
    values = sorted(runs["sigma_b2"].dropna().unique()) if "sigma_b2" in runs else []
    return 0.05 if 0.05 in values or not values else float(values[0])


@figure("mean_field_correlation")
def mean_field_correlation(results):
    b2 = _shown_sigma_b2(results)
    fig, axes = new_figure(ncols=2, width=FULL_WIDTH, height=2.6)
    ax, right = axes[0]
    c = np.linspace(-1.0, 1.0, 81)
    ax.plot(c, c, color="0.6", linewidth=0.8, linestyle=":")
    fixed = []
    for s in CORRELATION_SIGMA_W2:
        q = theory.fixed_point_q(s, b2, "tanh")
        ax.plot(c, [theory.correlation_map(v, q, s, b2, "tanh") for v in c],
                color=sigma_w2_color(s), linewidth=1.0, label=f"$\\sigma_w^2$={fmt(s)}")
        star = theory.fixed_point_c(s, b2, "tanh")
        ax.plot([star], [star], "o", color=sigma_w2_color(s), markersize=3.5)
        fixed.append(f"{fmt(s)}: c* = {fmt(star, 3)}, chi_c = "
                     f"{fmt(theory.correlation_slope(star, s, b2, 'tanh'), 3)}")
    ax.set_xlabel(r"$c_{l-1}$")
    ax.set_ylabel(r"$c_l$ (tanh)")
    ax.legend(fontsize=6)
    grid = np.linspace(0.3, 5.0, 95)
    numbers = {"sigma_b2": b2, "xi_c": {}}
    for act in ("tanh", "relu"):
        xi = np.array([_xi_c(s, b2, act) for s in grid])
        right.plot(grid, 6 * xi, color=color_for("activation", act), label=f"6 xi_c, {act}")
        numbers["xi_c"][act] = {fmt(s): _xi_c(s, b2, act) for s in (0.5, 1.0, 1.5, 2.5, 4.0)}
    crit = theory.critical_sigma_w2(b2, "tanh")
    right.axvline(crit, color="0.4", linestyle=":", linewidth=0.8)
    right.axvline(2.0, color=color_for("activation", "relu"), linestyle=":", linewidth=0.8)
    log_axis(right, "y", r"$6\,\xi_c$ (layers)")
    right.set_xlabel(r"$\sigma_w^2$")
    right.set_ylim(1, 1e4)
    right.legend(fontsize=6)
    t = numbers["xi_c"]["tanh"]
    caption = (f"Mean-field correlation map of two inputs, c_l = f(c_(l-1)) at q* for tanh "
               f"with sigma_b^2 = {fmt(b2)} (dots: the attracting fixed point c*; "
               f"{'; '.join(fixed)}), and the depth scale xi_c = -1/ln chi_c, chi_c = f'(c*), "
               f"as 6 xi_c against sigma_w^2 (theory only, no runs). tanh: 6 xi_c = "
               f"{fmt(6 * t['0.5'])}, {fmt(6 * t['1'])}, {fmt(6 * t['2.5'])}, {fmt(6 * t['4'])} "
               f"at sigma_w^2 = 0.5, 1, 2.5, 4, diverging at the critical {fmt(crit, 3)}; ReLU "
               f"is ordered (c* = 1) below sigma_w^2 = 2 and has no chaotic phase: above 2 "
               f"no q* exists, so no xi_c is drawn there.")
    return [Figure(fig, "mean_field_correlation", caption, numbers)]
