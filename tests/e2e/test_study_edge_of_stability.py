"""The `edge_of_stability` study at quick scale (full-batch GD of a 2x16 tanh MLP on MNIST-1D,
MSE and cross-entropy, lr 0.3/0.4/0.6, 3 seeds, 600 steps): the sharpness starts below 2/lr,
rises to it and then hovers just above it, while the loss keeps falling non-monotonically
(Cohen et al. 2021, Fig. 1); the stored sharpness is the kernels' own on the stored state."""
import numpy as np
import pytest
from threadpoolctl import threadpool_limits
from _study_helpers import run_and_draw, verdicts

from studies.analysis.findings.curvature import eos_table
from studies.config import resolve
from studies.run.curvature_log import LANCZOS, estimator_seed
from studies.run.execute import build_run, dataset_for, training_data


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return run_and_draw("edge_of_stability", "quick", tmp_path_factory.mktemp("eos"))


def test_every_run_is_a_full_batch_run_with_the_sharpness_recorded(study):
    results = study[0]
    assert study[2] == {"edge_of_stability"}
    runs = results.runs
    assert len(runs) == 18 and (runs["status"] == "completed").all()
    assert (runs["batch_size"] == 0).all() and runs["curvature"].all()
    measured = results.history.dropna(subset=["sharpness"])
    assert sorted(measured["step"].unique()) == list(range(0, 601, 20))
    assert (measured["sharpness"] > 0).all() and measured["hessian_trace_se"].notna().all()
    assert results.history["noise_scale"].isna().all()  # gradient_noise is off here


def test_the_initial_sharpness_is_the_kernels_on_the_initial_network(study):
    task = study[0].manifest["grid"][0]
    config = resolve(task["config"])
    data = dataset_for(config)
    net = build_run(config, data)[0]
    x, _, y, _ = training_data(net, data, config)
    with threadpool_limits(limits=1):  # as the runner trains: one BLAS thread
        direct = net.sharpness(x, y, tol=config["sharpness_tol"],
                               max_iter=config["sharpness_max_iter"],
                               seed=estimator_seed(config["seed"], 0, LANCZOS))
    hist = study[0].history
    stored = hist[(hist["run_id"] == task["run_id"]) & (hist["step"] == 0)]["sharpness"]
    assert stored.item() == direct


def test_sharpness_rises_to_two_over_lr_and_hovers_there(study):
    table = eos_table(study[0])
    assert len(table) == 6 and all(len(seeds) == 3 for seeds in table.values())
    for (objective, lr), seeds in table.items():
        for m in seeds:
            assert m["initial"] < 0.95, (objective, lr, m)         # starts below 2/lr
            assert m["reach_step"] <= 300, (objective, lr, m)      # reaches it in the first half
            assert 0.95 < m["late_ratio"] < 1.3, (objective, lr, m)  # then hovers just above
    # a larger step reaches its (lower) threshold sooner
    for objective in ("mse+identity", "cross_entropy+softmax"):
        reach = [np.mean([m["reach_step"] for m in table[(objective, lr)]])
                 for lr in (0.3, 0.4, 0.6)]
        assert reach[0] > reach[1] > reach[2], (objective, reach)


def test_the_loss_falls_non_monotonically_at_the_edge(study):
    for key, seeds in eos_table(study[0]).items():
        for m in seeds:
            assert m["eos_falling"] and m["eos_rises"] >= 3, (key, m)
            assert m["eos_max_rise"] > 0.01, (key, m)  # rises of percent, not rounding


def test_figure_numbers_and_finding(study):
    numbers = study[1]["edge_of_stability"].numbers
    assert set(numbers) == {f"{name} lr {lr:g}" for name in ("MSE", "cross-entropy")
                            for lr in (0.3, 0.4, 0.6)}
    for v in numbers.values():
        assert v["reached_seeds"] == v["seeds"] == 3
        low, high = v["late_ratio_range"]
        assert 0.95 < low <= v["late_ratio"] <= high < 1.3
    rows, verdict = verdicts("edge_of_stability", study[0])
    assert verdict == ["reproduced"] * 3, [r["measured"] for r in rows]
