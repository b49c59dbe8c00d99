"""The `glorot2010` study (Glorot & Bengio 2010): at smoke scale the gradient picture at
initialization; at quick scale the top sigmoid layer pushed toward 0 during training."""
import pytest
from _study_helpers import run_and_draw, verdicts

from studies.analysis.findings.common import runs_with
from studies.plots import current


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    return run_and_draw("glorot2010", "smoke", tmp_path_factory.mktemp("glorot_smoke"))


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    return run_and_draw("glorot2010", "quick", tmp_path_factory.mktemp("glorot_quick"))


def test_every_figure_is_drawn(smoke):
    assert smoke[2] == {"glorot_activations", "glorot_gradients",
                        "glorot_gradient_distributions", "glorot_saturation"}


def test_back_propagated_gradients_narrow_toward_the_input_under_the_standard_init(smoke):
    numbers = smoke[1]["glorot_gradient_distributions"].numbers
    for act in ("sigmoid", "tanh"):
        standard = numbers[act]["glorot_standard"]["spread_ratio_first_top"]
        normalized = numbers[act]["xavier_uniform"]["spread_ratio_first_top"]
        assert standard < 0.5 * normalized, (act, standard, normalized)


def test_deep_sigmoid_standard_init_first_layer_gradient_far_below_last(smoke):
    results = smoke[0]
    runs = results.runs
    ids = runs[(runs["activation"] == "sigmoid") & (runs["init"] == "glorot_standard")]["run_id"]
    layers = results.layers[results.layers["run_id"].isin(ids) & (results.layers["step"] == 0)]
    for _, run in layers.groupby("run_id"):
        norms = run.sort_values("layer")["w_grad_norm"].to_numpy()
        assert norms[0] < 1e-2 * norms[-1]
    numbers = smoke[1]["glorot_gradients"].numbers
    assert numbers["sigmoid"]["glorot_standard"]["w_grad_ratio_first_last"] < 1e-2


def test_normalized_init_keeps_backpropagated_gradients_more_even(smoke):
    numbers = smoke[1]["glorot_gradients"].numbers
    for act in ("sigmoid", "tanh"):
        standard = numbers[act]["glorot_standard"]["delta_ratio_first_top"]
        normalized = numbers[act]["xavier_uniform"]["delta_ratio_first_top"]
        assert normalized > 2 * standard, act


def test_tanh_activations_shrink_with_depth_under_standard_init(smoke):
    numbers = smoke[1]["glorot_activations"].numbers["tanh"]
    standard = numbers["glorot_standard"]["a_std_per_layer"]
    normalized = numbers["xavier_uniform"]["a_std_per_layer"]
    assert standard[-1] < 0.3 * standard[0]
    assert standard[-1] / standard[0] < normalized[-1] / normalized[0]


def test_top_sigmoid_layer_is_pushed_toward_zero(quick):
    top = quick[1]["glorot_saturation"].numbers["sigmoid"]["glorot_standard"]
    assert top["top_mean_init"] == pytest.approx(0.5, abs=0.05)
    assert top["top_mean_final"] < 0.15
    assert top["first_step_top_below"] is not None


def test_finding_glorot2010_reproduced(quick):
    rows, verdict = verdicts("glorot2010", quick[0])
    assert verdict == ["reproduced", "reproduced"]
