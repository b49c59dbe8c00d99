"""The `gd_variants` study (report sec. 5.1) at quick scale: per epoch and per sample processed,
stochastic and mini-batch descent are far ahead of batch descent."""
import numpy as np
import pytest
from _study_helpers import run_and_draw, verdicts

from studies.analysis.findings.common import runs_with
from studies.plots import current


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return run_and_draw("gd_variants", "quick", tmp_path_factory.mktemp("gd_variants"))


def _by_batch(numbers):
    out = {}
    for name, v in numbers.items():
        key = 0 if name.startswith("batch GD") else 1 if name.startswith("SGD") else 32
        out[key] = v
    return out


def test_figure_and_variant_names(study):
    assert study[2] == {"gd_variants"}
    names = set(study[1]["gd_variants"].numbers)
    assert names == {"batch GD (480 rows)", "SGD (1 row)", "mini-batch (32 rows)"}


def test_epochs_and_samples_follow_the_batch_size(study):
    results = study[0]
    runs = results.runs.set_index("run_id")
    for run_id, hist in results.history.groupby("run_id"):
        batch = int(runs.loc[run_id, "batch_size"])
        last = hist.sort_values("step").iloc[-1]
        rows_per_epoch = 480 if batch == 0 else 480 // batch * batch
        steps_per_epoch = rows_per_epoch // (480 if batch == 0 else batch)
        assert last["epoch"] == pytest.approx(last["step"] / steps_per_epoch)
        assert np.all(np.diff(hist.sort_values("step")["train_time"]) >= 0)


def test_small_batches_are_ahead_per_epoch_and_per_sample(study):
    v = _by_batch(study[1]["gd_variants"].numbers)
    assert v[1]["loss_after_1_epoch"] < v[0]["loss_after_1_epoch"]
    assert v[32]["loss_after_1_epoch"] < v[0]["loss_after_1_epoch"]
    samples = "samples_to_loss_0.5"
    assert v[32][samples] < 0.2 * v[0][samples]
    assert v[1][samples] < v[32][samples]


def test_finding_gd_variants_reproduced(study):
    rows, verdict = verdicts("gd_variants", study[0])
    assert verdict == ["reproduced", "reproduced"]
    runs = runs_with(current(study[0]), ["batch_size"])
    end = runs.groupby("batch_size")["end_loss"].mean()
    assert end[32] < end[1] and end[0] < end[1]
