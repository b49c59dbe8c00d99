"""The `mean_field` study at quick scale (48 wide random nets at initialization, ~20-30 s on 2
cores): the measured per-layer log growth of ||dL/dz_l||^2 follows the mean-field log chi_1
(Poole et al. 2016; Schoenholz et al. 2017) within a few hundredths, for tanh and ReLU on both
sides of the order-to-chaos line, and every figure is drawn."""
import math

import numpy as np
import pytest

from studies.theory import mean_field as theory
from studies.plots import draw
from studies.plots import mean_field as M
from studies.run.runner import run_study
from studies.spec import load_spec
from studies.store import load
from _study_helpers import verdicts

TOLERANCE = 0.03   # |measured - predicted| log chi_1, mean over seeds


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("mean_field")
    summary = run_study(load_spec("mean_field"), "quick", out=out, workers=2,
                        show_progress=False)
    # Runs only need step 0; a run stopped as diverged after it (ReLU at sigma_w2 = 4, whose
    # loss is huge from the start) is measured like the others.
    assert summary.counts.get("failed", 0) == 0
    results = load(out)
    step0 = results.layers[results.layers["step"] == 0]
    assert set(step0["run_id"]) == set(results.runs["run_id"])
    assert np.isfinite(step0["delta_norm"]).all()
    return results


def test_measured_chi1_follows_theory(results):
    table, failed = M.measure(results)
    assert failed == 0
    summary = M.summary_table(table)
    assert set(summary["activation"]) == {"tanh", "relu"}
    assert len(summary) == 16 and (summary["seeds"] == 3).all()
    worst = summary.loc[summary["error"].abs().idxmax()]
    assert summary["error"].abs().max() < TOLERANCE, worst.to_dict()
    # every single seed within twice the tolerance
    per_run = table["measured"] - table["predicted"]
    assert per_run.abs().max() < 2 * TOLERANCE


def test_relu_chi1_is_half_sigma_w2_and_tanh_critical_point(results):
    table, _ = M.measure(results)
    summary = M.summary_table(table)
    relu = summary[summary["activation"] == "relu"]
    np.testing.assert_allclose(np.exp(relu["predicted"]), relu["sigma_w2"] / 2, rtol=1e-12)
    tanh_crit = theory.critical_sigma_w2(0.05, "tanh")
    assert abs(tanh_crit - 1.76) < 0.01
    near = summary[(summary["activation"] == "tanh") & (summary["sigma_w2"] == 1.76)]
    assert abs(float(near["measured"].iloc[0])) < TOLERANCE   # critical: no growth, no decay


def test_phase_is_read_correctly_off_the_gradients(results):
    table, _ = M.measure(results)
    summary = M.summary_table(table)
    clear = summary[summary["predicted"].abs() > 0.05]
    assert (np.sign(clear["measured"]) == np.sign(clear["predicted"])).all()


def test_weight_gradient_slope_is_not_what_chi1_predicts(results):
    """Why the study measures delta: for ReLU with sigma_b2 > 0 and sigma_w2 > 2 the
    activations keep growing with depth, so ||dL/dW_l|| = ||delta_l a_{l-1}^T|| does not
    follow chi_1 (its slope is off by about log(sigma_w2/2)), while ||delta_l|| does."""
    layers = results.layers[results.layers["step"] == 0].merge(
        results.runs[["run_id", "activation", "sigma_w2", "depth"]], on="run_id")
    run = layers[(layers["activation"] == "relu") & (layers["sigma_w2"] == 3.0)]
    rid = run["run_id"].iloc[0]
    g = run[run["run_id"] == rid].sort_values("layer")
    fit = M.fit_layers(int(g["depth"].iloc[0]))
    w = np.log(g.set_index("layer")["w_grad_norm"].reindex(fit).to_numpy() ** 2)
    d = np.log(g.set_index("layer")["delta_norm"].reindex(fit).to_numpy() ** 2)
    predicted = math.log(1.5)
    assert abs(-np.polyfit(fit, d, 1)[0] - predicted) < TOLERANCE
    assert abs(-np.polyfit(fit, w, 1)[0] - predicted) > 0.2


def test_figures_are_drawn_with_the_worst_setting_in_the_caption(results, tmp_path):
    made = draw(results, tmp_path)
    stems = {fig.stem for fig, _, _ in made}
    assert stems == {"mean_field_profiles", "mean_field_chi1", "mean_field_phase",
                     "mean_field_correlation"}
    for fig, png, pdf in made:
        assert (tmp_path / f"{fig.stem}.png").stat().st_size > 0
        assert (tmp_path / f"{fig.stem}.pdf").stat().st_size > 0
    chi1 = next(fig for fig, _, _ in made if fig.stem == "mean_field_chi1")
    # the caption names the worst setting; the full table is in the figure and its numbers
    assert "Largest |measured - predicted| log chi_1" in chi1.caption and " vs " in chi1.caption
    he = [r for r in chi1.numbers["table"] if r["activation"] == "relu" and r["sigma_w2"] == 2.0]
    assert len(he) == 1 and abs(he[0]["chi1_measured"] - 1.0) < 0.05
    assert chi1.numbers["max_abs_log_error"] < TOLERANCE
    corr = next(fig for fig, _, _ in made if fig.stem == "mean_field_correlation")
    xi = corr.numbers["xi_c"]
    assert all(0 < v < math.inf for v in xi["tanh"].values())     # tanh: both phases
    assert math.isnan(xi["relu"]["2.5"]) and math.isnan(xi["relu"]["4"])  # ReLU: no chaos
    assert xi["relu"]["1"] == pytest.approx(-1 / math.log(0.5), rel=1e-12)
    phase = next(fig for fig, _, _ in made if fig.stem == "mean_field_phase")
    assert phase.numbers["same_phase"] == phase.numbers["configurations"]


def test_finding_mean_field_reproduced(results):
    rows, verdict = verdicts("mean_field", results)
    assert verdict == ["reproduced", "reproduced"]
