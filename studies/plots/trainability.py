"""Figure of the `trainability` study (Schoenholz et al. 2017; report sec. 8): test accuracy of
random tanh nets over depth x sigma_w^2 after a fixed training budget, with the predicted
trainable depth 6 xi_c (studies.theory.mean_field.trainable_depth) drawn on top.

- trainability_heatmap: mean test accuracy over seeds per (sigma_w^2, depth) cell (log depth);
  black curve: 6 xi_c; dotted: the critical sigma_w^2; cells marked x are those where
  'trained' (accuracy above the finding's threshold) disagrees with 'depth < 6 xi_c'.
"""
import math

import numpy as np

from studies.analysis.findings.mean_field import TRAINED_ACCURACY, trainability_cells
from studies.theory import mean_field as theory

from . import Figure, figure
from ._runs import with_verdict
from .style import FULL_WIDTH, fmt, new_figure


def _edges(values, geometric):
    v = np.asarray(sorted(values), float)
    if geometric:
        mid = np.sqrt(v[1:] * v[:-1])
        return np.concatenate([[v[0] ** 2 / mid[0]], mid, [v[-1] ** 2 / mid[-1]]])
    mid = 0.5 * (v[1:] + v[:-1])
    return np.concatenate([[v[0] - (mid[0] - v[0])], mid, [v[-1] + (v[-1] - mid[-1])]])


@figure("trainability_heatmap")
def trainability_heatmap(results):
    cells = trainability_cells(results)
    act, b2 = cells["activation"].iloc[0], float(cells["sigma_b2"].iloc[0])
    sig, depths = sorted(cells["sigma_w2"].unique()), sorted(cells["depth"].unique())
    acc = cells.pivot(index="depth", columns="sigma_w2", values="accuracy") \
        .reindex(index=depths, columns=sig).to_numpy(float)
    fig, axes = new_figure(width=FULL_WIDTH * 0.62, height=2.8)
    ax = axes[0, 0]
    x_edges = _edges(sig, False) if len(sig) > 1 else np.array([sig[0] - 0.5, sig[0] + 0.5])
    y_edges = _edges(depths, True) if len(depths) > 1 else np.array([depths[0] / 1.5,
                                                                      depths[0] * 1.5])
    mesh = ax.pcolormesh(x_edges, y_edges, acc, cmap="viridis", vmin=0.0, vmax=1.0)
    fig.colorbar(mesh, ax=ax, pad=0.01).set_label("test accuracy (mean over seeds)")
    grid = np.linspace(x_edges[0], x_edges[-1], 300)
    limit = np.array([theory.trainable_depth(s, b2, act) if s > 0 else np.nan for s in grid])
    ax.plot(grid, np.where(np.isfinite(limit), limit, np.nan), color="black", linewidth=1.3,
            label=r"$6\,\xi_c$")
    crit = theory.critical_sigma_w2(b2, act)
    ax.axvline(crit, color="white", linestyle=":", linewidth=0.9)
    wrong = cells[cells["trained"] != cells["predicted"]]
    ax.plot(wrong["sigma_w2"], wrong["depth"], "x", color="red", markersize=5,
            label="trained != (depth < 6 $\\xi_c$)")
    ax.set_yscale("log")
    ax.set_ylim(y_edges[0], y_edges[-1])
    ax.set_xlim(x_edges[0], x_edges[-1])
    ax.set_yticks(depths, [str(int(d)) for d in depths])
    ax.minorticks_off()
    ax.set_xlabel(r"$\sigma_w^2$")
    ax.set_ylabel("depth (hidden layers)")
    ax.legend(fontsize=6, loc="lower right")
    agree = float((cells["trained"] == cells["predicted"]).mean())
    n_seeds = min(len(s) for s in cells["seeds"])
    spread = float(np.mean([np.ptp(s) for s in cells["seeds"]])) if n_seeds > 1 else math.nan
    runs = results.runs
    setup = {k: runs[k].iloc[0] for k in ("width", "steps", "optimizer", "lr", "dataset")
             if k in runs}
    caption = (f"Trainability of random {act} nets (sigma_b^2 = {fmt(b2)}): test accuracy "
               f"after {setup.get('steps', '?')} {setup.get('optimizer', '')} steps (lr "
               f"{fmt(setup.get('lr', math.nan))}, width {setup.get('width', '?')}, "
               f"{setup.get('dataset', '?')}), mean of {n_seeds} seeds (mean max-min spread "
               f"over seeds {fmt(spread)}), over depth x sigma_w^2, with the mean-field "
               f"trainable depth 6 xi_c (black; critical sigma_w^2 = {fmt(crit, 3)} dotted). "
               f"'Trained' (accuracy > {TRAINED_ACCURACY:g}, chance 0.1) agrees with 'depth < "
               f"6 xi_c' on {agree:.0%} of {len(cells)} cells (red x: the others). Deviations "
               f"from the paper: a small dataset, narrow nets, depths up to {max(depths)} and a "
               f"short training budget, so only the short-xi_c part of the boundary (ordered "
               f"phase, and sigma_w^2 far into the chaotic one) is inside the grid.")
    numbers = {"agreement": agree, "cells": int(len(cells)), "seeds": n_seeds,
               "trained": int(cells["trained"].sum()), "critical_sigma_w2": crit}
    return [Figure(fig, "trainability_heatmap", with_verdict(caption, "trainability", results),
                   numbers)]
