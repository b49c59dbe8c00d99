"""The `trainability` study at quick scale (105 small tanh nets on digits, seconds on 2 cores):
test accuracy over depth x sigma_w^2 follows the mean-field trainable depth 6 xi_c (Schoenholz
et al. 2017) on most cells, the figure is drawn, and the finding reads the same cells."""
import pytest

from studies.analysis.findings.mean_field import AGREEMENT, TRAINED_ACCURACY, \
    trainability_cells
from studies.plots import draw
from studies.spec import load_spec
from studies.theory import mean_field as theory
from _study_helpers import stored_study, verdicts


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return stored_study("trainability", "quick", tmp_path_factory.mktemp("trainability"), workers=2)


def test_cells_follow_the_trainable_depth(results):
    cells = trainability_cells(results)
    fixed, axes, seeds = load_spec("trainability").at_scale("quick")
    assert len(cells) == len(axes["depth"]) * len(axes["sigma_w2"])
    assert all(len(s) == len(seeds) for s in cells["seeds"])
    for r in cells.itertuples():
        assert r.limit == pytest.approx(theory.trainable_depth(r.sigma_w2, fixed["sigma_b2"],
                                                               "tanh"))
        assert r.trained == (r.accuracy > TRAINED_ACCURACY)
    # the shallowest nets train everywhere; in the ordered phase the deepest do not
    assert cells[cells["depth"] == min(axes["depth"])]["trained"].all()
    deep_ordered = cells[(cells["depth"] == max(axes["depth"])) & (cells["limit"] < 30)]
    assert len(deep_ordered) and not deep_ordered["trained"].any()
    assert (cells["trained"] == cells["predicted"]).mean() >= AGREEMENT


def test_figure_and_finding(results, tmp_path):
    (made,) = draw(results, tmp_path)
    fig, png, pdf = made
    assert fig.stem == "trainability_heatmap" and (tmp_path / "trainability_heatmap.png").exists()
    rows, verdict = verdicts("trainability", results)
    assert verdict == ["reproduced"]
    assert f"{fig.numbers['agreement']:.0%}" in rows[0]["measured"]
    assert "Verdict: reproduced (" in fig.caption
