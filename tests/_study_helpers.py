"""Shared steps of the bundled-study tests: run a study at a scale into a temporary store
(serially, in this process), draw every figure its spec lists, and index them by stem."""
from pathlib import Path

import studies
from studies.plots import current, draw
from studies.run.runner import run_study
from studies.spec import load_spec


def stored_study(name, scale, out, workers=0):
    """The loaded store of bundled study `name` run at `scale` into `out` (`workers` as
    run_study's); asserts that every run finished (completed or diverged)."""
    summary = run_study(load_spec(name), scale, out=out, workers=workers, show_progress=False)
    results = studies.load(out)
    assert summary.counts.get("failed", 0) == 0, results.runs["error"].tolist()
    return results


def run_and_draw(name, scale, tmp_path):
    """(Results, {stem: Figure}) of bundled study `name` at `scale`; asserts that every run
    finished (completed or diverged) and that every listed figure wrote a PNG and a PDF."""
    spec = load_spec(name)
    out = Path(tmp_path) / name
    results = current(stored_study(name, scale, out))
    made = draw(results, out / "figures")
    stems = {Path(png).stem for _, png, _ in made}
    assert len(made) >= len(spec.figures) > 0
    for fig, png, pdf in made:
        assert Path(png).stat().st_size > 1000 and Path(pdf).stat().st_size > 1000
        assert fig.caption and fig.numbers, fig.stem
    return results, {fig.stem: fig for fig, _, _ in made}, stems


def verdicts(name, results):
    """(rows, [verdict, ...]) of study `name`'s finding function on its latest sweep: the same
    function the report's findings table calls."""
    from studies.analysis.findings import findings_for
    rows = findings_for(name, current(results))
    assert rows and all(r["study"] == name and r["measured"] for r in rows)
    return rows, [r["verdict"] for r in rows]
