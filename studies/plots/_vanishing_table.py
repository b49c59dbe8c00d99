"""Data tables and caption numbers behind the `vanishing` study's figures (plots/vanishing.py).

- run_table: one row per run read from the store: its keys, status, labels, recorded steps and
  the first-to-last layer gradient ratio r = ||dL/dW_1|| / ||dL/dW_L|| at its first and last
  step; `_grads` is the (run_id, step) x layer table of ||dL/dW_l|| behind it.
- _summary: the key numbers shared by the captions (per-configuration geometric-mean ratios,
  the worst deep configuration, first vanishing labels, diverged/failed/zero-gradient runs),
  and the `*_sentence` helpers that turn them into caption text.
- _check, _thresholds: the store's runs table has the needed columns; the label thresholds of
  the stored spec.
- tuned: the runs at each (activation, init, depth)'s best SGD rate where the study swept a
  rate grid (full scale), and the caption sentence that says which rate the nets trained at.

Layers are numbered 1..L with L = depth + 1: `depth` hidden layers and the output layer.
"""
import numpy as np
import pandas as pd

from studies.analysis.findings.common import at_best_rates, rates_text
from studies.analysis.labels import Thresholds, parse_labels
from .style import ACTIVATION_COLORS, INIT_COLORS, display, fmt

GROUP = ("activation", "init", "depth")
STANDARD_INIT = "glorot_standard"


# ---------------------------------------------------------------- tables from the store

def _ordered(values, table):
    rank = {v: i for i, v in enumerate(table)}
    return sorted(set(values), key=lambda v: (rank.get(v, len(rank)), str(v)))


def _grads(results):
    """(run_id, step) x layer table of ||dL/dW_l|| (inf/NaN kept as stored)."""
    layers = results.layers
    if layers.empty or "w_grad_norm" not in layers:
        return pd.DataFrame()
    rows = layers.dropna(subset=["step", "layer"]).drop_duplicates(
        ["run_id", "step", "layer"], keep="last")
    table = rows.set_index(["run_id", "step", "layer"])["w_grad_norm"].astype(float)
    return table.unstack("layer").sort_index()


def _first_step(run, label):
    value = run.get(f"first_{label}")
    if value is not None and not pd.isna(value):
        return int(value) if int(value) >= 0 else None
    return parse_labels(_text(run.get("labels"))).get(label)


def _text(value):
    """A stored string column entry ('' for missing/NaN)."""
    return value if isinstance(value, str) else ""


def _diverged_step(results, run_id):
    """First step recorded as diverged in the history (None if none)."""
    h = results.history
    if h.empty or "diverged" not in h:
        return None
    rows = h[(h["run_id"] == run_id) & h["diverged"].astype(bool)]
    return int(rows["step"].min()) if len(rows) else None


def run_table(results):
    """One row per run with data: its GROUP keys, seed, status, labels, the steps it recorded,
    the ratio r = ||dL/dW_1||/||dL/dW_L|| at its first step (r0) and at its last step (r_end;
    NaN where either norm is zero or not finite), its last finite r (r_last, at last_step), and
    zero_end: some layer's gradient is exactly zero at the last step (no gradient flows)."""
    grads = _grads(results)
    runs = results.runs
    rows = []
    for run in runs.to_dict("records"):
        rid = run["run_id"]
        record = {k: run.get(k) for k in GROUP + ("seed", "status")}
        record["labels"] = _text(run.get("labels"))
        record.update(run_id=rid, first_vanishing=_first_step(run, "vanishing"),
                      first_exploding=_first_step(run, "exploding"), steps=[], r0=np.nan,
                      r_end=np.nan, r_last=np.nan, last_step=None, zero_end=False,
                      diverged_at=None, layers=0)
        if run.get("status") == "diverged":
            at = _diverged_step(results, rid)
            record["diverged_at"] = at if at is not None else _first_step(run, "diverged")
        if not grads.empty and rid in grads.index.get_level_values(0):
            g = grads.loc[rid].dropna(axis=1, how="all")
            record["steps"] = [int(s) for s in g.index]
            record["layers"] = g.shape[1]
            first, last = (g.iloc[:, i].to_numpy(float) for i in (0, -1))
            ok = np.isfinite(first) & np.isfinite(last) & (first > 0) & (last > 0)
            ratio = np.full(len(g), np.nan)  # a ratio only between two finite, positive norms
            ratio[ok] = first[ok] / last[ok]
            record["r0"], record["r_end"] = ratio[0], ratio[-1]
            record["zero_end"] = bool((g.iloc[-1].to_numpy(float) == 0).any())
            finite = np.flatnonzero(np.isfinite(ratio))
            if finite.size:
                record["r_last"] = ratio[finite[-1]]
                record["last_step"] = int(g.index[finite[-1]])
        rows.append(record)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    act_rank = {a: i for i, a in enumerate(ACTIVATION_COLORS)}
    init_rank = {a: i for i, a in enumerate(INIT_COLORS)}
    table["_a"] = table["activation"].map(lambda a: act_rank.get(a, 99))
    table["_i"] = table["init"].map(lambda a: init_rank.get(a, 99))
    table = table.sort_values(["_a", "_i", "depth", "seed"]).drop(columns=["_a", "_i"])
    return table.reset_index(drop=True)


def _key(activation, init, depth):
    return f"{activation}/{init}/{int(depth)}"


def _name(activation, init, depth=None):
    text = f"{display(activation)} + {display(init)}"
    return text + (f", depth {int(depth)}" if depth is not None else "")


def _geo(values):
    v = np.asarray(values, float)
    v = v[np.isfinite(v) & (v > 0)]
    return float(np.exp(np.mean(np.log(v)))) if v.size else np.nan


def _thresholds(results):
    labels = (results.manifest.get("spec", {}) or {}).get("labels", {}) or {}
    try:
        return Thresholds.from_dict(labels)
    except ValueError:
        return Thresholds()


def _check(results):
    if results.runs.empty:
        raise ValueError("vanishing figures: the store has no runs")
    missing = [k for k in GROUP + ("seed", "status") if k not in results.runs]
    if missing:
        raise ValueError(f"vanishing figures: runs table lacks column(s) {missing}")


def tuned(results, short=False):
    """(results at each (activation, init, depth)'s best learning rate, rate sentence). One
    shared rate (quick scale): every run kept, and the sentence says the rate is not tuned, so a
    net that stalls there may learn at another. short: one clause, for the second and later
    figures (vanishing_ratio carries the full sentence)."""
    if "lr" not in results.runs or results.runs["lr"].nunique() < 2:
        rates = sorted(results.runs["lr"].unique()) if "lr" in results.runs else []
        lr = f"lr {fmt(float(rates[0]))}" if rates else "one rate"
        return results, (f"All nets share one untuned SGD rate ({lr})." if short else
                         f"All nets share one untuned SGD rate ({lr}): a stall here may be "
                         f"that rate's fault (full scale tunes the rate per net); the gradients "
                         f"at initialization do not depend on it.")
    best_results, best = at_best_rates(results, GROUP)
    if short:
        return best_results, ("Each net at its own best SGD rate (vanishing_ratio names them; "
                              "one that learns at no rate at its least-bad one).")
    grid = sorted(float(v) for v in results.runs["lr"].unique())
    deepest = max(k[2] for k in best)
    deep = {k: b for k, b in best.items() if k[2] == deepest}
    return best_results, (
        f"Each activation/init/depth at its own best SGD rate of "
        f"{', '.join(fmt(v) for v in grid)} (lowest mean final loss; one that stalls or "
        f"diverges at every rate has none and is drawn at its least-bad one); at depth "
        f"{int(deepest)}: " + rates_text(deep, lambda k: _name(k[0], k[1])) + ".")


def _summary(table, thresholds):
    """Key numbers shared by the captions."""
    data = table[table["layers"] > 0]
    deepest = int(data["depth"].max()) if len(data) else None
    ratio0 = {_key(*k): _geo(g["r0"]) for k, g in data.groupby(list(GROUP), sort=False)}
    range0, range_end = ({_key(*k): (np.nanmin(g[c]), np.nanmax(g[c]))
                          for k, g in data.groupby(list(GROUP), sort=False)
                          if np.isfinite(g[c]).any()} for c in ("r0", "r_end"))
    ratio_end = {_key(*k): _geo(g["r_end"]) for k, g in data.groupby(list(GROUP), sort=False)}
    deep = data[data["depth"] == deepest]
    worst = None
    if len(deep):
        sig = deep[(deep["activation"] == "sigmoid") & (deep["init"] == STANDARD_INIT)]
        pick = sig if len(sig) else deep.loc[[deep["r0"].fillna(np.inf).idxmin()]]
        worst = _key(pick["activation"].iloc[0], pick["init"].iloc[0], deepest)
    first_vanishing = {}
    for row in table.itertuples():
        if row.first_vanishing is not None and not pd.isna(row.first_vanishing):
            first_vanishing[f"{_key(row.activation, row.init, row.depth)}/seed{row.seed}"] = \
                int(row.first_vanishing)
    diverged = [f"{_key(r.activation, r.init, r.depth)}/seed{r.seed}"
                + (f" at step {int(r.diverged_at)}" if r.diverged_at is not None
                   and not pd.isna(r.diverged_at) else "")
                for r in table.itertuples() if r.status == "diverged"]
    failed = [f"{_key(r.activation, r.init, r.depth)}/seed{r.seed}"
              for r in table.itertuples() if r.status == "failed"]
    zero = [f"{_key(r.activation, r.init, r.depth)}/seed{r.seed}"
            for r in table.itertuples() if r.zero_end and r.status != "diverged"]
    stalled = {}
    for key, g in deep.groupby(["activation", "init"], sort=False):
        stalled[_key(*key, deepest)] = (int(sum("stalled" in parse_labels(_text(t))
                                                for t in g["labels"])), len(g))
    return {"deepest": deepest, "worst": worst, "ratio_step0": ratio0,
            "ratio_step0_range": range0, "stalled_deepest": stalled, "ratio_final": ratio_end,
            "ratio_final_range": range_end,
            "first_vanishing": first_vanishing, "diverged": diverged, "failed": failed,
            "zero_gradient": zero,
            "vanishing_threshold": thresholds.vanishing_ratio,
            "exploding_threshold": thresholds.exploding_ratio, "runs": len(table)}


def _status_sentence(numbers):
    parts = []
    n_van = len(numbers["first_vanishing"])
    if n_van:
        steps = sorted(set(numbers["first_vanishing"].values()))
        at = ", ".join(map(str, steps[:4])) + ("..." if len(steps) > 4 else "")
        parts.append(f"The vanishing label (r < {fmt(numbers['vanishing_threshold'])}) fired in "
                     f"{n_van} of {numbers['runs']} runs, first at step(s) {at}.")
    else:
        parts.append(f"The vanishing label (r < {fmt(numbers['vanishing_threshold'])}) fired in "
                     f"none of the {numbers['runs']} runs.")
    if numbers["diverged"]:
        parts.append(f"Diverged ({len(numbers['diverged'])}, shown with black crosses/hatching):"
                     f" {'; '.join(numbers['diverged'][:6])}"
                     f"{' ...' if len(numbers['diverged']) > 6 else ''}.")
    else:
        parts.append("No run diverged.")
    if numbers["zero_gradient"]:
        parts.append(f"Gradients exactly zero at the last step (no gradient reaches those "
                     f"layers; drawn as triangles at the bottom edge): "
                     f"{'; '.join(numbers['zero_gradient'][:6])}.")
    if numbers["failed"]:
        parts.append(f"Failed without data ({len(numbers['failed'])}): "
                     f"{'; '.join(numbers['failed'][:6])}.")
    return " ".join(parts)


def _contrast_sentence(numbers, key="ratio_step0", when="at step 0"):
    """'At depth D, sigmoid + standard has r = x at step 0, against y..z for the others.'"""
    worst, deepest = numbers["worst"], numbers["deepest"]
    if worst is None:
        return ""
    ratios = numbers[key]
    others = {k: v for k, v in ratios.items()
              if k != worst and k.endswith(f"/{deepest}") and np.isfinite(v)}
    act, init, _ = worst.split("/")
    spread = numbers.get(f"{key}_range", {}).get(worst)
    seeds = f" [{fmt(spread[0])}, {fmt(spread[1])}] over seeds" \
        if spread and spread[0] < spread[1] else ""
    text = (f"At depth {deepest}, {_name(act, init)} has r = ||dL/dW_1||/||dL/dW_L|| = "
            f"{fmt(ratios.get(worst))}{seeds} {when}")
    if others:
        lo, hi = min(others, key=others.get), max(others, key=others.get)
        lo_name, hi_name = (_name(*k.split("/")[:2]) for k in (lo, hi))
        text += (f", against {fmt(others[lo])} ({lo_name}) to {fmt(others[hi])} ({hi_name}) "
                 f"for the other activation/init pairs")
    return text + "."


def _stall_sentence(numbers):
    """'Labelled stalled at depth 20: sigmoid + standard 3/3, ...' from the stored labels."""
    parts = [f"{_name(*k.split('/')[:2])} {n}/{total}"
             for k, (n, total) in numbers.get("stalled_deepest", {}).items()]
    return (f"Runs labelled stalled at depth {numbers['deepest']}: " + ", ".join(parts) + "."
            if parts else "")


def _final_sentence(numbers, last):
    """The worst configuration's ratio at the last step, against the best one's."""
    worst, final = numbers["worst"], numbers["ratio_final"]
    if worst is None or not np.isfinite(final.get(worst, np.nan)):
        return ""
    deep = {k: v for k, v in final.items() if k.endswith(f"/{numbers['deepest']}")
            and np.isfinite(v)}
    best = max(deep, key=deep.get)
    spread = numbers.get("ratio_final_range", {})

    def quoted(key):
        lo_hi = spread.get(key)
        return fmt(final[key]) + (f" [{fmt(lo_hi[0])}, {fmt(lo_hi[1])}]"
                                  if lo_hi and lo_hi[0] < lo_hi[1] else "")

    return (f"At step {last} (geometric mean [min, max] over seeds): {quoted(worst)} for "
            f"{_name(*worst.split('/')[:2])}, {quoted(best)} for {_name(*best.split('/')[:2])}.")
