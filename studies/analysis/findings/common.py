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
    (initial_loss, end_loss, end_test_accuracy) merged in, and the run labels where stored; a
    diverged run ends at loss inf and accuracy 0 (it did not finish)."""
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
                        "end_test_accuracy", "final_train_accuracy"]
                + [c for c in ("labels",) if c in runs and c not in keep]]


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

class BestRate(tuple):
    """(lr, grid, inside) of one method, unpackable as a 3-tuple, with .learns: False when every
    run of the method, at every rate of its grid, stalled or diverged (see `did_not_learn`).
    Such a method has no best rate: lr is then only its least-bad rate (lowest seed-mean loss,
    a noise-level minimum) and inside is False; `inside_checks` leaves it out."""

    def __new__(cls, lr, grid, inside, learns=True):
        self = super().__new__(cls, (lr, grid, inside))
        self.learns = bool(learns)
        return self

    lr = property(lambda self: self[0])
    grid = property(lambda self: self[1])
    inside = property(lambda self: self[2])


def did_not_learn(runs, min_improvement=None):
    """Boolean Series over the runs: diverged or failed (status), or stalled: the stored run
    label `stalled` where the runs carry a `labels` column (studies.analysis.labels), else
    end_loss above (1 - min_improvement) x initial_loss (the label's loss test, its default
    threshold); without either column a finished run counts as learning."""
    from studies.analysis.labels import Thresholds
    bar = 1 - (min_improvement if min_improvement is not None else
               Thresholds().min_improvement)
    out = runs["status"].isin(["diverged", "failed"]).to_numpy().copy()
    if "labels" in runs:
        text = runs["labels"].fillna("").astype(str)
        out |= text.str.contains(r"\b(?:stalled|diverged)\b", regex=True).to_numpy()
    elif "end_loss" in runs and "initial_loss" in runs:
        end, start = runs["end_loss"].to_numpy(float), runs["initial_loss"].to_numpy(float)
        with np.errstate(invalid="ignore"):
            out |= ~(end <= bar * start)
    return pd.Series(out, index=runs.index)


def best_rates(runs, group, metric="end_loss"):
    """{key: BestRate(best lr, grid, inside)} per value (tuple) of the `group` columns: the
    rate with the lowest seed-mean `metric` (a diverged run counts as inf, so a rate where any
    seed diverged loses to one where none did); inside: strictly between the grid's end points
    (a grid of one rate is its own best, not inside). A method none of whose runs learned at
    any rate (did_not_learn) has no best rate: learns False, inside False, lr its least-bad
    rate."""
    out = {}
    failed = did_not_learn(runs)
    for key, sub in runs.groupby(list(group)):
        by_lr = sub.groupby("lr")[metric].mean().sort_index()
        grid = [float(v) for v in by_lr.index]
        finite = by_lr.replace([np.inf, -np.inf], np.nan).dropna()
        best = float(finite.idxmin()) if len(finite) else grid[0]
        learns = not failed.loc[sub.index].all()
        inside = learns and 0 < grid.index(best) < len(grid) - 1
        out[key if isinstance(key, tuple) else (key,)] = BestRate(best, grid, inside, learns)
    return out


def inside_checks(best):
    """The strictly-inside-the-grid check of every method that learns somewhere on a grid of
    two or more rates (a method that never learns has no best rate to place)."""
    return [b.inside for b in best.values() if b.learns and len(b.grid) > 1]


def at_best_rates(results, group):
    """(Results restricted to the runs at each group's best learning rate, best_rates(...)),
    so a study that tunes the rate per method compares the methods each at its own; a method
    that never learns is kept at its least-bad rate (its BestRate says learns False)."""
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


def grid_text(grid):
    return "[" + ", ".join(f"{v:g}" for v in grid) + "]"


def rates_text(best, names=None):
    """'sigmoid/standard never learns at any rate of [0.03, 0.1, 0.3] (drawn at lr 0.03, its
    lowest final loss), tanh/standard lr 0.1, relu lr 1 (grid edge)' for a measured column."""
    parts = []
    for key, b in best.items():
        name = names(key) if names else "/".join(str(k) for k in key)
        if not getattr(b, "learns", True):
            parts.append(f"{name} never learns at any rate of {grid_text(b.grid)} (drawn at "
                         f"lr {b.lr:g}, its lowest final loss)" if len(b.grid) > 1 else
                         f"{name} does not learn at lr {b.lr:g}, the one rate run")
            continue
        lr, grid, inside = b
        edge = "" if inside or len(grid) < 2 else " (grid edge)"
        parts.append(f"{name} lr {lr:g}{edge}")
    return ", ".join(parts)
