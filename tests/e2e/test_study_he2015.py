"""The `he2015` study (He et al. 2015) at quick scale: 30-layer plain ReLU nets stall with
Xavier init at every rate of the grid and train with He init at its best rate; Xavier halves
the signal variance per layer."""
import pytest
from _study_helpers import run_and_draw, verdicts

from studies.analysis.findings.common import at_best_rates, runs_with
from studies.plots import current


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return run_and_draw("he2015", "quick", tmp_path_factory.mktemp("he2015"))


def test_every_figure_is_drawn(study):
    assert study[2] == {"he_signal", "he_training"}


def test_xavier_halves_the_variance_per_layer_and_he_keeps_it(study):
    signal = study[1]["he_signal"].numbers
    assert signal["xavier_normal"]["depth 30"]["variance_ratio_per_layer"] == pytest.approx(
        0.5, abs=0.08)
    assert signal["he_normal"]["depth 30"]["variance_ratio_per_layer"] == pytest.approx(
        1.0, abs=0.15)


def test_he_trains_the_30_layer_net_while_xavier_stays_at_the_start(study):
    training = study[1]["he_training"].numbers
    xavier, he = training["xavier_normal"]["depth 30"], training["he_normal"]["depth 30"]
    assert abs(xavier["final_loss"] - xavier["initial_loss"]) < 0.02 * xavier["initial_loss"]
    assert he["final_loss"] < 0.6 * he["initial_loss"]
    assert he["final_loss"] < 0.6 * xavier["final_loss"]
    tuned, _ = at_best_rates(study[0], ("depth", "init"))
    assert not (tuned.runs["status"] == "diverged").any()


def test_both_inits_train_at_moderate_depth(study):
    training = study[1]["he_training"].numbers
    for init in ("xavier_normal", "he_normal"):
        assert training[init]["depth 8"]["relative_drop"] > 0.5, init


def test_finding_he2015_reproduced(study):
    rows, verdict = verdicts("he2015", study[0])
    assert verdict == ["reproduced"] * 3
    tuned, best = at_best_rates(current(study[0]), ("depth", "init"))
    for key in ((30, "he_normal"), (8, "he_normal"), (8, "xavier_normal")):
        lr, grid, inside = best[key]
        assert inside and len(grid) >= 5, (key, lr, grid)
        assert f"lr {lr:g}" in rows[2 if key[0] == 8 else 1]["measured"]
    runs = runs_with(tuned, ["depth", "init"])
    deep = runs[runs["depth"] == 30]
    he = deep[deep["init"] == "he_normal"]
    assert (he["end_loss"] < 0.6 * he["initial_loss"]).all()
    # Xavier at 30 layers learns at no rate of the grid
    every = runs_with(current(study[0]), ["depth", "init", "lr"])
    xavier = every[(every["depth"] == 30) & (every["init"] == "xavier_normal")]
    assert xavier["lr"].nunique() >= 5
    assert (xavier["end_loss"] > 0.95 * xavier["initial_loss"].clip(upper=2.3026)).all()
