"""Shared parts of the finding functions: the registry, the verdict rule, row and seed-band
helpers, and measurements several studies use."""
import math

import numpy as np
import pandas as pd

COLUMNS = ("study", "claim", "source", "criterion", "measured", "verdict")
VERDICTS = ("reproduced", "partly", "not reproduced")
FINDINGS = {}


def finding(study):
    """Registers the finding function of a study."""
    def register(func):
        FINDINGS[study] = func
        return func
    return register


def verdict(checks):
    """reproduced (all checks hold), partly (some), not reproduced (none, or no checks)."""
    checks = [bool(c) for c in checks]
    if checks and all(checks):
        return "reproduced"
    return "partly" if any(checks) else "not reproduced"


def row(study, claim, source, criterion, measured, checks):
    return {"study": study, "claim": claim, "source": source, "criterion": criterion,
            "measured": measured, "verdict": verdict(checks)}


def table(rows):
    """The rows as a DataFrame with COLUMNS."""
    return pd.DataFrame(list(rows), columns=list(COLUMNS))


def verdict_line(rows):
    """'Verdict: reproduced (claim); partly (claim).' for a caption."""
    return "Verdict: " + "; ".join(f"{r['verdict']} ({r['claim']})" for r in rows) + "."


# ---------------------------------------------------------------- shared measurements

def band(values, digits=3):
    """'m [lo, hi]' over seeds ('m (1 seed)' for one; 'n/a' for none); NaN values dropped."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], float)
    if not v.size:
        return "n/a"
    f = f"{{:.{digits}g}}"
    if v.size == 1:
        return f.format(v[0]) + " (1 seed)"
    return f"{f.format(v.mean())} [{f.format(v.min())}, {f.format(v.max())}]"


def runs_with(results, columns):
    """The runs table with the history's first and last finite train_loss / test_accuracy
    (initial_loss, end_loss, end_test_accuracy) merged in; a diverged run ends at loss inf and
    accuracy 0 (it did not finish)."""
    runs = results.runs.copy()
    h = results.history.sort_values("step")
    per = {}
    for run_id, g in h.groupby("run_id"):
        loss = g["train_loss"].dropna() if "train_loss" in g else pd.Series(dtype=float)
        acc = g["test_accuracy"].dropna() if "test_accuracy" in g else pd.Series(dtype=float)
        per[run_id] = {"initial_loss": loss.iloc[0] if len(loss) else np.nan,
                       "end_loss": (loss.iloc[-1] if len(loss) else np.nan),
                       "end_test_accuracy": acc.iloc[-1] if len(acc) else np.nan}
    extra = pd.DataFrame.from_dict(per, orient="index")
    runs = runs.join(extra, on="run_id")
    diverged = runs["status"] == "diverged"
    runs.loc[diverged, ["end_loss", "end_test_accuracy"]] = [np.inf, 0.0]
    keep = [c for c in columns if c in runs]
    return runs[keep + ["run_id", "seed", "status", "initial_loss", "end_loss",
                        "end_test_accuracy", "final_train_accuracy"]]


def seed_values(runs, column, **where):
    """Values of `column` over the runs matching where (key = value), by seed order."""
    mask = np.ones(len(runs), bool)
    for key, value in where.items():
        mask &= (runs[key] == value).to_numpy()
    return runs.loc[mask].sort_values("seed")[column].to_numpy(float)


def mean_of(runs, column, **where):
    v = seed_values(runs, column, **where)
    v = v[np.isfinite(v)] if column != "end_loss" else v
    return float(np.mean(v)) if v.size else math.nan


def at_step(layers, step=0):
    """Layer rows at one step (default: initialization), last row per (run, layer)."""
    rows = layers[layers["step"] == step]
    return rows.drop_duplicates(["run_id", "layer"], keep="last")


def first_layer_ratio(results, column="w_grad_norm"):
    """{run_id: column(layer 1) / column(layer L)} at step 0."""
    rows = at_step(results.layers)
    out = {}
    for run_id, g in rows.groupby("run_id"):
        g = g.sort_values("layer")
        first, last = g[column].iloc[0], g[column].iloc[-1]
        out[run_id] = first / last if last > 0 else math.nan
    return out


# ---------------------------------------------------------------- per-method learning rates

def best_rates(runs, group, metric="end_loss"):
    """{key: (best lr, grid, inside)} per value (tuple) of the `group` columns: the rate with
    the lowest seed-mean `metric` (a diverged run counts as inf, so a rate where any seed
    diverged loses to one where none did); inside: strictly between the grid's end points (a
    grid of one rate is its own best, not inside)."""
    out = {}
    for key, sub in runs.groupby(list(group)):
        by_lr = sub.groupby("lr")[metric].mean().sort_index()
        grid = [float(v) for v in by_lr.index]
        finite = by_lr.replace([np.inf, -np.inf], np.nan).dropna()
        best = float(finite.idxmin()) if len(finite) else grid[0]
        out[key if isinstance(key, tuple) else (key,)] = (
            best, grid, 0 < grid.index(best) < len(grid) - 1)
    return out


def at_best_rates(results, group):
    """(Results restricted to the runs at each group's best learning rate, best_rates(...)),
    so a study that tunes the rate per method compares the methods each at its own."""
    from dataclasses import replace
    runs = runs_with(results, list(group) + ["lr"])
    best = best_rates(runs, group)
    keep = np.zeros(len(runs), bool)
    for key, (lr, _, _) in best.items():
        mask = (runs["lr"] == lr).to_numpy().copy()
        for col, value in zip(group, key):
            mask &= (runs[col] == value).to_numpy()
        keep |= mask
    ids = set(runs.loc[keep, "run_id"])

    def only(frame):
        return frame[frame["run_id"].isin(ids)].reset_index(drop=True) if len(frame) else frame

    return replace(results, runs=only(results.runs), history=only(results.history),
                   layers=only(results.layers)), best


def rates_text(best, names=None):
    """'sigmoid/standard lr 0.3, tanh/standard lr 0.1 (grid edge)' for a measured column."""
    parts = []
    for key, (lr, grid, inside) in best.items():
        name = names(key) if names else "/".join(str(k) for k in key)
        edge = "" if inside or len(grid) < 2 else " (grid edge)"
        parts.append(f"{name} lr {lr:g}{edge}")
    return ", ".join(parts)
