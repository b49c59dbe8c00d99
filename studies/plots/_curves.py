"""Shared table helpers of the study figures: history and layer rows joined with the run keys,
seed-aligned curves, and the last finite point of diverged runs.

    hist = with_keys(results, results.history, ["optimizer", "lr"])
    for key, (x, ys) in seed_curves(hist, ["optimizer"], "step", "train_loss").items(): ...
    for x, y in diverged_points(hist, "step", "train_loss"): ...
"""
import numpy as np
import pandas as pd


def completed_runs(results):
    """The runs that have data (completed or diverged), with their configuration columns."""
    runs = results.runs
    if runs.empty or "status" not in runs:
        return runs
    return runs[runs["status"].isin(["completed", "diverged"])].reset_index(drop=True)


def failed_count(results):
    runs = results.runs
    return int((runs["status"] == "failed").sum()) if "status" in runs else 0


def with_keys(results, frame, keys):
    """frame (history or layers) joined with the runs' keys, seed and status."""
    runs = completed_runs(results)
    if frame.empty or runs.empty:
        return pd.DataFrame(columns=list(frame.columns) + list(keys) + ["seed", "status"])
    cols = ["run_id"] + [k for k in dict.fromkeys(list(keys) + ["seed", "status"])]
    # A history column named like a key (history's per-step 'lr') keeps its name + '_row'.
    return frame.merge(runs[cols], on="run_id", how="inner", suffixes=("_row", ""))


def groups(frame, keys):
    """(key tuple, sub-frame) pairs sorted by key."""
    if frame.empty:
        return []
    return [((k,) if not isinstance(k, tuple) else k, g)
            for k, g in frame.groupby(list(keys), sort=True, dropna=False)]


def seed_matrix(frame, x, y):
    """(x values, array seeds x len(x)) of one group: runs aligned on x (NaN where a run has no
    row, e.g. after it diverged). Rows with a non-finite x are dropped."""
    frame = frame[np.isfinite(frame[x].astype(float))]
    table = frame.pivot_table(index=x, columns="run_id", values=y, aggfunc="last")
    table = table.replace([np.inf, -np.inf], np.nan)
    return table.index.to_numpy(dtype=float), table.to_numpy(dtype=float).T


def seed_curves(frame, keys, x, y):
    """{key tuple: (x, ys)} for every group of `keys` (seeds are the rows of ys)."""
    return {key: seed_matrix(g, x, y) for key, g in groups(frame, keys)}


def last_finite(frame, x, y):
    """(x, y) of the last row of a run with a finite y, or None."""
    ok = frame[np.isfinite(frame[y].astype(float))].sort_values("step")
    if ok.empty:
        return None
    row = ok.iloc[-1]
    return float(row[x]), float(row[y])


def diverged_points(frame, x, y):
    """[(x, y)]: the last finite point of every diverged run in frame."""
    points = []
    if frame.empty:
        return points
    for _, run in frame[frame["status"] == "diverged"].groupby("run_id"):
        point = last_finite(run, x, y)
        if point is not None:
            points.append(point)
    return points


def at_step(frame, step=0):
    """Rows of one step (default: initialization)."""
    return frame[frame["step"] == step]


def value_at(x, ys, target):
    """Mean over seeds of the curve at the first x >= target (NaN if none)."""
    idx = np.flatnonzero(x >= target)
    if not len(idx):
        return np.nan
    with np.errstate(invalid="ignore"):
        return float(np.nanmean(ys[:, idx[0]])) if np.isfinite(ys[:, idx[0]]).any() else np.nan


def first_below(x, ys, threshold):
    """First x at which the seed-mean curve is <= threshold (NaN if never)."""
    with np.errstate(invalid="ignore"):
        mean = np.nanmean(ys, axis=0) if np.isfinite(ys).any() else np.full(len(x), np.nan)
    idx = np.flatnonzero(mean <= threshold)
    return float(x[idx[0]]) if len(idx) else np.nan


def first_above(x, ys, threshold):
    """First x at which the seed-mean curve is >= threshold (NaN if never)."""
    with np.errstate(invalid="ignore"):
        mean = np.nanmean(ys, axis=0) if np.isfinite(ys).any() else np.full(len(x), np.nan)
    idx = np.flatnonzero(mean >= threshold)
    return float(x[idx[0]]) if len(idx) else np.nan


def training_setup(results):
    """'300 steps of SGD (lr 0.05, batch 64)' from the runs' fixed settings (values that vary
    across runs are left out)."""
    from .style import display, fmt
    runs = completed_runs(results)
    if runs.empty:
        return "no completed runs"

    def single(key):
        values = runs[key].dropna().unique() if key in runs else []
        return values[0] if len(values) == 1 else None

    steps = runs["steps_done"].max() if "steps_done" in runs else single("steps")
    optimizer, lr, batch = single("optimizer"), single("lr"), single("batch_size")
    details = []
    if lr is not None:
        details.append(f"lr {fmt(lr)}")
    if optimizer in ("momentum", "nesterov") and single("momentum") is not None:
        details.append(f"momentum {fmt(single('momentum'))}")
    if batch is not None:
        details.append("full batch" if int(batch) == 0 else f"batch {int(batch)}")
    name = {"momentum": "SGD with momentum", "nesterov": "SGD with Nesterov momentum"}.get(
        optimizer, display(optimizer)) if optimizer is not None else "several optimizers"
    return f"{int(steps)} steps of {name}" + (f" ({', '.join(details)})" if details else "")


def label_short_log(ax, axis="y"):
    """On a log axis spanning less than about two decades, label the 2x and 5x minor ticks too
    (a bare '10^0' alone is unreadable)."""
    import matplotlib.ticker as mticker
    target = ax.yaxis if axis == "y" else ax.xaxis
    low, high = ax.get_ylim() if axis == "y" else ax.get_xlim()
    if low > 0 and high / low < 150:
        target.set_minor_locator(mticker.LogLocator(base=10, subs=(2.0, 5.0)))
        target.set_minor_formatter(mticker.FuncFormatter(lambda v, _: f"{v:g}"))
        target.set_major_formatter(mticker.FuncFormatter(lambda v, _: f"{v:g}"))
