"""studies/report/kernel_checks.py: the section 4 gradient check is below its documented bounds,
its rows and figure have the expected structure, the backward-cost caption and findings follow
the fit, and build_report places the part under section 4 with its findings rows."""
import functools

import numpy as np
import pytest

from studies.analysis.findings import COLUMNS
from studies.bench.breakdown import linear_fit
from studies.report import build as R
from studies.report import kernel_checks as K

ACTIVATIONS = ("tanh", "relu")


@pytest.fixture(scope="module")
def check_rows():
    return K.gradient_check(ACTIVATIONS)


def test_gradient_check_errors_are_below_the_documented_bounds(check_rows):
    layers = len(K.SIZES) - 1
    assert len(check_rows) == len(ACTIVATIONS) * len(K.DTYPES) * layers
    for r in check_rows:
        assert np.isfinite(r["error"]) and r["error"] <= K.BOUNDS[r["dtype"]], r
    f32 = [r for r in check_rows if r["dtype"] == "float32"]
    f64 = [r for r in check_rows if r["dtype"] == "float64"]
    assert all(r["floor"] == 0.0 for r in f64)
    # float32 results cannot beat rounding the exact gradient to float32
    assert all(0 < r["floor"] <= 2 * r["error"] for r in f32)
    assert max(r["error"] for r in f64) < min(r["error"] for r in f32)


def test_gradient_check_figure_and_findings(check_rows, tmp_path):
    png, pdf, caption, numbers = K.gradient_check_figure(check_rows, tmp_path / "gc")
    assert (tmp_path / "gc.png").stat().st_size > 0 and pdf.endswith(".pdf")
    assert caption.endswith("reproduced.") and "not reproduced" not in caption
    assert numbers["float64"]["max_error"] == max(r["error"] for r in check_rows
                                                  if r["dtype"] == "float64")
    rows = K.findings(numbers, {"r2": 0.999, "slope": 1e-9, "intercept": 0.0})
    assert [r["verdict"] for r in rows] == ["reproduced", "reproduced"]
    assert all(set(r) == set(COLUMNS) for r in rows)
    bad = dict(numbers, float64=dict(numbers["float64"], max_error=1.0))
    rows = K.findings(bad, {"r2": 0.5, "slope": 1e-9, "intercept": 0.0})
    assert [r["verdict"] for r in rows] == ["partly", "not reproduced"]


def test_backward_cost_caption_follows_the_fit_on_synthetic_rows():
    params = np.array([1000, 4000, 9000, 16000])
    seconds = 2e-6 + 3e-9 * params
    fit = linear_fit(params, seconds)
    assert fit["slope"] == pytest.approx(3e-9) and fit["r2"] == pytest.approx(1.0)
    rows = [{"width": w, "params": int(p), "seconds": s, "dtype": "float64", "batch": 64}
            for w, p, s in zip((10, 20, 30, 40), params, seconds)]
    caption = K.backward_cost_caption(rows, fit)
    assert "b = 3 ns per parameter" in caption and "R^2 = 1.0000" in caption
    assert caption.endswith(": reproduced.")
    noisy = linear_fit(params, [1.0, 0.0, 1.0, 0.0])
    assert K.backward_cost_caption(rows, noisy).endswith("not reproduced.")


def test_report_places_the_kernel_checks_under_section_4(tmp_path, monkeypatch):
    small = functools.partial(K.kernel_checks_part, widths=(16, 32, 48), activations=("tanh",),
                              min_time=1e-4)
    monkeypatch.setattr(R, "kernel_checks_part", small)
    summary = R.build_report(scale="smoke", out=tmp_path / "report", show_progress=False,
                             only=[K.NAME], spec_paths={})
    (part,) = summary.studies
    assert part.name == K.NAME and part.section == "4" and not part.errors
    assert [f["stem"] for f in part.figures] == ["gradient_check", "backward_cost"]
    assert (tmp_path / "report" / part.figures[0]["png"]).exists()
    md = (tmp_path / "report" / "index.md").read_text()
    assert "## 4 Backpropagation" in md and "backpropagation gives the exact gradient" in md
    csv = (tmp_path / "report" / "findings.csv").read_text()
    assert csv.count(K.NAME) == 2
