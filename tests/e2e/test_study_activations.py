"""The `activations` study (report sec. 7) at smoke scale: it runs, draws its figures, and shows
the sigmoid's vanishing gradient against the ReLU family's even one."""
import numpy as np
import pytest
from _study_helpers import run_and_draw, verdicts

from studies.analysis.findings.common import runs_with
from studies.plots import current

from studies.plots.activations import ELEMENTWISE


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return run_and_draw("activations", "smoke", tmp_path_factory.mktemp("activations"))


def test_every_figure_is_drawn(study):
    assert study[2] == {"activation_functions", "activation_layers", "activation_training"}


def test_analytic_panel_covers_every_elementwise_activation(study):
    numbers = study[1]["activation_functions"].numbers
    assert set(numbers) == set(ELEMENTWISE) and "softmax" not in numbers
    assert numbers["sigmoid"]["max_derivative"] == pytest.approx(0.25, abs=1e-3)
    assert numbers["tanh"]["max_derivative"] == pytest.approx(1.0, abs=1e-3)
    assert numbers["relu"]["derivative_at_-4"] == 0.0


def test_sigmoid_gradient_vanishes_toward_the_input_and_relu_does_not(study):
    ratios = {name: v["grad_ratio_first_last"]
              for name, v in study[1]["activation_training"].numbers.items()}
    assert ratios["sigmoid"] < 0.02            # 5 sigmoid layers: sigma' <= 1/4 per layer
    assert 0.2 < ratios["relu"] < 5.0          # He init keeps ReLU gradients even
    assert ratios["relu"] > 30 * ratios["sigmoid"]


def test_layer_statistics_at_init_are_stored_per_hidden_layer(study):
    results = study[0]
    layers = results.layers[results.layers["step"] == 0]
    runs = results.runs.set_index("run_id")
    for run_id, rows in layers.groupby("run_id"):
        depth = int(runs.loc[run_id, "depth"])
        assert sorted(rows["layer"]) == list(range(1, depth + 2))
        hidden = rows[rows["layer"] <= depth]
        assert np.isfinite(hidden[["a_p15", "a_p50", "a_p85", "a_p98"]].to_numpy()).all()
    numbers = study[1]["activation_layers"].numbers
    # sigmoid outputs sit in (0, 1) around 1/2 with a small spread; tanh's shrink with depth
    assert numbers["sigmoid"]["a_std_first"] < 0.3
    assert numbers["tanh"]["a_std_top"] < numbers["tanh"]["a_std_first"]


def test_finding_activations_at_smoke_scale(study):
    rows, verdict = verdicts("activations", study[0])
    # smoke has no linear net, so two rows: sigmoid's first-layer gradient is the smallest,
    # and sigmoid trains slowest, tanh next, the ReLU family best
    assert verdict == ["reproduced", "reproduced"]
    runs = runs_with(current(study[0]), ["activation"])
    loss = runs.groupby("activation")["end_loss"].mean()
    assert loss.idxmax() == "sigmoid" and loss["tanh"] > max(loss["relu"], loss["gelu"])
