"""The `batchnorm` study at quick scale (Ioffe & Szegedy's 3x100 sigmoid MLP, batch 60, SGD,
1,000 steps on MNIST-1D, 3 seeds, a 5-point rate grid): each net at its own best rate, batch
norm lifts test accuracy at a fixed step count, and the input distribution of a sigmoid unit
stays put with batch norm while it drifts without."""
import pytest
import scipy.linalg  # noqa: F401  (loads SciPy's BLAS, so the runner's 1-thread limit holds)

from studies.plots import batchnorm as B
from studies.plots import draw
from studies.analysis.findings.common import at_best_rates, runs_with
from studies.analysis.findings.training import highest_learning_rate
from _study_helpers import stored_study, verdicts


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    results = stored_study("batchnorm", "quick", tmp_path_factory.mktemp("batchnorm"))
    assert len(results.runs) == 30
    return results


def test_batchnorm_lifts_accuracy_at_a_fixed_step_count(results):
    runs = at_best_rates(results, ("batchnorm",))[0].runs
    with_bn = runs[runs["batchnorm"]]["final_test_accuracy"]
    without = runs[~runs["batchnorm"]]["final_test_accuracy"]
    assert with_bn.min() > without.max() + 0.08, (with_bn.tolist(), without.tolist())
    assert with_bn.mean() > without.mean() + 0.12
    # and it gets there sooner: the first step at which the seed mean reaches 40%
    table, _ = B.accuracy_table(results)
    reach = {bn: B.first_step_reaching(t["steps"], t["acc"].mean(axis=0), 0.4)
             for bn, t in table.items()}
    assert reach[True] is not None
    assert reach[False] is None or reach[True] < reach[False]


def test_unit_input_distribution_is_stable_only_with_batchnorm(results):
    drift = B.unit_drift(results)
    assert len(drift) == 6
    stable = [v for (bn, _), v in drift.items() if bn]
    drifting = [v for (bn, _), v in drift.items() if not bn]
    assert max(stable) < 1.0 < 5.0 < min(drifting)


def test_figures_are_drawn(results, tmp_path):
    made = draw(results, tmp_path)
    assert {fig.stem for fig, _, _ in made} == {"batchnorm_accuracy", "batchnorm_unit_input"}
    for fig, _, _ in made:
        assert (tmp_path / f"{fig.stem}.png").stat().st_size > 0
        assert (tmp_path / f"{fig.stem}.pdf").stat().st_size > 0
    accuracy = next(fig for fig, _, _ in made if fig.stem == "batchnorm_accuracy")
    assert "Batch norm lifts accuracy by" in accuracy.caption


def test_finding_batchnorm(results):
    rows, verdict = verdicts("batchnorm", results)
    tuned, best = at_best_rates(results, ("batchnorm",))
    for key, (lr, grid, inside) in best.items():
        assert inside and len(grid) >= 5, (key, lr, grid)
    runs = runs_with(tuned, ["batchnorm"])
    assert runs[runs["batchnorm"]]["end_test_accuracy"].min() > \
        runs[~runs["batchnorm"]]["end_test_accuracy"].max()
    assert verdict[:2] == ["reproduced", "reproduced"]
    # the higher-rate claim, as the grid shows it: the verdict follows the largest rate at
    # which each net still learns on every seed
    every = runs_with(results, ["batchnorm", "lr"])
    top = {bn: highest_learning_rate(every, batchnorm=bn) for bn in (True, False)}
    assert verdict[2] == ("reproduced" if top[True] > top[False] else "not reproduced")
    assert f"BN {top[True]:g}, plain {top[False]:g}" in rows[2]["measured"]
