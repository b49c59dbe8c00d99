"""The `critical_batch` study at quick scale (SGD on digits, batch sizes 8..256, a factor-2 rate
grid per batch size, 3 seeds): steps to the target loss fall with the batch size while the
examples rise, the fit (S/S_min - 1)(E/E_min - 1) = 1 describes them, and its knee B_crit =
E_min/S_min lies within a factor 10 of the measured noise scale B_simple."""
import numpy as np
import pytest

from studies.analysis.findings.batching import BCRIT_FACTOR, critical_batch_summary
from _study_helpers import run_and_draw, verdicts


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return run_and_draw("critical_batch", "quick", tmp_path_factory.mktemp("critical_batch"))


@pytest.fixture(scope="module")
def summary(study):
    return critical_batch_summary(study[0])


def test_every_batch_size_reaches_the_target_at_a_rate_that_grows_with_it(summary):
    steps = summary["steps_mean"]
    assert list(steps.index) == [8, 16, 32, 64, 128, 256]
    rates = [summary["best_lr"][b] for b in steps.index]
    assert rates == sorted(rates) and rates[-1] > rates[0]   # larger batches take larger steps
    s = steps.to_numpy()
    assert np.all(np.diff(s) < 0) and s[0] > 4 * s[-1]       # fewer steps with larger batches
    examples = s * steps.index.to_numpy()
    assert examples[-1] > 2 * examples[0]                    # ... but more examples


def test_fit_and_noise_scale(summary):
    pooled = summary["pooled"]
    assert pooled["S_min"] > 0 and pooled["E_min"] > 0 and pooled["rms"] < 0.3
    assert 8 < pooled["B_crit"] < 256                        # the knee lies inside the grid
    for seed, v in summary["per_seed"].items():
        assert np.isfinite(v["B_simple"]) and v["B_simple"] > 0, seed
        assert 1 / BCRIT_FACTOR <= v["B_crit"] / v["B_simple"] <= BCRIT_FACTOR, (seed, v)


def test_figure_states_the_fit(study):
    results, figs, _ = study
    fig = figs["critical_batch"]
    assert fig.numbers["pooled"]["B_crit"] == critical_batch_summary(results)["pooled"]["B_crit"]
    assert "B_crit" in fig.caption and "B_simple" in fig.caption and "Verdict:" in fig.caption


def test_finding_critical_batch(study):
    rows, verdict = verdicts("critical_batch", study[0])
    assert verdict == ["reproduced", "reproduced"]
