"""Findings of the batch-size and learning-rate-search studies: critical_batch (McCandlish et
al. 2018) and lr_range (Smith 2017), each from its own stored runs; the tables they are
computed from are here too, so the figures draw the very numbers the verdicts use.

critical_batch: S(B) = steps to the training loss TARGET_LOSS at batch size B, at the rate of
the study's grid that reaches it in the fewest steps (mean over seeds); E = B S. The paper's
relation (S/S_min - 1)(E/E_min - 1) = 1 with E = B S is S = S_min + E_min / B, fitted by least
squares on the relative residuals (S_fit - S)/S; B_crit = E_min / S_min. B_simple =
tr(Sigma)/|G|^2 (history `noise_scale`) is read where each tuned run's loss reaches the target
(log-log interpolation between the measured rows).

lr_range: the range test is the exponential-schedule run from the smallest rate, read up to its
blow-up (the first loss above BLOWUP x its lowest loss so far); its suggested rate is the rate
at its lowest loss before that, the largest rate that still converges (Smith: the best rate is
usually within a factor of two of it). The grid is the
constant-schedule runs; the divergence edge is the geometric mean of the largest grid rate at
which a seed completes and the next one, at which it diverges; 2/lambda_max from the sharpness
at step 0.
"""
import math

import numpy as np
import pandas as pd

from .common import band, finding, row

TARGET_LOSS = 0.1          # critical_batch: the training loss every batch size is timed to
BCRIT_FACTOR = 10.0        # B_crit and B_simple agree within an order of magnitude
BLOWUP = 4.0               # the range test has blown up once its loss exceeds 4x its minimum
SUGGESTED_FACTOR = 2.0     # the best fixed rate within a factor 2 of the suggestion
EDGE_FACTOR = 2.0          # divergence edge within a factor 2 of 2/lambda_max


def _history(results, keys):
    """History joined with the runs' keys (config `lr` as lr0), seed and status."""
    runs = results.runs[results.runs["status"] != "failed"]
    right = runs[["run_id", "seed", "status", *keys]].rename(columns={"lr": "lr0"})
    return results.history.merge(right, on="run_id", how="inner").sort_values("step")


def crossing(steps, values, target):
    """The step where `values` first falls to `target`, interpolated linearly in log(value)
    between the recorded steps; NaN if it never does. Values must be positive where used."""
    steps, values = np.asarray(steps, float), np.asarray(values, float)
    below = np.nonzero(np.isfinite(values) & (values <= target))[0]
    if not below.size:
        return math.nan
    i = int(below[0])
    if i == 0:
        return float(steps[0])
    a, b = math.log(values[i - 1]), math.log(values[i])
    return float(steps[i - 1] + (steps[i] - steps[i - 1]) * (a - math.log(target)) / (a - b))


def at_target(loss, noise, target):
    """noise at the first recorded point where loss reaches target (log-log interpolation
    between the two bracketing measured rows; the nearest one at the ends); NaN if none."""
    ok = np.isfinite(loss) & np.isfinite(noise) & (loss > 0) & (noise > 0)
    loss, noise = np.asarray(loss, float)[ok], np.asarray(noise, float)[ok]
    if not loss.size:
        return math.nan
    below = np.nonzero(loss <= target)[0]
    if not below.size:
        return float(noise[-1]) if loss[-1] <= 2 * target else math.nan
    i = int(below[0])
    if i == 0:
        return float(noise[0])
    t = (math.log(loss[i - 1]) - math.log(target)) / (math.log(loss[i - 1]) - math.log(loss[i]))
    return float(math.exp((1 - t) * math.log(noise[i - 1]) + t * math.log(noise[i])))


def steps_table(results, target=TARGET_LOSS):
    """One row per run: batch_size, lr0, seed, status, steps (to target; NaN if not reached)
    and b_simple (noise scale where the loss reaches the target)."""
    h = _history(results, ["batch_size", "lr"])
    rows = []
    for run_id, g in h.groupby("run_id", sort=False):
        g = g.dropna(subset=["train_loss"])
        first = g.iloc[0]
        reached = crossing(g["step"], g["train_loss"], target)
        rows.append({"run_id": run_id, "batch_size": int(first["batch_size"]),
                     "lr0": float(first["lr0"]), "seed": int(first["seed"]),
                     "status": first["status"], "steps": reached,
                     "b_simple": at_target(g["train_loss"].to_numpy(),
                                           g["noise_scale"].to_numpy(), target)})
    return pd.DataFrame(rows)


def tuned(table):
    """Per batch size, the rows of the rate that reaches the target in the fewest steps (mean
    over seeds; only rates at which every seed reached it and none diverged later), with
    E = B S; batch sizes where no rate did are left out."""
    out = []
    for b, g in table.groupby("batch_size"):
        ok = g.groupby("lr0").filter(lambda r: np.isfinite(r["steps"]).all()
                                     and (r["status"] == "completed").all())
        if ok.empty:
            continue
        best = ok.groupby("lr0")["steps"].mean().idxmin()
        out.append(ok[ok["lr0"] == best])
    if not out:
        return pd.DataFrame(columns=[*table.columns, "examples"])
    t = pd.concat(out, ignore_index=True)
    t["examples"] = t["steps"] * t["batch_size"]
    return t


def fit_tradeoff(batch, steps):
    """(S_min, E_min, B_crit, rms relative residual) of S = S_min + E_min / B, the relation
    (S/S_min - 1)(E/E_min - 1) = 1 with E = B S, by least squares on (S_fit - S)/S."""
    b, s = np.asarray(batch, float), np.asarray(steps, float)
    ok = np.isfinite(s) & (s > 0)
    b, s = b[ok], s[ok]
    if b.size < 3 or np.unique(b).size < 3:
        return math.nan, math.nan, math.nan, math.nan
    design = np.stack([1.0 / s, 1.0 / (b * s)], axis=1)      # rows divided by S
    (s_min, e_min), *_ = np.linalg.lstsq(design, np.ones_like(s), rcond=None)
    residual = design @ np.array([s_min, e_min]) - 1.0
    b_crit = e_min / s_min if s_min > 0 and e_min > 0 else math.nan
    return float(s_min), float(e_min), float(b_crit), float(np.sqrt(np.mean(residual ** 2)))


def critical_batch_summary(results, target=TARGET_LOSS):
    """{'tuned': tuned rows, 'per_seed': {seed: {S_min, E_min, B_crit, rms, B_simple}},
    'pooled': the same fitted on the seed means, 'best_lr': {B: lr}}."""
    t = tuned(steps_table(results, target))
    per_seed = {}
    for seed, g in t.groupby("seed"):
        s_min, e_min, b_crit, rms = fit_tradeoff(g["batch_size"], g["steps"])
        noise = g["b_simple"].to_numpy(float)
        noise = noise[np.isfinite(noise) & (noise > 0)]
        per_seed[int(seed)] = {"S_min": s_min, "E_min": e_min, "B_crit": b_crit, "rms": rms,
                               "B_simple": float(np.exp(np.mean(np.log(noise))))
                               if noise.size else math.nan}
    mean = t.groupby("batch_size")["steps"].mean() if len(t) else pd.Series(dtype=float)
    s_min, e_min, b_crit, rms = fit_tradeoff(mean.index, mean.to_numpy())
    noise = t["b_simple"].to_numpy(float) if len(t) else np.array([])
    noise = noise[np.isfinite(noise) & (noise > 0)]
    pooled = {"S_min": s_min, "E_min": e_min, "B_crit": b_crit, "rms": rms,
              "B_simple": float(np.exp(np.mean(np.log(noise)))) if noise.size else math.nan}
    best = {int(b): float(g["lr0"].iloc[0]) for b, g in t.groupby("batch_size")}
    return {"tuned": t, "per_seed": per_seed, "pooled": pooled, "best_lr": best,
            "steps_mean": mean, "target": target}


@finding("critical_batch")
def critical_batch(results):
    s = critical_batch_summary(results)
    mean, seeds = s["steps_mean"], s["per_seed"]
    src = "McCandlish et al. 2018"
    if len(mean) < 3:
        why = (f"fewer than 3 batch sizes reached the training loss {s['target']:g} at every "
               f"seed ({len(mean)})")
        return [row("critical_batch", "steps and examples trade off as (S/S_min-1)(E/E_min-1)=1",
                    src, "-", why, []),
                row("critical_batch", "B_crit = E_min/S_min is close to B_simple", src, "-",
                    why, [])]
    sizes = mean.index.to_numpy(float)
    steps = mean.to_numpy(float)
    examples = steps * sizes
    pooled = s["pooled"]
    shape = [steps[0] >= 4 * steps[-1], examples[-1] >= 2 * examples[0],
             math.isfinite(pooled["rms"]) and pooled["rms"] < 0.3]
    ratios = [v["B_crit"] / v["B_simple"] for v in seeds.values()]
    close = [math.isfinite(r) and 1 / BCRIT_FACTOR <= r <= BCRIT_FACTOR for r in ratios]
    n = len(seeds)
    return [row("critical_batch", "steps and examples trade off as (S/S_min-1)(E/E_min-1)=1",
                src, f"steps to train loss {s['target']:g} at each batch size's best rate "
                f"(mean over seeds): S falls >= 4x and E = BS rises >= 2x from B = "
                f"{int(sizes[0])} to {int(sizes[-1])}; the fit S = S_min + E_min/B leaves an "
                "rms relative residual < 0.3",
                f"S {steps[0]:.3g} -> {steps[-1]:.3g}, E {examples[0]:.4g} -> "
                f"{examples[-1]:.4g}; fit S_min {pooled['S_min']:.3g}, E_min "
                f"{pooled['E_min']:.4g}, rms residual {pooled['rms']:.2f} ({n} seeds)", shape),
            row("critical_batch", "B_crit = E_min/S_min is close to B_simple", src,
                f"B_crit fitted per seed within a factor {BCRIT_FACTOR:g} of the noise scale "
                f"B_simple = tr(Sigma)/|G|^2 measured where the tuned runs reach loss "
                f"{s['target']:g}, on every seed",
                f"B_crit {band([v['B_crit'] for v in seeds.values()])}, B_simple "
                f"{band([v['B_simple'] for v in seeds.values()])}, ratio {band(ratios, 2)} "
                f"({n} seeds)", close)]


# ---------------------------------------------------------------- lr_range

def range_curves(results):
    """{seed: DataFrame(step, lr, loss)} of the range test: the exponential-schedule run from
    the smallest starting rate, up to and including its last finite loss."""
    h = _history(results, ["schedule", "lr"])
    ramp = h[h["schedule"] == "exponential"]
    if ramp.empty:
        return {}
    ramp = ramp[np.isclose(ramp["lr0"], ramp["lr0"].min())]
    out = {}
    for seed, g in ramp.groupby("seed"):
        g = g.dropna(subset=["lr"])
        g = g[np.isfinite(g["loss"])]
        out[int(seed)] = g[["step", "lr", "loss"]].reset_index(drop=True)
    return out


def blown_up(loss):
    """Index of the first loss above BLOWUP x the lowest loss before it (len(loss) if none)."""
    low = np.minimum.accumulate(np.asarray(loss, float))
    over = np.nonzero(np.asarray(loss, float)[1:] > BLOWUP * low[:-1])[0]
    return int(over[0]) + 1 if over.size else len(low)


def range_suggestion(curve):
    """(suggested = lr at the lowest loss before the blow-up, one tenth of it, lr of the
    steepest fall of the loss per decade of lr before that minimum)."""
    if curve.empty:
        return math.nan, math.nan, math.nan
    curve = curve.iloc[:blown_up(curve["loss"].to_numpy())]
    i = int(np.argmin(curve["loss"].to_numpy()))
    lr_min = float(curve["lr"].iloc[i])
    lr, loss = np.log10(curve["lr"].to_numpy(float)), curve["loss"].to_numpy(float)
    slope = np.diff(loss[:i + 1]) / np.diff(lr[:i + 1]) if i > 0 else np.array([])
    steep = float(10 ** ((lr[:-1][:i][np.argmin(slope)] + lr[1:][:i][np.argmin(slope)]) / 2)) \
        if slope.size else math.nan
    return lr_min, lr_min / 10, steep


def grid_table(results):
    """Constant-schedule runs: lr0, seed, status, final loss (inf if diverged), sharpness at
    step 0."""
    h = _history(results, ["schedule", "lr"])
    h = h[h["schedule"] == "constant"]
    rows = []
    for run_id, g in h.groupby("run_id", sort=False):
        first = g.iloc[0]
        loss = g["train_loss"].dropna()
        sharp = g[g["step"] == 0]["sharpness"].dropna()
        rows.append({"run_id": run_id, "lr0": float(first["lr0"]), "seed": int(first["seed"]),
                     "status": first["status"],
                     "final_loss": float(loss.iloc[-1]) if first["status"] == "completed"
                     and len(loss) else math.inf,
                     "sharpness0": float(sharp.iloc[0]) if len(sharp) else math.nan})
    return pd.DataFrame(rows, columns=["run_id", "lr0", "seed", "status", "final_loss",
                                       "sharpness0"])


def best_fixed(grid):
    """(best lr by mean final loss over seeds among rates where no seed diverged, strictly
    inside the grid?)."""
    if grid.empty:
        return math.nan, False
    rates = sorted(grid["lr0"].unique())
    ok = grid.groupby("lr0").filter(lambda g: (g["status"] == "completed").all())
    if ok.empty:
        return math.nan, False
    best = float(ok.groupby("lr0")["final_loss"].mean().idxmin())
    return best, 0 < rates.index(best) < len(rates) - 1


def divergence_edge(grid, seed):
    """Geometric mean of the largest completed rate below the seed's first diverged rate and
    that rate; NaN if the seed never diverged or diverged at its smallest rate."""
    g = grid[grid["seed"] == seed].sort_values("lr0")
    bad = g[g["status"] == "diverged"]
    if bad.empty:
        return math.nan
    first = float(bad["lr0"].iloc[0])
    below = g[(g["lr0"] < first) & (g["status"] == "completed")]
    return math.sqrt(float(below["lr0"].iloc[-1]) * first) if len(below) else math.nan


def lr_range_summary(results):
    """{'curves', 'per_seed': {seed: suggested, tenth, steepest, edge, stable (2/lambda),
    stable_ok (no grid rate below 2/lambda diverged)},
    'best', 'interior', 'grid'}."""
    curves, grid = range_curves(results), grid_table(results)
    best, interior = best_fixed(grid)
    per_seed = {}
    for seed in sorted(set(curves) | set(grid["seed"].unique() if len(grid) else [])):
        suggested, tenth, steep = range_suggestion(curves.get(seed, pd.DataFrame(
            columns=["step", "lr", "loss"])))
        sharp = grid[grid["seed"] == seed]["sharpness0"].dropna()
        per_seed[int(seed)] = {"suggested": suggested, "tenth": tenth, "steepest": steep,
                               "edge": divergence_edge(grid, seed),
                               "stable": 2.0 / float(sharp.median()) if len(sharp) else math.nan}
        below = grid[(grid["seed"] == seed) & (grid["lr0"] < per_seed[int(seed)]["stable"])]
        per_seed[int(seed)]["stable_ok"] = bool(len(below)) and \
            bool((below["status"] == "completed").all())
    return {"curves": curves, "grid": grid, "best": best, "interior": interior,
            "per_seed": per_seed}


@finding("lr_range")
def lr_range(results):
    s = lr_range_summary(results)
    seeds = s["per_seed"].values()
    best, src = s["best"], "Smith 2017"
    suggested = [v["suggested"] for v in seeds]
    factor = [max(x / best, best / x) if math.isfinite(x) and math.isfinite(best) else math.nan
              for x in suggested]
    near = [s["interior"]] + [math.isfinite(f) and f <= SUGGESTED_FACTOR for f in factor]
    edge = [v["edge"] / v["stable"] for v in seeds]
    at_edge = [math.isfinite(r) and 1 / EDGE_FACTOR <= r <= EDGE_FACTOR for r in edge]
    at_edge += [v["stable_ok"] for v in seeds]
    n = len(suggested)
    return [row("lr_range", "the range test suggests a good fixed rate", src,
                f"the rate at the range test's lowest loss before it blows up (loss > "
                f"{BLOWUP:g}x its minimum) within a factor {SUGGESTED_FACTOR:g} of the best rate "
                "of the fixed grid (final loss, mean over seeds; best strictly inside the grid), "
                "on every seed",
                f"suggested {band(suggested)} (a tenth of it "
                f"{band([v['tenth'] for v in seeds])}, steepest fall at "
                f"{band([v['steepest'] for v in seeds])}); best fixed {best:.3g}"
                f"{'' if s['interior'] else ' (grid edge)'}; factor {band(factor, 2)} "
                f"({n} seeds)", near),
            row("lr_range", "full-batch GD is stable below 2/lambda_max and diverges near it",
                "report sec. 9", "every grid rate below 2/lambda_max (sharpness at "
                f"initialization) completes, and the divergence edge is within a factor "
                f"{EDGE_FACTOR:g} of 2/lambda_max, on every seed",
                f"edge {band([v['edge'] for v in seeds])}, 2/lambda_max "
                f"{band([v['stable'] for v in seeds])}, ratio {band(edge, 2)} ({n} seeds)",
                at_edge)]
