"""Small store helpers shared by the figure modules of the training studies (learning_rate,
clipping, batchnorm, dead_relu, mean_field, mnist1d): tidy tables joined with each run's
configuration, last recorded values, and counts of failed runs for captions."""
import warnings

import numpy as np
import pandas as pd

CONFIG_RENAMES = {"lr": "lr0"}   # history's `lr` is the scheduled rate; the config's is lr0


def runs_with_data(results, keys):
    """The runs table (status, keys, seed, finals) of runs that are not failed, and the number
    of failed runs (they have no history)."""
    runs = results.runs
    if runs.empty:
        raise ValueError(f"{results.manifest.get('study', 'study')}: the store has no runs")
    missing = [k for k in list(keys) + ["seed", "status"] if k not in runs]
    if missing:
        raise ValueError(f"runs table lacks column(s) {missing}")
    failed = int((runs["status"] == "failed").sum())
    return runs[runs["status"] != "failed"].reset_index(drop=True), failed


def joined(frame, runs, keys):
    """frame (history or layers) with the run's keys, seed and status joined on run_id; a key
    that frame also has (history's scheduled `lr`) comes in renamed (CONFIG_RENAMES)."""
    cols = ["run_id", "seed", "status"] + [k for k in keys if k not in ("seed", "status")]
    right = runs[cols].rename(columns={k: CONFIG_RENAMES.get(k, k) for k in keys
                                       if k in frame.columns and k != "run_id"})
    if frame.empty:
        return frame
    return frame.merge(right, on="run_id", how="inner")






def failed_note(failed):
    return f" {failed} failed run(s) have no data and are not drawn." if failed else ""


def seed_stats(values):
    """(mean, min, max, n) of finite values (NaN mean when none)."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if not v.size:
        return np.nan, np.nan, np.nan, 0
    return float(v.mean()), float(v.min()), float(v.max()), int(v.size)




def ordered(values, order):
    rank = {v: i for i, v in enumerate(order)}
    return sorted(pd.unique(pd.Series(list(values))), key=lambda v: (rank.get(v, len(rank)),
                                                                      str(v)))


def with_verdict(caption, study, results):
    """The caption followed by the study's verdict line (studies.analysis.findings: the same
    rows as the report's findings table); a store the finding function cannot read says so."""
    from studies.analysis.findings import findings_for, verdict_line
    try:
        with warnings.catch_warnings():  # a mean of nothing is no verdict: say so, once
            warnings.simplefilter("error", RuntimeWarning)
            line = verdict_line(findings_for(study, results))
    except Exception as err:  # a hand-made or partial store: the figure still draws
        line = f"Verdict: not computed ({type(err).__name__}: {err})."
    return f"{caption.rstrip()} {line}"
