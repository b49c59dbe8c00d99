"""The report's pipeline: each bundled study's sweep, then its findings and figures, as one
`StudyReport` per study.

    studies = report_studies(paths, "quick", out, results_root, workers=None)

With worker processes (workers None or >= 1) the sweeps run one after another on one pool of
spawned workers shared by every study (studies.run.runner.worker_pool: workers start and load
their compiled kernels once), and each finished study is drawn in one drawing process while the
next study trains, so plotting overlaps training. workers=0 does everything in this process, in
order. Either way a study's stored numbers, findings and figures are the same.
"""
import time
import traceback
from concurrent.futures import Future
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

STATUSES = ("completed", "diverged", "failed")

__all__ = ["STATUSES", "StudyReport", "report_studies", "run_part", "draw_part"]


@dataclass
class StudyReport:
    """One study's part of the report."""
    name: str
    spec_path: str = ""
    description: str = ""
    section: str = ""
    grid: str = ""
    counts: dict = field(default_factory=dict)      # status -> runs
    labels: dict = field(default_factory=dict)      # label -> runs
    new_runs: int = 0
    reused_runs: int = 0
    wall_time: float = 0.0
    figures: list = field(default_factory=list)     # dicts: name, stem, png, pdf, caption
    errors: list = field(default_factory=list)      # (where, message)
    failed_runs: list = field(default_factory=list)  # (run_id, error)
    findings: list = field(default_factory=list)    # rows of studies.analysis.findings
    figure_names: list = field(default_factory=list)  # the spec's figures

    @property
    def runs(self):
        return sum(self.counts.values())

    def runs_line(self):
        counts = ", ".join(f"{self.counts.get(s, 0)} {s}" for s in STATUSES)
        return f"{self.runs} runs ({counts})"


def error_text(err):
    """'Type: message (file.py:line)' of an exception."""
    where = traceback.extract_tb(err.__traceback__)[-1] if err.__traceback__ else None
    at = f" ({Path(where.filename).name}:{where.lineno})" if where else ""
    return f"{type(err).__name__}: {err}{at}"


def _grid_text(spec, scale):
    fixed, axes, seeds = spec.at_scale(scale)
    parts = [f"{k} in {{{', '.join(map(str, v))}}}" for k, v in axes.items()]
    text = " x ".join(parts) if parts else "a single configuration"
    text += f"; seeds {seeds}"
    if fixed:
        text += "; fixed: " + ", ".join(f"{k} = {v}" for k, v in fixed.items())
    return text


def _label_counts(runs):
    if runs.empty or "labels" not in runs:
        return {}
    labels = runs["labels"].fillna("").astype(str).str.split(",").explode()
    labels = labels.str.split("@").str[0].str.strip()
    return {k: int(v) for k, v in labels[labels != ""].value_counts().items()}


def run_part(path, scale, results_root, workers=None, show_progress=True, pool=None):
    """(StudyReport with the spec's facts, its store path or None when the spec failed): runs
    the study's unfinished runs (on `pool` when given); never raises (errors land in
    .errors)."""
    from studies.run.runner import run_study
    from studies.spec import load_spec
    started = time.perf_counter()
    study = StudyReport(name=Path(path).stem, spec_path=str(path))
    try:
        spec = load_spec(path)
        study.name, study.description, study.section = spec.name, spec.description, spec.section
        study.grid, study.figure_names = _grid_text(spec, scale), list(spec.figures)
    except Exception as err:
        study.errors.append(("spec", error_text(err)))
        study.wall_time = time.perf_counter() - started
        return study, None
    store = Path(results_root) / spec.name
    try:
        summary = run_study(spec, scale=scale, out=store, workers=workers,
                            show_progress=show_progress, pool=pool)
        study.reused_runs, study.new_runs = summary.skipped, summary.total - summary.skipped
    except Exception as err:
        study.errors.append(("runs", error_text(err)))
    study.wall_time = time.perf_counter() - started
    return study, store


def draw_part(study, store, out):
    """The study with its run counts, labels, findings and figures (drawn to out/<name>/) from
    its store; never raises."""
    from studies.analysis.findings import findings_for
    from studies.plots import draw, load_current
    started = time.perf_counter()
    try:
        results = load_current(store)
    except Exception as err:
        study.errors.append(("store", error_text(err)))
        study.wall_time += time.perf_counter() - started
        return study
    runs = results.runs
    study.counts = {s: int((runs["status"] == s).sum()) for s in STATUSES}
    study.labels = _label_counts(runs)
    if "error" in runs:
        failed = runs[runs["status"] == "failed"]
        study.failed_runs = [(r.run_id, str(r.error)) for r in failed.itertuples()]
    try:
        study.findings = findings_for(study.name, results)
    except Exception as err:
        study.errors.append(("findings", error_text(err)))
    if not study.figure_names:
        study.errors.append(("figures", "the spec lists no figures (figures = [...])"))
    figure_errors, out = [], Path(out)
    try:
        made = draw(results, out / study.name, study.figure_names, errors=figure_errors)
    except Exception as err:
        made = []
        figure_errors.append(("figures", error_text(err)))
    for fig, png, pdf in made:
        study.figures.append({"stem": fig.stem, "caption": fig.caption,
                              "png": Path(png).relative_to(out).as_posix(),
                              "pdf": Path(pdf).relative_to(out).as_posix()})
    study.errors += [(f"figure {name}", message) for name, message in figure_errors]
    study.wall_time += time.perf_counter() - started
    return study


def _finished(study):
    done = Future()
    done.set_result(study)
    return done


def _collect(study, future):
    """The drawn study of `future`; a drawing process that died leaves an error, not a hole."""
    try:
        return future.result()
    except Exception as err:  # BrokenProcessPool: the drawing process is gone
        study.errors.append(("figures", f"the drawing process failed: {error_text(err)}"))
        return study


def report_studies(paths, scale, out, results_root, workers=None, show_progress=True):
    """One StudyReport per spec path of `paths` ({name: path}), in that order: each study run,
    then drawn (see the module docstring)."""
    from studies.run.runner import worker_pool
    from studies.run.workers import kill_pool, new_pool
    parts = []
    with ExitStack() as stack:
        pool = drawing = None
        if workers != 0:
            pool = stack.enter_context(worker_pool(workers))
            drawing = new_pool(1)
            stack.push(lambda kind, *_: kill_pool(drawing) if kind else None)
        for name, path in paths.items():
            if show_progress:
                print(f"== {name}", flush=True)
            study, store = run_part(path, scale, results_root, workers, show_progress, pool)
            if store is None:
                parts.append((study, _finished(study)))
            elif drawing is None:
                parts.append((study, _finished(draw_part(study, store, out))))
            else:
                parts.append((study, drawing.submit(draw_part, study, store, out)))
        drawn = [_collect(study, future) for study, future in parts]
        if drawing is not None:
            drawing.shutdown(wait=True)
        return drawn
