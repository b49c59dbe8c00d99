"""Findings: each bundled study's published claim tested on its own stored runs.

    rows = findings_for("optimizers", results)   # [{"study", "claim", "source", "criterion",
                                                #   "measured", "verdict"}, ...]

One function per study, registered with `@finding("name")`, takes the loaded `Results` (the
runs of one sweep) and returns its rows. The measured text and the verdict are both computed
from the tables: `reproduced` when every check of the criterion holds, `partly` when some do,
`not reproduced` when none do (or the runs needed are missing). Numbers over several seeds are
quoted as mean [min, max] over the seeds.
"""
from . import batching, curvature, gradients, mean_field, training  # noqa: F401  (they register
# their studies)
from .common import COLUMNS, FINDINGS, VERDICTS, row, table, verdict, verdict_line

__all__ = ["COLUMNS", "FINDINGS", "VERDICTS", "findings_for", "known_studies", "table",
           "verdict", "verdict_line"]


def known_studies():
    return sorted(FINDINGS)


def findings_for(study, results):
    """The rows of `study`'s finding function on `results`; a study without one, or without
    runs, gives one `not reproduced` row that says why."""
    func = FINDINGS.get(study)
    if func is None:
        return [row(study, "-", "-", "-", "no finding function for this study", [])]
    if results.runs.empty:
        return [row(study, "-", "-", "-", "no runs in the store", [])]
    return func(results)
