"""The update-to-weight ratio ||Delta W_l|| / ||W_l|| per layer (one SGD step's change of a
layer's weights against their size; near 1e-3 is a healthy step), from the layers table any
training study records. Drawn for the `vanishing` study: at its deepest nets, per activation
(columns) and initialization (colors), at the first and the last recorded step, with the
vanishing_update label threshold.

- update_ratio_layers: ratio against layer (log), solid at step 0, dashed at the last step
  (geometric mean and seed range).
"""
import numpy as np
from matplotlib.lines import Line2D

from studies.analysis.labels import Thresholds

from . import Figure, figure
from ._runs import with_verdict
from ._vanishing_table import tuned
from .style import FULL_WIDTH, color_for, display, fmt, legend_rows, log_axis, new_figure, seed_band

HEALTHY_RATIO = 1e-3


def _table(results):
    keys = [k for k in ("depth", "activation", "init", "seed") if k in results.runs]
    lay = results.layers.merge(results.runs[["run_id", *keys]], on="run_id")
    lay = lay[np.isfinite(lay["update_ratio"].astype(float))]
    return lay[lay["depth"] == lay["depth"].max()] if "depth" in lay else lay


@figure("update_ratio_layers")
def update_ratio_layers(results):
    full = results
    results, rate_note = tuned(results, short=True)
    lay = _table(results)
    acts = sorted(lay["activation"].unique()) if "activation" in lay else []
    inits = sorted(lay["init"].unique()) if "init" in lay else []
    fig, axes = new_figure(ncols=max(1, len(acts)), width=FULL_WIDTH, height=2.5, sharey=True)
    threshold = Thresholds.from_dict(results.manifest.get("spec", {}).get("labels")
                                     ).vanishing_update
    numbers, by_act = {}, {}
    for ax, act in zip(axes[0], acts):
        for init in inits:
            rows = lay[(lay["activation"] == act) & (lay["init"] == init)]
            if rows.empty:
                continue
            color = color_for("init", init)
            first, last = rows["step"].min(), rows["step"].max()
            for step, style in ((first, "-"), (last, (0, (4, 2)))):
                piv = rows[rows["step"] == step].pivot_table(index="run_id", columns="layer",
                                                             values="update_ratio")
                seed_band(ax, piv.columns.to_numpy(float), piv.to_numpy(float), color,
                          geometric=True, linestyle=style, marker="o", markersize=2)
            at0 = rows[rows["step"] == first].groupby("layer")["update_ratio"]
            v = np.exp(at0.apply(lambda s: np.log(s).mean()).to_numpy())
            numbers.setdefault(act, {})[init] = {"layer1_step0": float(v[0]),
                                                 "last_layer_step0": float(v[-1]),
                                                 "steps": [int(first), int(last)]}
            by_act.setdefault(act, []).append(f"{display(init)} {fmt(v[0])}")
        for y, style, label in ((HEALTHY_RATIO, ":", None), (threshold, "--", None)):
            ax.axhline(y, color="0.5", linestyle=style, linewidth=0.7)
        ax.set_title(display(act))
        ax.set_xlabel("layer l (last = output)")
        log_axis(ax, "y", r"$\|\Delta W_l\| / \|W_l\|$" if ax is axes[0, 0] else None)
    handles = [Line2D([], [], color=color_for("init", i), label=display(i)) for i in inits]
    styles = [Line2D([], [], color="0.3", label="first recorded step"),
              Line2D([], [], color="0.3", linestyle=(0, (4, 2)), label="last recorded step"),
              Line2D([], [], color="0.5", linestyle=":", label=f"{HEALTHY_RATIO:g} (healthy)"),
              Line2D([], [], color="0.5", linestyle="--",
                     label=f"{threshold:g} (vanishing_update label)")]
    legend_rows(fig, [handles, styles])
    depth = int(lay["depth"].max()) if "depth" in lay and len(lay) else 0
    n_seeds = int(lay["seed"].nunique()) if "seed" in lay and len(lay) else 0
    layer1 = "; ".join(f"{display(a)}: " + ", ".join(v) for a, v in by_act.items())
    caption = (f"Update-to-weight ratio ||Delta W_l|| / ||W_l|| of one SGD step per layer, "
               f"{depth} hidden layers, at the first and last recorded step (geometric mean "
               f"and range over {n_seeds} seed{'s' if n_seeds != 1 else ''}). Layer 1 at step "
               f"0: {layer1 or 'no data'}."
               f" A layer below {threshold:g} before the loss "
               f"has fallen is labelled vanishing, even where the gradient ratio to the output "
               f"layer looks even. {rate_note}")
    return [Figure(fig, "update_ratio_layers", with_verdict(caption, "vanishing", full),
                   numbers)]
