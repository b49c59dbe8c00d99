"""A run's record (studies.run.record through the chunk driver): what stopped a diverged run is
stored, so an exploding gradient is told apart from a numerically invalid update."""
import numpy as np
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


def _first_divergent_by_means(chunks, initial, window):
    """(chunk, index) of the first divergent step by np.mean over the window, chunk by chunk."""
    from studies.analysis.labels import diverged_now
    recent = []
    for c, losses in enumerate(chunks):
        for i, value in enumerate(losses):
            recent.append(float(value))
            del recent[:-window]
            if not np.isfinite(value) or diverged_now(float(np.mean(recent)), initial):
                return c, i
    return None


@pytest.mark.parametrize("window", [1, 2, 3, 7, 8, 12])
def test_the_divergence_test_equals_running_means_by_numpy(window):
    """The vector test (window 1) and the ordered sums (short windows) fire at the step that
    np.mean over the window fires at, across chunk boundaries, on losses near the bar."""
    from studies.run.record import _first_divergent
    rng = np.random.default_rng(window)
    for trial in range(200):
        initial = float(rng.uniform(0.5, 3.0))
        losses = (initial * 10 * rng.uniform(0.7, 1.05, size=30)).astype(np.float32)
        if trial % 7 == 0:
            losses[rng.integers(30)] = np.nan if trial % 2 else np.inf
        chunks = np.split(losses, [11, 20])
        expected = _first_divergent_by_means(chunks, initial, window)
        recent, got = [], None
        for c, chunk in enumerate(chunks):
            bad = _first_divergent(chunk, initial, None, recent, window)
            if bad >= 0:
                got = (c, bad)
                break
        assert got == expected, (trial, got, expected)
