"""Findings of the gradient studies: vanishing, glorot2010, he2015, clipping, dead_relu
(each from its own stored runs; see the package docstring)."""
import math

import numpy as np

from studies.analysis.labels import label_run

from .common import at_step, band, finding, first_layer_ratio, row, runs_with, seed_values


def _labels(results, run_id):
    h = results.history[results.history["run_id"] == run_id]
    lay = results.layers[results.layers["run_id"] == run_id]
    return label_run(h, lay)[0]


@finding("vanishing")
def vanishing(results):
    runs = runs_with(results, ["depth", "activation", "init"])
    runs["r1"] = runs["run_id"].map(first_layer_ratio(results))
    depths = sorted(int(d) for d in runs["depth"].unique())
    checks, parts = [], []
    for init in sorted(runs.loc[runs["activation"] == "sigmoid", "init"].unique()):
        r = [np.mean(seed_values(runs, "r1", activation="sigmoid", init=init, depth=d))
             for d in depths]
        checks.append(all(a > b for a, b in zip(r, r[1:])) and r[-1] < 1e-3)
        parts.append(f"sigmoid/{init} " + ", ".join(f"{x:.1e}" for x in r))
    he = [np.mean(seed_values(runs, "r1", activation="relu", init="he_normal", depth=d))
          for d in depths]
    if any(np.isfinite(he)):
        checks.append(all(0.1 <= x <= 10 for x in he))
        parts.append("relu/he_normal " + ", ".join(f"{x:.2g}" for x in he))
    out = [row("vanishing", "sigmoid gradients vanish with depth; ReLU with He init keeps them",
               "report sec. 8", f"r_1 = ||dL/dW_1||/||dL/dW_L|| at init over depths {depths}: "
               "falls with depth for sigmoid and ends below 1e-3; ReLU/He within [0.1, 10]",
               "; ".join(parts), checks)]
    deep = runs[runs["depth"] == depths[-1]]
    stalled = {r.run_id: "stalled" in _labels(results, r.run_id) for r in deep.itertuples()}
    sig = [stalled[r] for r in deep.loc[deep["activation"] == "sigmoid", "run_id"]]
    he_runs = runs[(runs["activation"] == "relu") & (runs["init"] == "he_normal")]
    learned = [(r.end_loss < 0.5 * r.initial_loss) for r in he_runs.itertuples()]
    out.append(row("vanishing",
                   "deep sigmoid nets stall; ReLU with He init trains at every depth",
                   "report sec. 8", f"depth {depths[-1]}: every sigmoid run labelled stalled; "
                   "every ReLU/He run ends below half its initial loss",
                   f"sigmoid stalled {sum(sig)}/{len(sig)}; ReLU/He learned "
                   f"{sum(learned)}/{len(learned)}", [all(sig) and sig, all(learned) and learned]))
    return out


def _hidden(rows):
    return rows[rows["layer"] < rows["layer"].max()]


@finding("glorot2010")
def glorot2010(results):
    runs = runs_with(results, ["activation", "init", "depth"])
    lay = results.layers.merge(runs[["run_id", "activation", "init", "depth"]], on="run_id")
    top_end, top_start, below = [], [], []
    for r in runs[(runs["activation"] == "sigmoid") & (runs["init"] == "glorot_standard")] \
            .itertuples():
        g = lay[(lay["run_id"] == r.run_id) & lay["a_mean"].notna()]
        last = g[g["step"] == g["step"].max()]
        top_start.append(g[(g["step"] == 0) & (g["layer"] == r.depth)]["a_mean"].iloc[0])
        top_end.append(last[last["layer"] == r.depth]["a_mean"].iloc[0])
        below.append(last[last["layer"] < r.depth]["a_mean"].mean())
    checks = [t < 0.2 and b > 0.4 for t, b in zip(top_end, below)]
    out = [row("glorot2010", "with standard init the top sigmoid layer is driven to 0",
               "Glorot & Bengio 2010", "top hidden layer's mean output below 0.2 at the end "
               "while the layers below stay above 0.4, every seed",
               f"top layer {band(top_start)} at init -> {band(top_end)}; layers below "
               f"{band(below)}", checks)]
    start = _hidden(at_step(lay))
    checks, parts = [], []
    for act in sorted(runs["activation"].unique()):
        spread = {}
        for init in ("glorot_standard", "xavier_uniform"):
            g = start[(start["activation"] == act) & (start["init"] == init)]
            spread[init] = [v.max() / v.min() for _, v in g.groupby("run_id")["delta_norm"]]
        if all(spread.values()):
            checks.append(max(spread["xavier_uniform"]) < min(spread["glorot_standard"]))
            parts.append(f"{act}: standard {band(spread['glorot_standard'])}, normalized "
                         f"{band(spread['xavier_uniform'])}")
    out.append(row("glorot2010", "normalized init keeps back-propagated gradients more even",
                   "Glorot & Bengio 2010", "max/min over hidden layers of ||delta_l|| at init: "
                   "normalized below standard on every seed, for each activation",
                   "; ".join(parts), checks))
    return out


@finding("he2015")
def he2015(results):
    runs = runs_with(results, ["depth", "init"])
    lay = at_step(results.layers).merge(runs[["run_id", "depth", "init"]], on="run_id")
    deep, shallow = runs["depth"].max(), runs["depth"].min()
    ratio = {}
    for init in ("xavier_normal", "he_normal"):
        per = []
        for _, g in lay[(lay["init"] == init) & (lay["depth"] == deep)].groupby("run_id"):
            v = _hidden(g).sort_values("layer")["z_std"].to_numpy() ** 2
            per.append(math.exp(np.polyfit(np.arange(v.size), np.log(v), 1)[0]))
        ratio[init] = per
    checks = [bool(ratio["xavier_normal"]) and abs(np.mean(ratio["xavier_normal"]) - 0.5) < 0.08,
              bool(ratio["he_normal"]) and abs(np.mean(ratio["he_normal"]) - 1.0) < 0.15]
    out = [row("he2015", "with ReLU, Xavier init halves the signal variance per layer; He keeps it",
               "He et al. 2015", f"per-layer factor of Var z_l at init (log-linear fit, depth "
               f"{deep}): Xavier 0.5 +- 0.08, He 1 +- 0.15",
               f"Xavier {band(ratio['xavier_normal'])}, He {band(ratio['he_normal'])}", checks)]
    d = runs[runs["depth"] == deep]
    x = d[d["init"] == "xavier_normal"]
    h = d[d["init"] == "he_normal"]
    xs = ["stalled" in _labels(results, r.run_id) for r in x.itertuples()]
    hs = [r.end_loss < 0.6 * r.initial_loss for r in h.itertuples()]
    out.append(row("he2015", f"at depth {deep} Xavier stalls while He trains", "He et al. 2015",
                   "every Xavier run labelled stalled (loss within 5% of min(initial, ln 10)"
                   " or chance accuracy); every He run ends below 0.6x its start",
                   f"end/initial loss: Xavier {band(x.end_loss / x.initial_loss)}, He "
                   f"{band(h.end_loss / h.initial_loss)}", xs + hs))
    s = runs[runs["depth"] == shallow]
    drops = {i: (1 - s[s["init"] == i].end_loss / s[s["init"] == i].initial_loss).to_numpy()
             for i in ("xavier_normal", "he_normal")}
    out.append(row("he2015", f"at depth {shallow} both inits converge", "He et al. 2015",
                   "relative loss drop above 0.5 for both inits on every seed",
                   f"Xavier {band(drops['xavier_normal'])}, He {band(drops['he_normal'])}",
                   [bool(v.size) and v.min() > 0.5 for v in drops.values()]))
    return out


@finding("clipping")
def clipping(results):
    runs = runs_with(results, ["lr", "clip", "clip_threshold"])
    h = results.history
    none = runs[runs["clip"] == "none"].drop_duplicates(["lr", "seed"])
    base_lr = none["lr"].min()
    norms = h[h["run_id"].isin(none.loc[none["lr"] == base_lr, "run_id"])]["grad_norm"]
    avg = float(np.nanmean(norms[np.isfinite(norms)]))
    top = runs["lr"].max()
    unclipped_top = none[none["lr"] == top]
    explodes = [s == "diverged" for s in unclipped_top["status"]]
    clipped = runs[(runs["clip"] != "none") & (runs["lr"] == top)]
    in_range = clipped[(clipped["clip_threshold"] >= 0.5 * avg)
                       & (clipped["clip_threshold"] <= 10 * avg)]
    tamed = [bool(((g["status"] == "completed") & (g["end_loss"] < g["initial_loss"])).any())
             for _, g in in_range.groupby("seed")] or [False]
    lower = []
    for seed, g in runs[(runs["lr"] == base_lr)].groupby("seed"):
        free = g[g["clip"] == "none"]["end_loss"].min()
        lower.append(g[g["clip"] != "none"]["end_loss"].min() < free)
    thresholds = [f"{t:g}" for t in sorted(in_range["clip_threshold"].unique())]
    return [row("clipping", "global-norm clipping tames exploding gradients",
                "Pascanu et al. 2013", f"lr {top:g}: unclipped diverges on every seed, and a "
                f"threshold in 0.5-10x the mean unclipped norm ({avg:.3g}) trains on every seed; "
                f"lr {base_lr:g}: a clipped run ends below the unclipped one on every seed",
                f"unclipped lr {top:g} diverged {sum(explodes)}/{len(explodes)}; thresholds in "
                f"range [{', '.join(thresholds) or 'none'}] trained on {sum(tamed)}/{len(tamed)} "
                "seeds; "
                f"lr {base_lr:g} clipped lower on {sum(lower)}/{len(lower)} seeds",
                [all(explodes) and explodes, all(tamed), all(lower) and lower])]


@finding("dead_relu")
def dead_relu(results):
    runs = runs_with(results, ["activation", "lr"])
    lay = results.layers.merge(runs[["run_id", "activation", "lr"]], on="run_id")
    relu = lay[(lay["activation"] == "relu") & lay["dead_fraction"].notna()]
    end = relu[relu["step"] == relu.groupby("run_id")["step"].transform("max")]
    dead = end.groupby("run_id")["dead_fraction"].max()
    runs["dead"] = runs["run_id"].map(dead)
    rates = sorted(runs["lr"].unique())
    by_lr = [seed_values(runs, "dead", activation="relu", lr=lr) for lr in rates]
    rises = [np.mean(a) < np.mean(b) for a, b in zip(by_lr, by_lr[1:])]
    top = rates[-1]
    acc = {a: seed_values(runs, "end_test_accuracy", activation=a, lr=top)
           for a in sorted(runs["activation"].unique())}
    others = [a for a in acc if a != "relu"]
    return [row("dead_relu", "ReLU units die more at larger learning rates",
                "report sec. 7.3", "largest dead fraction over ReLU hidden layers at the end "
                "(units never active on the evaluation rows; ReLU only) rises with the rate",
                "; ".join(f"lr {lr:g}: {band(v)}" for lr, v in zip(rates, by_lr)), rises),
            row("dead_relu", "Leaky ReLU, ELU and GELU mitigate dying units", "report sec. 7.4",
                f"test accuracy at lr {top:g} (mean over seeds, a diverged run counting as 0): "
                "each variant above ReLU",
                "; ".join(f"{a} {band(v)}" for a, v in acc.items()),
                [np.mean(acc[a]) > np.mean(acc["relu"]) for a in others])]
