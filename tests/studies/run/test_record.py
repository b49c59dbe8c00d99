"""A run's record (studies.run.record through the chunk driver): what stopped a diverged run is
stored, so an exploding gradient is told apart from a numerically invalid update."""
import pytest

from kernels.layout import DIVERGED_UPDATE, DIVERGENCE_CAUSES
from studies.config import resolve
from studies.run.execute import train_run

TINY = {"dataset": "spirals", "n_samples": 120, "width": 6, "depth": 1, "steps": 6,
        "metrics_every": 3, "batch_size": 16, "eval_rows": 32, "dtype": "float64",
        "optimizer": "sgd", "activation": "tanh"}


def test_a_healthy_run_has_no_divergence_cause():
    run, _, _ = train_run(resolve({**TINY, "lr": 0.05}))
    assert run["status"] == "completed" and run["divergence_cause"] == ""


def test_an_overflowing_update_is_stored_as_such_and_not_as_an_exploding_gradient():
    # weight decay 1e308 on weights of O(1): the gradient is finite, lr (g + wd theta) is not
    run, history, layers = train_run(resolve({**TINY, "lr": 10.0, "weight_decay": 1e308}))
    assert run["status"] == "diverged"
    assert run["divergence_cause"] == DIVERGENCE_CAUSES[DIVERGED_UPDATE]
    assert "diverged@" in run["labels"] and "exploding" not in run["labels"]
    assert history["grad_norm"].notna().all() and (history["grad_norm"] < 1e10).all()


@pytest.mark.parametrize("lr", [1e3])
def test_a_blown_up_loss_is_stored_with_its_cause(lr):
    run, _, _ = train_run(resolve({**TINY, "lr": lr, "activation": "relu"}))
    assert run["status"] == "diverged"
    assert run["divergence_cause"] in (*DIVERGENCE_CAUSES.values(),
                                       "loss above the divergence factor")
