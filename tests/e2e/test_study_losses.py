"""The `losses` study (report sec. 3) at quick scale (MNIST-1D, every (objective, gain) at its
own best rate of a 5-point grid): MSE on saturated sigmoid outputs gets a vanishing output
gradient and trains far slower than softmax cross-entropy."""
import numpy as np
import pytest
from _study_helpers import run_and_draw, verdicts

from studies.analysis.findings.common import at_best_rates, runs_with
from studies.plots import current

from studies.plots.losses import analytic_gradients


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return run_and_draw("losses", "quick", tmp_path_factory.mktemp("losses"))


def test_analytic_gradients_match_finite_differences():
    z = np.linspace(-8, 8, 41)
    h = 1e-5
    for objective, (loss, grad) in analytic_gradients(z).items():
        plus, minus = analytic_gradients(z + h)[objective][0], analytic_gradients(z - h)[objective][0]
        np.testing.assert_allclose(grad, (plus - minus) / (2 * h), atol=1e-6, err_msg=objective)


def test_saturated_wrong_output_gradient(study):
    g = study[1]["loss_gradients"].numbers["grad_at_-6"]
    assert g["cross_entropy+softmax"] > 0.99
    assert g["mse+sigmoid"] < 0.01 and g["mse+softmax"] < 0.01


def test_gain_two_saturates_the_sigmoid_outputs_at_init(study):
    numbers = study[1]["loss_gradients"].numbers
    assert numbers["measured_logit_std"]["2"] > 4 * numbers["measured_logit_std"]["1"]
    assert numbers["measured_sigmoid_saturated"]["2"] > 0.5
    assert numbers["measured_sigmoid_saturated"]["1"] < 0.1


def test_cross_entropy_trains_faster_than_mse_on_saturated_outputs(study):
    curves = study[1]["loss_curves"].numbers
    saturated = curves["gain 2"]
    ce = saturated["cross_entropy+softmax"]["final_test_accuracy"]
    assert ce > 0.3  # 3x chance on MNIST-1D's 10 classes
    assert ce > saturated["mse+sigmoid"]["final_test_accuracy"] + 0.1
    # at the normal gain all three learn (4x chance)
    assert min(v["final_test_accuracy"] for v in curves["gain 1"].values()) > 0.4


def test_objective_runs_record_their_pairing(study):
    runs = study[0].runs
    assert set(runs["objective"]) == {"mse+sigmoid", "mse+softmax", "cross_entropy+softmax"}
    assert runs["loss"].isna().all() and runs["output_activation"].isna().all()


def test_objective_key_pairs_loss_and_output_and_rejects_conflicts():
    from studies.config import OBJECTIVES, build_network, resolve
    assert "cross_entropy+softmax" in OBJECTIVES and "cross_entropy+sigmoid" not in OBJECTIVES
    net = build_network(resolve({"objective": "mse+sigmoid", "depth": 1, "width": 4}), 3, 2,
                        classification=True)
    assert net.loss_name == "mse" and net.output_activation == "sigmoid"
    with pytest.raises(ValueError, match="objective"):
        resolve({"objective": "mse+sigmoid", "loss": "mse"})
    with pytest.raises(ValueError, match="not allowed"):
        resolve({"objective": "cross_entropy+sigmoid"})


def test_finding_cross_entropy_classifies_best(study):
    rows, verdict = verdicts("losses", study[0])
    assert verdict == ["reproduced"]
    tuned, best = at_best_rates(current(study[0]), ("objective", "gain"))
    assert all(len(grid) >= 5 for _, grid, _ in best.values())
    runs = runs_with(tuned, ["objective", "gain"])
    acc = runs.groupby(["gain", "objective"])["end_test_accuracy"].mean()
    for gain in (1.0, 2.0):
        assert acc[gain].idxmax() == "cross_entropy+softmax"
    # every objective that learns has its best rate strictly inside the grid; MSE on the
    # saturated sigmoid outputs learns at none, and the finding says so
    assert "mse+sigmoid gain 2 learns at no rate" in rows[0]["measured"]
    assert all(inside for key, (_, _, inside) in best.items() if key != ("mse+sigmoid", 2.0))
