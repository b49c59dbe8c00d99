"""The `vanishing` study (report sec. 8) at smoke scale: it runs, draws its figures, and its
finding function sees sigmoid's first-layer gradient fall by decades with depth while ReLU
with He init keeps it."""
import pytest
from _study_helpers import run_and_draw, verdicts

from studies.analysis.findings.common import first_layer_ratio, runs_with
from studies.plots import current


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return run_and_draw("vanishing", "smoke", tmp_path_factory.mktemp("vanishing"))


def test_every_figure_is_drawn(study):
    assert study[2] == {"vanishing_profiles", "vanishing_ratio", "vanishing_heatmap",
                        "update_ratio_layers"}


def test_finding_gradient_ratio_reproduced_at_smoke_scale(study):
    rows, verdict = verdicts("vanishing", study[0])
    assert verdict[0] == "reproduced"
    # one shared rate: the training row and the captions say so, and claim no more
    assert rows[1]["claim"].startswith("at one shared, untuned SGD rate (lr 0.05)")
    assert "All nets share one untuned SGD rate (lr 0.05)" in study[1]["vanishing_ratio"].caption
    results = current(study[0])
    runs = runs_with(results, ["depth", "activation", "init"])
    runs["r1"] = runs["run_id"].map(first_layer_ratio(results))
    sig = runs[runs["activation"] == "sigmoid"].groupby("depth")["r1"].max()
    he = runs[(runs["activation"] == "relu") & (runs["init"] == "he_normal")]["r1"]
    assert sig[8] < 1e-3 < sig[2] and he.between(0.1, 10).all()
