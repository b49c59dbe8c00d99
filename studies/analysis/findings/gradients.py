"""Findings of the gradient studies: vanishing, glorot2010, he2015, clipping, dead_relu
(each from its own stored runs; see the package docstring)."""
import math

import numpy as np

from studies.analysis.labels import Thresholds, label_run, parse_labels

from .common import (at_best_rates, at_step, band, best_rates, finding, first_layer_ratio,
                     grid_text, inside_checks, rates_text, row, runs_with, seed_values)


def _labels(results, run_id):
    h = results.history[results.history["run_id"] == run_id]
    lay = results.layers[results.layers["run_id"] == run_id]
    return label_run(h, lay)[0]


@finding("vanishing")
def vanishing(results):
    runs = runs_with(results, ["depth", "activation", "init", "lr"])
    runs["r1"] = runs["run_id"].map(first_layer_ratio(results))
    depths = sorted(int(d) for d in runs["depth"].unique())
    checks, parts = [], []
    for init in sorted(runs.loc[runs["activation"] == "sigmoid", "init"].unique()):
        v = [seed_values(runs, "r1", activation="sigmoid", init=init, depth=d) for d in depths]
        r = [np.mean(x) for x in v]
        checks.append(all(a > b for a, b in zip(r, r[1:])) and r[-1] < 1e-3)
        parts.append(f"sigmoid/{init} " + ", ".join(f"d{d} {band(x, 2)}"
                                                    for d, x in zip(depths, v)))
    v = [seed_values(runs, "r1", activation="relu", init="he_normal", depth=d) for d in depths]
    he = [np.mean(x) if len(x) else math.nan for x in v]
    if any(np.isfinite(he)):
        checks.append(all(0.1 <= x <= 10 for x in he))
        parts.append("relu/he_normal " + ", ".join(f"d{d} {band(x, 2)}"
                                                   for d, x in zip(depths, v)))
    out = [row("vanishing", "sigmoid gradients vanish with depth; ReLU with He init keeps them",
               "report sec. 8", f"r_1 = ||dL/dW_1||/||dL/dW_L|| at init over depths {depths}: "
               "falls with depth for sigmoid and ends below 1e-3; ReLU/He within [0.1, 10]",
               "; ".join(parts), checks)]
    out.append(_vanishing_training(results, runs, depths))
    return out


def _thresholds(results):
    """The label thresholds of the stored spec (defaults where it sets none)."""
    try:
        return Thresholds.from_dict((results.manifest.get("spec") or {}).get("labels"))
    except (TypeError, ValueError):
        return Thresholds()


def _stalled(results, runs):
    """{run_id: labelled stalled} from the stored run labels (relabelled under the spec's
    thresholds on load), else from the labels recomputed with the default thresholds."""
    if "labels" in runs:
        return {r.run_id: "stalled" in parse_labels(r.labels if isinstance(r.labels, str)
                                                    else "")
                for r in runs.itertuples()}
    return {r.run_id: "stalled" in _labels(results, r.run_id) for r in runs.itertuples()}


def _vanishing_training(results, runs, depths):
    """The training row: at one shared rate, what that rate shows; on a rate grid, each
    (activation, init, depth) at its own best rate."""
    deep = depths[-1]
    bar = _thresholds(results).min_improvement
    rates = sorted(float(v) for v in runs["lr"].unique()) if "lr" in runs else []
    stalled = _stalled(results, runs)
    he = runs[(runs["activation"] == "relu") & (runs["init"] == "he_normal")]
    he_ratio = ", ".join(f"d{d} {band(g.end_loss / g.initial_loss)}"
                         for d, g in he.groupby("depth"))
    sig = runs[(runs["activation"] == "sigmoid") & (runs["depth"] == deep)]
    if len(rates) <= 1:
        sig_ids = list(sig["run_id"])
        sig_stalled = [stalled[r] for r in sig_ids]
        learned = [bool(r.end_loss < 0.5 * r.initial_loss) and not stalled[r.run_id]
                   for r in he.itertuples()]
        lr = f"lr {rates[0]:g}" if rates else "one rate"
        return row("vanishing",
                   f"at one shared, untuned SGD rate ({lr}) deep sigmoid nets stall while ReLU "
                   "with He init trains at every depth",
                   "report sec. 8", f"every net at {lr} (not tuned per activation, so this "
                   f"does not show that sigmoid cannot learn at another rate): depth {deep}: "
                   f"every sigmoid run labelled stalled (its final loss above {1 - bar:g} x "
                   "min(initial loss, ln K), or chance accuracy); every ReLU/He run ends below "
                   "half its initial loss",
                   f"sigmoid stalled {sum(sig_stalled)}/{len(sig_stalled)}, final loss "
                   f"{band(sig.end_loss)}; ReLU/He learned "
                   f"{sum(learned)}/{len(learned)}, end/initial loss {he_ratio}",
                   [bool(sig_stalled) and all(sig_stalled), bool(learned) and all(learned)])
    best = best_rates(runs, ("activation", "init", "depth"))
    sig_best = {k: b for k, b in best.items() if k[0] == "sigmoid" and k[2] == deep}
    he_best = {k: b for k, b in best.items() if k[0] == "relu" and k[1] == "he_normal"}
    at = {k: runs[(runs["activation"] == k[0]) & (runs["init"] == k[1])
                  & (runs["depth"] == k[2]) & (runs["lr"] == b.lr)] for k, b in he_best.items()}
    learned = [b.learns and bool((at[k].end_loss < 0.5 * at[k].initial_loss).all())
               for k, b in he_best.items()]
    checks = [not b.learns for b in sig_best.values()] + learned + inside_checks(he_best)
    return row("vanishing", "deep sigmoid nets stall at every rate; ReLU with He init trains at "
               "every depth", "report sec. 8",
               f"SGD rate grid {grid_text(rates)} per activation, init and depth: at depth "
               f"{deep} every sigmoid net stalls or diverges at every rate (no best rate); "
               "every ReLU/He net ends below half its initial loss at its best rate, strictly "
               "inside the grid",
               f"sigmoid at depth {deep}: {rates_text(sig_best)}; ReLU/He: "
               f"{rates_text(he_best)}, end/initial loss there "
               + ", ".join(f"d{k[2]} {band(g.end_loss / g.initial_loss)}" for k, g in at.items()),
               checks)


def _hidden(rows):
    return rows[rows["layer"] < rows["layer"].max()]


def _top_sigmoid_by_rate(results, runs):
    """{lr: (top hidden layer's final mean output, mean output of the hidden layers below it),
    one entry per sigmoid/standard-init run (seed order)}."""
    sel = runs[(runs["activation"] == "sigmoid") & (runs["init"] == "glorot_standard")]
    lay = results.layers.merge(sel[["run_id", "depth", "lr", "seed"]], on="run_id")
    lay = lay[lay["a_mean"].notna() & (lay["layer"] <= lay["depth"])]
    end = lay[lay["step"] == lay.groupby("run_id")["step"].transform("max")]
    out = {}
    for lr, g in end.groupby("lr"):
        per = [(r[r["layer"] == r["depth"]]["a_mean"].mean(),
                r[r["layer"] < r["depth"]]["a_mean"].mean())
               for _, r in sorted(g.groupby("run_id"), key=lambda kv: kv[1]["seed"].iloc[0])]
        out[float(lr)] = np.array(per, float).reshape(-1, 2)
    return out


def _driven_to_zero(pairs):
    """Every seed: the top hidden layer's final mean output below 0.2, the layers below above
    0.4."""
    return bool(len(pairs)) and all(t < 0.2 and b > 0.4 for t, b in pairs)


@finding("glorot2010")
def glorot2010(results):
    full = runs_with(results, ["activation", "init", "depth", "lr"])
    top_by_lr = _top_sigmoid_by_rate(results, full)
    results, best = at_best_rates(results, ("activation", "init"))
    runs = runs_with(results, ["activation", "init", "depth"])
    lay = results.layers.merge(runs[["run_id", "activation", "init", "depth"]], on="run_id")
    sig = best.get(("sigmoid", "glorot_standard"))
    _acc = lambda a, i: seed_values(runs, "end_test_accuracy", activation=a, init=i)  # noqa
    per_rate = ", ".join(f"lr {lr:g} {band(v[:, 0])} (below {band(v[:, 1])})"
                         for lr, v in top_by_lr.items())
    common = (f"best rates: {rates_text(best)}; test accuracy there: "
              + ", ".join(f"{a}/{i} {band(_acc(a, i))}" for a, i in sorted(best)))
    if sig is not None and not sig.learns and len(sig.grid) > 1:
        # no best rate to judge it at: the claim is checked at every rate of the grid
        checks = [_driven_to_zero(v) for v in top_by_lr.values()]
        criterion = ("the sigmoid/standard net learns at no rate of its grid, so at every rate "
                     "(3 seeds): the top hidden layer's mean output below 0.2 at the end while "
                     "the layers below stay above 0.4")
        driven = [f"{lr:g}" for lr, v in top_by_lr.items() if _driven_to_zero(v)]
        measured = (f"driven to 0 at lr {', '.join(driven) or 'none'} of "
                    f"{grid_text(sig.grid)}; top-layer mean at the end (layers below) per rate: "
                    f"{per_rate}; {common}")
        checks += inside_checks(best)
    else:
        pairs = top_by_lr.get(sig.lr if sig is not None else math.nan, np.zeros((0, 2)))
        checks = [t < 0.2 and b > 0.4 for t, b in pairs]
        criterion = ("each network at its best SGD rate (strictly inside its grid): the top "
                     "hidden layer's mean output below 0.2 at the end while the layers below "
                     "stay above 0.4, every seed")
        measured = (f"top layer {band(pairs[:, 0])} at the end, layers below "
                    f"{band(pairs[:, 1])}; {common}; top-layer mean at the end per rate: "
                    f"{per_rate}")
        checks = (checks or [False]) + inside_checks(best)
    out = [row("glorot2010", "with standard init the top sigmoid layer is driven to 0",
               "Glorot & Bengio 2010", criterion, measured, checks)]
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


def _he_name(key):
    depth, init = key
    return f"{depth} layers {'He' if init == 'he_normal' else 'Xavier'}"


@finding("he2015")
def he2015(results):
    """Signal variance at init; at the deepest depth Xavier learns at no rate of the grid while
    He trains at its best rate; at the shallowest both converge, each at its best rate."""
    full = results
    everything = runs_with(full, ["depth", "init", "lr"])
    results, best = at_best_rates(full, ("depth", "init"))
    runs = runs_with(results, ["depth", "init"])
    lay = at_step(results.layers).merge(runs[["run_id", "depth", "init"]], on="run_id")
    deep, shallow = runs["depth"].max(), runs["depth"].min()
    tuning = any(len(b[1]) > 1 for b in best.values())
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
    h = d[d["init"] == "he_normal"]
    x_all = everything[(everything["depth"] == deep) & (everything["init"] == "xavier_normal")]
    xs = [r.status == "diverged" or "stalled" in _labels(full, r.run_id)
          for r in x_all.itertuples()]
    hs = [r.end_loss < 0.6 * r.initial_loss for r in h.itertuples()]
    he_key = (deep, "he_normal")
    inside = inside_checks({he_key: best[he_key]}) if tuning and he_key in best else []
    grid = best[he_key][1] if he_key in best else []
    x_text = f"Xavier {band(x_all.end_loss / x_all.initial_loss)}"
    if len(grid) > 1:
        x_text += f" over every rate ({grid[0]:g}-{grid[-1]:g})"
    h_text = f"He {band(h.end_loss / h.initial_loss)}"
    if tuning and he_key in best:
        h_text += f" at its best rate: {rates_text({he_key: best[he_key]}, _he_name)}"
    out.append(row("he2015", f"at depth {deep} Xavier stalls while He trains", "He et al. 2015",
                   "every Xavier run at every rate of the grid labelled stalled (loss within 5% "
                   "of min(initial, ln 10) or chance accuracy) or diverged; every He run at its "
                   "best rate (strictly inside the grid) ends below 0.6x its start",
                   f"end/initial loss: {x_text}; {h_text}", xs + hs + inside))
    s = runs[runs["depth"] == shallow]
    drops = {i: (1 - s[s["init"] == i].end_loss / s[s["init"] == i].initial_loss).to_numpy()
             for i in ("xavier_normal", "he_normal")}
    keys = [k for k in best if k[0] == shallow]
    rates = f"; each at its best rate: {rates_text({k: best[k] for k in keys}, _he_name)}" \
        if tuning else ""
    out.append(row("he2015", f"at depth {shallow} both inits converge", "He et al. 2015",
                   "relative loss drop above 0.5 for both inits on every seed, each at its own "
                   "best rate (strictly inside the grid)",
                   f"Xavier {band(drops['xavier_normal'])}, He {band(drops['he_normal'])}" + rates,
                   [bool(v.size) and v.min() > 0.5 for v in drops.values()]
                   + (inside_checks({k: best[k] for k in keys}) if tuning else [])))
    return out


def clip_reference_norm(results, none):
    """Pascanu et al.'s average gradient norm: the mean global norm (before clipping) over the
    recorded steps of the unclipped runs at the smallest rate where all of them completed (at a
    rate where they diverge, the average measures only the explosion); else the step-0 mean."""
    h = results.history
    for lr in sorted(none["lr"].unique()):
        at = none[none["lr"] == lr]
        if (at["status"] == "completed").all():
            norms = h[h["run_id"].isin(at["run_id"])]["grad_norm"].to_numpy(float)
            norms = norms[np.isfinite(norms)]
            if norms.size:
                return float(norms.mean())
    first = h[h["run_id"].isin(none["run_id"]) & (h["step"] == 0)]["grad_norm"]
    return float(first.mean())


def effective_rates(results, runs):
    """{run_id: lr x mean over recorded steps of ||g clipped|| / ||g||}: the step size a clipped
    run took on average, in units of the raw gradient (the rate an unclipped run must use to
    move as far per unit of gradient)."""
    h = results.history.dropna(subset=["grad_norm", "grad_norm_clipped"])
    h = h[np.isfinite(h["grad_norm"]) & (h["grad_norm"] > 0)]
    scale = (h["grad_norm_clipped"] / h["grad_norm"]).groupby(h["run_id"]).mean()
    return {r.run_id: r.lr * scale.get(r.run_id, math.nan) for r in runs.itertuples()}


@finding("clipping")
def clipping(results):
    runs = runs_with(results, ["lr", "clip", "clip_threshold"])
    runs["r1"] = runs["run_id"].map(first_layer_ratio(results))
    none = runs[runs["clip"] == "none"].drop_duplicates(["lr", "seed"])
    clipped = runs[runs["clip"] != "none"]
    avg = clip_reference_norm(results, none)
    top = runs["lr"].max()
    r1 = none.groupby("seed")["r1"].first().to_numpy(float)
    explodes = [s == "diverged" for s in none[none["lr"] == top]["status"]]
    at_top = clipped[clipped["lr"] == top]
    in_range = at_top[(at_top["clip_threshold"] >= 0.5 * avg)
                      & (at_top["clip_threshold"] <= 10 * avg)]
    trains = lambda g: bool(((g["status"] == "completed")  # noqa: E731
                             & (g["end_loss"] < 0.5 * g["initial_loss"])).any())
    tamed = [trains(g) for _, g in in_range.groupby("seed")] or [False]
    thresholds = ", ".join(f"{t:g}" for t in sorted(in_range["clip_threshold"].unique()))
    every = [f"{c:g} ({c / avg:.2g}x)" for c, g in at_top.groupby("clip_threshold")
             if all(trains(s) for _, s in g.groupby("seed"))]
    # controls: each method tuned on the same rate grid, and clipping against an unclipped
    # run at the same average step
    free = none.groupby("lr")["end_loss"].mean()
    free_lr = float(free.replace(np.inf, np.nan).idxmin()) if free.notna().any() else math.nan
    grid = sorted(float(v) for v in free.index)
    by_cfg = clipped.groupby(["lr", "clip_threshold"])["end_loss"].mean()
    best_cfg = by_cfg.replace(np.inf, np.nan).idxmin() if by_cfg.notna().any() else None
    free_best = seed_values(none, "end_loss", lr=free_lr)
    clip_best = (seed_values(clipped, "end_loss", lr=best_cfg[0], clip_threshold=best_cfg[1])
                 if best_cfg is not None else np.array([]))
    tuned = [bool(clip_best.size and free_best.size) and np.mean(clip_best) < np.mean(free_best),
             bool(grid) and 0 < grid.index(free_lr) < len(grid) - 1]
    best_text = (f"best clipped lr {best_cfg[0]:g}, c {best_cfg[1]:g}: {band(clip_best)}"
                 if best_cfg is not None else "no clipped run completed")
    # the lr-matched control: the best clipped run at the top rate against the unclipped run
    # whose rate equals its average effective step
    top_loss = at_top.groupby("clip_threshold")["end_loss"].mean()
    matched_text = f"lr {top:g}: every clipped run diverged"
    if np.isfinite(top_loss).any():
        c = float(top_loss.replace(np.inf, np.nan).idxmin())
        rescued = at_top[at_top["clip_threshold"] == c]
        eff = np.nanmean(list(effective_rates(results, rescued).values()))
        match = min(grid, key=lambda g: abs(math.log(g / eff)))
        matched = seed_values(none, "end_loss", lr=match)
        loss = seed_values(rescued, "end_loss")
        tuned.append(np.mean(loss) < np.mean(matched))
        matched_text = (f"lr {top:g} c {c:g}: {band(loss)}, its mean effective step "
                        f"lr x ||g_clipped||/||g|| = {eff:.3g}; unclipped at the nearest grid "
                        f"rate {match:g}: {band(matched)}")
    return [row("clipping", "global-norm clipping tames exploding gradients",
                "Pascanu et al. 2013", f"the setting explodes (||dL/dW_1||/||dL/dW_L|| > 10 at "
                f"init) and unclipped SGD at lr {top:g} diverges on every seed, while some "
                f"threshold in 0.5-10x the mean unclipped norm ({avg:.3g}) trains at that rate "
                "(ends below half its initial loss) on every seed",
                f"gradient ratio at init {band(r1)}; unclipped lr {top:g} diverged "
                f"{sum(explodes)}/{len(explodes)}; thresholds in range [{thresholds or 'none'}] "
                f"trained on {sum(tamed)}/{len(tamed)} seeds; thresholds that trained on every "
                f"seed: {', '.join(every) or 'none'}",
                [bool(r1.size) and np.min(r1) > 10, all(explodes) and explodes, all(tamed)]),
            row("clipping", "clipping does more than take a smaller step", "Pascanu et al. 2013",
                "mean final train loss over seeds: the best clipped run (over rate x threshold) "
                "below the unclipped one at its best rate (strictly inside the grid), and the "
                "best clipped run at the top rate below the unclipped run at its matched "
                "average step (the grid rate nearest lr x mean ||g_clipped||/||g||)",
                best_text + f"; best unclipped lr {free_lr:g}: {band(free_best)}; "
                f"{matched_text}", tuned)]


def relu_dead_by_run(results, runs):
    """{run_id: final dead fraction of a ReLU run, mean over hidden layers 2..depth} (layer 1
    sees the raw, mixed-sign inputs and does not die, so it is left out rather than dilute the
    mean; all hidden layers for a net of one). Only ReLU units can be dead: other activations
    pass gradient at z <= 0 and have no dead fraction."""
    lay = results.layers.merge(runs[["run_id", "activation", "depth"]], on="run_id")
    relu = lay[(lay["activation"] == "relu") & (lay["layer"] <= lay["depth"])
               & lay["dead_fraction"].notna()]
    relu = relu[(relu["layer"] > 1) | (relu["depth"] < 2)]
    end = relu[relu["step"] == relu.groupby("run_id")["step"].transform("max")]
    return end.groupby("run_id")["dead_fraction"].mean().to_dict()


@finding("dead_relu")
def dead_relu(results):
    runs = runs_with(results, ["activation", "lr", "depth"])
    runs["dead"] = runs["run_id"].map(relu_dead_by_run(results, runs))
    rates = sorted(runs["lr"].unique())
    by_lr = [seed_values(runs, "dead", activation="relu", lr=lr) for lr in rates]
    means = [np.mean(v) if v.size else math.nan for v in by_lr]
    rises = [all(a <= b + 0.02 for a, b in zip(means, means[1:])),
             bool(by_lr[-1].size and by_lr[0].size)
             and np.min(by_lr[-1]) > np.max(by_lr[0]) + 0.1]
    acts = sorted(runs["activation"].unique())
    others = [a for a in acts if a != "relu"]
    killing = [lr for lr, m in zip(rates, means) if m >= 0.2]
    acc = {(a, lr): seed_values(runs, "end_test_accuracy", activation=a, lr=lr)
           for a in acts for lr in rates}
    best = {a: max(rates, key=lambda lr: np.mean(acc[(a, lr)])) for a in acts}
    checks = [np.mean(acc[(a, lr)]) > np.mean(acc[("relu", lr)]) for lr in killing
              for a in others]
    parts = [f"lr {lr:g}: " + ", ".join(f"{a} {band(acc[(a, lr)])}" for a in acts)
             for lr in killing]
    inside = ", ".join(f"{a} {best[a]:g}" + ("" if 0 < rates.index(best[a]) < len(rates) - 1
                                             else " (grid edge)") for a in acts)
    return [row("dead_relu", "ReLU units die more at larger learning rates",
                "report sec. 7.3", "final fraction of dead ReLU units (input <= 0 on every "
                "training row; mean over hidden layers 2..depth), mean over seeds: does not "
                "fall as the rate grows, and on every seed the largest rate's exceeds the "
                "smallest's by 0.1",
                "; ".join(f"lr {lr:g}: {band(v)}" for lr, v in zip(rates, by_lr)), rises),
            row("dead_relu", "Leaky ReLU, ELU and GELU mitigate dying units", "report sec. 7.4",
                "at every rate where ReLU loses >= 20% of its units (mean), each variant's "
                "test accuracy (mean over seeds, a diverged run counting as 0) above ReLU's; "
                "they cannot have dead units, so accuracy is what they are compared by",
                ("; ".join(parts) if parts else "no rate killed 20% of ReLU's units")
                + f"; best rate by test accuracy: {inside}", checks)]

