"""Findings of the training studies: activations, losses, gd_variants, optimizers,
learning_rate, batchnorm, mnist1d (each from its own stored runs; see the package docstring)."""
import math

import numpy as np

from .common import (at_best_rates, band, finding, first_layer_ratio, inside_checks, mean_of,
                     rates_text, row, runs_with, seed_values)

RELU_FAMILY = ("relu", "leaky_relu", "elu", "gelu", "gelu_tanh")


@finding("activations")
def activations(results):
    results, best = at_best_rates(results, ("activation",))
    swept = any(len(b.grid) > 1 for b in best.values())
    rates = f"; each at its best SGD rate: {rates_text(best)}" if swept else ""
    runs = runs_with(results, ["activation"])
    runs["r1"] = runs["run_id"].map(first_layer_ratio(results))
    acts = sorted(runs["activation"].unique())
    others = [a for a in acts if a != "sigmoid"]
    r1 = {a: seed_values(runs, "r1", activation=a) for a in acts}
    loss = {a: mean_of(runs, "end_loss", activation=a) for a in acts}
    acc = {a: seed_values(runs, "end_test_accuracy", activation=a) for a in acts}
    learns = {a: best[(a,)].learns for a in acts}
    out = []
    if "sigmoid" in acts and others:
        smallest = [np.max(r1["sigmoid"]) < np.min(r1[a]) for a in others]
        out.append(row("activations", "sigmoid's first-layer gradient is the smallest",
                       "report sec. 7.1", "||dL/dW_1||/||dL/dW_L|| at init: sigmoid below "
                       "every other activation on every seed",
                       "; ".join(f"{a} {band(r1[a])}" for a in acts
                                 if a in ("sigmoid", "tanh", "relu", "identity")),
                       smallest))
        relu = [a for a in others if a in RELU_FAMILY]
        # slower: never learns where the other learns, or a higher final loss at the best rates
        checks = [(not learns["sigmoid"] and learns[a]) or loss["sigmoid"] > loss[a]
                  for a in others]
        if "tanh" in acts:
            checks += [(not learns["tanh"] and learns[a]) or loss["tanh"] > loss[a]
                       for a in relu]
        out.append(row("activations", "sigmoid trains slowest, tanh next, the ReLU family best",
                       "report sec. 7", "final train loss (mean over seeds) at each "
                       "activation's best rate, strictly inside the grid for each that learns; "
                       "an activation that learns at no rate of the grid (every run stalled or "
                       "diverged) counts as slower than one that learns: sigmoid slower than "
                       "all, tanh slower than each ReLU-family activation",
                       "; ".join(f"{a} {band(seed_values(runs, 'end_loss', activation=a))}"
                                 for a in acts) + rates, checks + inside_checks(best)))
    if "identity" in acts and len(acts) > 1:
        top = max((a for a in acts if a != "identity"), key=lambda a: np.mean(acc[a]))
        gap = np.min(acc[top]) - np.max(acc["identity"])
        out.append(row("activations", "a non-linearity beats a linear network",
                       "report sec. 7", "best activation's lowest test accuracy 2 points above "
                       "the linear net's highest", f"{top} {band(acc[top])} vs identity "
                       f"{band(acc['identity'])}", [gap > 0.02]))
    return out


def _tuned_text(best, names):
    """rates_text of the methods that learn, then which learn at no rate of the grid."""
    tuned = {k: b for k, b in best.items() if b.learns}
    parts = [rates_text(tuned, names)] if tuned else []
    parts += [f"{names(k)} learns at no rate of {b.grid[0]:g}-{b.grid[-1]:g}"
              for k, b in best.items() if not b.learns]
    return "; ".join(parts)


@finding("losses")
def losses(results):
    """Cross-entropy against each MSE objective, every (objective, gain) at its own best rate."""
    results, best = at_best_rates(results, ("objective", "gain"))
    runs = runs_with(results, ["objective", "gain"])
    tuning = any(len(b[1]) > 1 for b in best.values())
    ce = "cross_entropy+softmax"
    checks, parts = [], []
    for gain in sorted(runs["gain"].unique()):
        acc = {o: seed_values(runs, "end_test_accuracy", objective=o, gain=gain)
               for o in sorted(runs["objective"].unique())}
        if ce not in acc:
            continue
        checks += [np.mean(acc[ce]) > np.mean(v) for o, v in acc.items() if o != ce]
        parts.append(f"gain {gain:g}: " + ", ".join(f"{o} {band(v)}" for o, v in acc.items()))
    rates = ""
    if tuning:
        checks += inside_checks(best)  # leaves out what learns at no rate (stalled everywhere)
        rates = "; each at its best rate: " + _tuned_text(best, lambda k: f"{k[0]} gain {k[1]:g}")
    return [row("losses", "softmax cross-entropy classifies better than MSE",
                "report sec. 3.2", "test accuracy (mean over seeds) of cross-entropy above each "
                "MSE objective at every init gain, each (objective, gain) at its own best rate "
                "(strictly inside the grid unless it learns at no rate)",
                "; ".join(parts) + rates, checks)]


def _loss_at(results, run_id, column, value):
    h = results.history[results.history["run_id"] == run_id].sort_values(column)
    h = h[h["train_loss"].notna()]
    return float(np.interp(value, h[column], h["train_loss"])) if len(h) else math.nan


GD_NAMES = {0: "batch GD", 1: "SGD", 32: "mini-batch 32"}


def gd_label(batch):
    return GD_NAMES.get(int(batch), f"batch {int(batch)}")


def gd_comparison(results):
    """(epochs, steps, {batch: losses at `epochs` epochs}, {batch: final losses}) over seeds:
    the common epoch count is the fewest any run reached (SGD's), read by linear interpolation
    between records; the common step count is the last step every run reached."""
    runs = runs_with(results, ["batch_size"])
    sizes = sorted(runs["batch_size"].unique(), key=lambda b: (b == 0, b))  # 1, 32, ..., 0
    h = results.history
    epochs = min(h[h["run_id"] == r]["epoch"].max() for r in runs["run_id"])
    steps = min(h[h["run_id"] == r]["step"].max() for r in runs["run_id"])
    per_epoch = {b: [_loss_at(results, r, "epoch", epochs)
                     for r in runs[runs["batch_size"] == b]["run_id"]] for b in sizes}
    per_step = {b: seed_values(runs, "end_loss", batch_size=b) for b in sizes}
    return float(epochs), int(steps), per_epoch, per_step


@finding("gd_variants")
def gd_variants(results):
    """Per epoch and per step, every batch size at its own best rate."""
    results, best = at_best_rates(results, ("batch_size",))
    epochs, steps, per_epoch, per_step = gd_comparison(results)
    sizes = list(per_epoch)
    tuning = any(len(b[1]) > 1 for b in best.values())
    inside = inside_checks(best) if tuning else []
    rates = f"; each at its best rate: {rates_text(best, lambda k: gd_label(k[0]))}" \
        if tuning else ""
    order = [np.mean(per_epoch[a]) < np.mean(per_epoch[b]) for a, b in zip(sizes, sizes[1:])]
    mini = [b for b in sizes if b not in (0, 1)]
    step_checks = [np.mean(per_step[m]) < np.mean(per_step[1]) for m in mini if 1 in per_step]
    return [row("gd_variants", "per epoch, smaller batches make more progress",
                "report sec. 5.1", f"train loss at {epochs:.3g} epochs (SGD's last record; "
                "linear between records), each batch size at its own best rate (strictly inside "
                "the grid): SGD < mini-batch < batch GD",
                "; ".join(f"{gd_label(b)} {band(per_epoch[b])}" for b in sizes) + rates,
                order + inside),
            row("gd_variants", "per step, mini-batches beat single-sample SGD",
                "report sec. 5.1", f"train loss after {steps} steps, each at its own best "
                "rate: each mini-batch below SGD",
                "; ".join(f"{gd_label(b)} {band(per_step[b])}" for b in sizes) + rates,
                step_checks + inside)]


def _best_rates(runs, group):
    """{name: (best lr, its mean end loss, grid, interior?)} by mean end loss over seeds."""
    out = {}
    for name in sorted(runs[group].unique()):
        sub = runs[runs[group] == name]
        by_lr = sub.groupby("lr")["end_loss"].mean().sort_index()
        best = by_lr.idxmin()
        grid = list(by_lr.index)
        out[name] = (best, by_lr[best], grid, 0 < grid.index(best) < len(grid) - 1)
    return out


@finding("optimizers")
def optimizers(results):
    runs = runs_with(results, ["optimizer", "lr"])
    best = _best_rates(runs, "optimizer")
    measured = "; ".join(
        f"{o} {band(seed_values(runs, 'end_loss', optimizer=o, lr=b[0]))} at lr {b[0]:g}"
        + ("" if b[3] else " (grid edge)") for o, b in best.items())
    others = [o for o in best if o != "adam"]
    checks = [best["adam"][1] < best[o][1] for o in others] if "adam" in best else []
    checks += [b[3] for b in best.values()]
    return [row("optimizers", "Adam converges fastest", "Kingma & Ba 2015",
                "final train loss at each optimizer's best rate (mean over seeds): Adam below "
                "every other; every best rate strictly inside its grid", measured, checks)]


def _loss_text(loss):
    return f"{loss:.3g}" if np.isfinite(loss) else "diverged"


@finding("learning_rate")
def learning_rate(results):
    runs = runs_with(results, ["optimizer", "schedule", "lr"])
    const = runs[runs["schedule"] == "constant"]
    best = _best_rates(const, "optimizer")
    checks, parts, rescue, rescue_parts = [], [], [], []
    for name, (lr, loss, grid, interior) in best.items():
        sub = const[const["optimizer"] == name].groupby("lr")["end_loss"].mean()
        slow = sub[grid[0]] > 10 * loss
        too_big = not np.isfinite(sub[grid[-1]]) or sub[grid[-1]] > \
            mean_of(const, "initial_loss", optimizer=name)
        checks += [interior and slow and too_big]
        parts.append(f"{name}: best lr {lr:g} (loss {loss:.3g}), lr {grid[0]:g} -> "
                     f"{_loss_text(sub[grid[0]])}, lr {grid[-1]:g} -> {_loss_text(sub[grid[-1]])}")
        above = [g for g in grid if g > lr]
        if above:
            sched = runs[(runs["optimizer"] == name) & (runs["lr"] == above[0])]
            by = sched.groupby("schedule")["end_loss"].mean()
            decayed = min(by.get(s, np.inf) for s in ("step", "cosine"))
            rescue.append(bool(np.isfinite(decayed) and decayed < by.get("constant", np.inf)))
            rescue_parts.append(f"{name} lr {above[0]:g}: constant "
                                f"{_loss_text(by.get('constant', np.inf))}, best decayed "
                                f"{_loss_text(decayed)}")
    n_seeds = runs["seed"].nunique()
    note = f" ({n_seeds} seed{'s' if n_seeds > 1 else ''})"
    return [row("learning_rate", "too small a rate is slow, too large diverges",
                "report sec. 9", "constant schedule: best rate strictly inside the grid, the "
                "smallest ends >10x the best loss, the largest diverges or ends above its start",
                "; ".join(parts) + note, checks),
            row("learning_rate", "a decaying schedule rescues a too-large rate", "report sec. 9",
                "at the grid point above the constant schedule's best rate, step or cosine "
                "decay ends below constant", "; ".join(rescue_parts) + note, rescue)]


def highest_learning_rate(runs, **where):
    """The largest rate of the grid at which every seed completed and ended below its initial
    loss (NaN if none)."""
    mask = np.ones(len(runs), bool)
    for key, value in where.items():
        mask &= (runs[key] == value).to_numpy()
    ok = [lr for lr, g in runs[mask].groupby("lr")
          if ((g["status"] == "completed") & (g["end_loss"] < g["initial_loss"])).all()]
    return max(ok) if ok else math.nan


def bn_names(key):
    return "BN" if key[0] else "plain"


@finding("batchnorm")
def batchnorm(results):
    """Both nets each at its own best rate: accuracy early and at the end, and the drift of one
    unit's input; and the largest rate of the grid at which each still learns."""
    everything = runs_with(results, ["batchnorm", "lr"])
    results, best = at_best_rates(results, ("batchnorm",))
    tuning = any(len(b[1]) > 1 for b in best.values())
    inside = inside_checks(best) if tuning else []
    rates = f"; each at its best rate: {rates_text(best, bn_names)}" if tuning else ""
    runs = runs_with(results, ["batchnorm"])
    h = results.history[results.history["test_accuracy"].notna()]
    runs["early"] = runs["run_id"].map(h[h["step"] > 0].groupby("run_id")["test_accuracy"].mean())
    lay = results.layers
    unit = lay[lay["layer"] == lay["layer"].max() - 1].dropna(subset=["unit0_p50"])
    drift = {}
    for run_id, g in unit.sort_values("step").groupby("run_id"):
        p = g[["unit0_p15", "unit0_p50", "unit0_p85"]].to_numpy()
        spread = max(p[0, 2] - p[0, 0], 1e-12)
        drift[run_id] = float(np.max(np.abs(p - p[0]))) / spread
    runs["drift"] = runs["run_id"].map(drift)
    on, off = (dict(batchnorm=True), dict(batchnorm=False))
    checks = [np.min(seed_values(runs, "early", **on)) > np.max(seed_values(runs, "early", **off)),
              np.min(seed_values(runs, "end_test_accuracy", **on))
              > np.max(seed_values(runs, "end_test_accuracy", **off))]
    out = [row("batchnorm", "with batch norm test accuracy rises faster", "Ioffe & Szegedy 2015",
               "mean test accuracy over the records after step 0 (how fast it rises) and at "
               "the end, each net at its own best rate (strictly inside the grid): with BN "
               "above without on every seed",
               f"mean over training: BN {band(seed_values(runs, 'early', **on))}, "
               f"plain {band(seed_values(runs, 'early', **off))}; end: BN "
               f"{band(seed_values(runs, 'end_test_accuracy', **on))}, plain "
               f"{band(seed_values(runs, 'end_test_accuracy', **off))}" + rates,
               checks + inside),
           row("batchnorm", "with batch norm a unit's input distribution stays stable",
               "Ioffe & Szegedy 2015", "largest move of unit 0's 15/50/85th input percentiles "
               "(last hidden layer) over training, in units of its initial 15-85 spread, each "
               "net at its own best rate: BN below plain on every seed",
               f"BN {band(seed_values(runs, 'drift', **on))}, "
               f"plain {band(seed_values(runs, 'drift', **off))}" + rates,
               [np.max(seed_values(runs, "drift", **on))
                < np.min(seed_values(runs, "drift", **off))])]
    if tuning:
        top = {bn: highest_learning_rate(everything, batchnorm=bn) for bn in (True, False)}
        grid = best[(True,)][1] if (True,) in best else []
        out.append(row("batchnorm", "batch norm allows higher learning rates",
                       "Ioffe & Szegedy 2015", "largest rate of the grid at which every seed "
                       "completes and ends below its initial train loss: BN above plain",
                       f"BN {top[True]:g}, plain {top[False]:g} (grid "
                       f"{', '.join(f'{g:g}' for g in grid)})",
                       [top[True] > top[False]]))
    return out


@finding("mnist1d")
def mnist1d(results):
    runs = runs_with(results, ["depth"])
    logistic = seed_values(runs, "end_test_accuracy", depth=0)
    deeper = sorted(d for d in runs["depth"].unique() if d > 0)
    mlp = seed_values(runs, "end_test_accuracy", depth=deeper[-1]) if deeper else np.array([])
    checks = [logistic.size and 0.27 <= np.mean(logistic) <= 0.37,
              mlp.size and 0.60 <= np.mean(mlp) <= 0.72,
              logistic.size and mlp.size and np.min(mlp) > np.max(logistic) + 0.2]
    return [row("mnist1d", "logistic regression ~32%, an MLP ~64-68% test accuracy",
                "Greydanus 2020 (MNIST-1D)", "logistic mean in [27, 37]%, MLP mean in "
                "[60, 72]%, MLP above logistic by 20 points on every seed",
                f"logistic {band(logistic)}; MLP (depth {deeper[-1] if deeper else '-'}) "
                f"{band(mlp)}", checks)]
