"""studies.analysis.findings: one finding function per bundled study, verdicts that follow the
data (the same function flips its verdict when the stored numbers flip), the verdict rule, the
seed band, and the table's columns."""

import numpy as np
import pandas as pd
import pytest

from studies.analysis.findings import COLUMNS, VERDICTS, findings_for, known_studies, table, \
    verdict, verdict_line
from studies.analysis.findings.common import (at_best_rates, band, best_rates, inside_checks,
                                              rates_text, runs_with)
from studies.spec import bundled_specs
from studies.store import Results


def test_every_bundled_study_has_a_finding_function():
    assert set(known_studies()) == set(bundled_specs())


def test_verdict_rule():
    assert verdict([True, True]) == "reproduced"
    assert verdict([True, False]) == "partly"
    assert verdict([False, False]) == "not reproduced"
    assert verdict([]) == "not reproduced"
    assert VERDICTS == ("reproduced", "partly", "not reproduced")


def test_band_quotes_the_seed_range():
    assert band([1.0, 2.0, 3.0]) == "2 [1, 3]"
    assert band([0.5]) == "0.5 (1 seed)"
    assert band([]) == "n/a" and band([float("nan")]) == "n/a"


def _store(end_loss):
    """An optimizers store: {(optimizer, lr): [end train loss per seed]} (initial loss 2.3)."""
    runs, hist = [], []
    for (opt, lr), losses in end_loss.items():
        for seed, loss in enumerate(losses):
            run_id = f"{opt}-{lr}-{seed}"
            runs.append({"run_id": run_id, "optimizer": opt, "lr": lr, "seed": seed,
                         "status": "completed", "final_train_accuracy": 0.5})
            hist += [{"run_id": run_id, "step": 0, "train_loss": 2.3, "test_accuracy": 0.1},
                     {"run_id": run_id, "step": 100, "train_loss": loss,
                      "test_accuracy": 0.5}]
    return Results(runs=pd.DataFrame(runs), history=pd.DataFrame(hist),
                   layers=pd.DataFrame(), manifest={})


def _grid(adam_best, sgd_best):
    out = {}
    for opt, best in (("adam", adam_best), ("sgd", sgd_best)):
        for lr, factor in ((0.001, 3.0), (0.01, 1.0), (0.1, 2.0)):
            out[(opt, lr)] = [best * factor, best * factor * 1.1]
    return out


def test_optimizers_verdict_follows_the_stored_numbers():
    good = findings_for("optimizers", _store(_grid(adam_best=0.1, sgd_best=0.5)))
    assert [r["verdict"] for r in good] == ["reproduced"]
    assert "adam 0.105 [0.1, 0.11] at lr 0.01" in good[0]["measured"]
    bad = findings_for("optimizers", _store(_grid(adam_best=0.5, sgd_best=0.1)))
    assert bad[0]["verdict"] == "partly"  # best rates inside the grid, but Adam not the best
    edge = _grid(adam_best=0.1, sgd_best=0.5)
    edge[("sgd", 0.1)] = [0.01, 0.011]  # SGD's best at the grid's edge: under-powered
    assert findings_for("optimizers", _store(edge))[0]["verdict"] == "partly"


def test_rows_have_the_table_columns_and_caption_line():
    rows = findings_for("optimizers", _store(_grid(adam_best=0.1, sgd_best=0.5)))
    frame = table(rows)
    assert list(frame.columns) == list(COLUMNS) and len(frame) == 1
    assert verdict_line(rows) == "Verdict: reproduced (Adam converges fastest)."


def test_unknown_study_and_empty_store_say_why():
    empty = Results(runs=pd.DataFrame(), history=pd.DataFrame(), layers=pd.DataFrame(),
                    manifest={})
    assert findings_for("nosuch", empty)[0]["measured"] == "no finding function for this study"
    assert findings_for("optimizers", empty)[0] == {
        "study": "optimizers", "claim": "-", "source": "-", "criterion": "-",
        "measured": "no runs in the store", "verdict": "not reproduced"}


def _mnist1d(logistic, mlp):
    runs, hist = [], []
    for depth, accs in ((0, logistic), (2, mlp)):
        for seed, acc in enumerate(accs):
            run_id = f"d{depth}-{seed}"
            runs.append({"run_id": run_id, "depth": depth, "seed": seed, "status": "completed",
                         "final_train_accuracy": acc})
            hist.append({"run_id": run_id, "step": 10, "train_loss": 1.0, "test_accuracy": acc})
    return Results(runs=pd.DataFrame(runs), history=pd.DataFrame(hist), layers=pd.DataFrame(),
                   manifest={})


@pytest.mark.parametrize("logistic,mlp,expected", [
    ([0.31, 0.32, 0.33], [0.66, 0.67, 0.68], "reproduced"),
    ([0.31, 0.32, 0.33], [0.45, 0.46, 0.47], "partly"),       # MLP far below the README's 68%
    ([0.60, 0.61, 0.62], [0.45, 0.46, 0.47], "not reproduced")])
def test_mnist1d_verdict_follows_the_accuracies(logistic, mlp, expected):
    rows = findings_for("mnist1d", _mnist1d(logistic, mlp))
    assert rows[0]["verdict"] == expected
    assert f"MLP (depth 2) {np.mean(mlp):.3g}" in rows[0]["measured"]


def _eos_store(edge):
    """An edge_of_stability store: sharpness every 20 steps, loss every 5, over 400 steps; with
    edge=True the sharpness rises from half of 2/lr to 1.05 x 2/lr by step 100 and the loss
    falls with a 5% bump every 40 steps, else both stay smooth and the sharpness at half."""
    runs, hist = [], []
    for objective in ("mse+identity", "cross_entropy+softmax"):
        for lr in (0.2, 0.4):
            for seed in range(3):
                run_id = f"{objective}-{lr}-{seed}"
                runs.append({"run_id": run_id, "objective": objective, "lr": lr, "seed": seed,
                             "status": "completed"})
                for step in range(0, 401, 5):
                    ratio = min(0.5 + 0.0055 * step, 1.05) if edge else 0.5
                    loss = 1.0 - 0.001 * step + (0.05 if edge and step % 40 == 20 else 0.0)
                    hist.append({"run_id": run_id, "step": step, "train_loss": loss,
                                 "sharpness": ratio * 2 / lr if step % 20 == 0 else np.nan})
    return Results(runs=pd.DataFrame(runs), history=pd.DataFrame(hist), layers=pd.DataFrame(),
                   manifest={})


def test_edge_of_stability_verdict_follows_the_sharpness_and_loss():
    rows = findings_for("edge_of_stability", _eos_store(edge=True))
    assert [r["verdict"] for r in rows] == ["reproduced"] * 3
    assert "MSE lr 0.2: 1.05 [1.05, 1.05]" in rows[1]["measured"]
    flat = findings_for("edge_of_stability", _eos_store(edge=False))
    assert [r["verdict"] for r in flat] == ["not reproduced"] * 3


ENDS = {"flat": {0.01: 2.3001, 0.1: 2.2995, 1.0: 2.3003},
        "inside": {0.01: 1.5, 0.1: 0.4, 1.0: 0.9},
        "edge": {0.01: 2.0, 0.1: 1.0, 1.0: 0.3}}


def _rate_store(labels, ends=ENDS):
    """{method: {lr: end loss}} over lr 0.01, 0.1, 1 and 2 seeds (initial loss 2.3): 'flat' never
    learns (losses within noise of the start, 2.2995 at 0.1 the noise minimum), 'inside' learns
    best at 0.1, 'edge' best at 1. labels: store the run labels (stalled where the loss stays
    above 0.95 x 2.3), else leave them to the loss test. Layers: ||dL/dW_1|| / ||dL/dW_2|| at
    step 0 is 0.01 for a method whose name starts with 'sig', else 1."""
    runs, hist, layers = [], [], []
    for method, by_lr in ends.items():
        for lr, loss in by_lr.items():
            for seed in range(2):
                run_id = f"{method}-{lr}-{seed}"
                end = loss + 1e-4 * seed
                row = {"run_id": run_id, "activation": method, "lr": lr, "seed": seed,
                       "depth": 1, "status": "completed", "final_train_accuracy": 0.5}
                if labels:
                    row["labels"] = "stalled@0" if end > 0.95 * 2.3 else "healthy"
                runs.append(row)
                hist += [{"run_id": run_id, "step": 0, "train_loss": 2.3, "test_accuracy": 0.1},
                         {"run_id": run_id, "step": 100, "train_loss": end,
                          "test_accuracy": 0.5}]
                layers += [{"run_id": run_id, "step": 0, "layer": 1,
                            "w_grad_norm": 0.01 if method.startswith("sig") else 1.0},
                           {"run_id": run_id, "step": 0, "layer": 2, "w_grad_norm": 1.0}]
    return Results(runs=pd.DataFrame(runs), history=pd.DataFrame(hist),
                   layers=pd.DataFrame(layers), manifest={})


@pytest.mark.parametrize("labels", [True, False])
def test_a_method_that_never_learns_has_no_best_rate(labels):
    results = _rate_store(labels)
    best = best_rates(runs_with(results, ["activation", "lr"]), ("activation",))
    flat, inside, edge = best[("flat",)], best[("inside",)], best[("edge",)]
    assert not flat.learns and not flat.inside and flat.lr == 0.1  # least-bad, not "best"
    assert inside.learns and inside.inside and inside.lr == 0.1
    assert edge.learns and not edge.inside and edge.lr == 1.0
    lr, grid, is_inside = inside  # unpacks as (lr, grid, inside)
    assert (lr, grid, is_inside) == (0.1, [0.01, 0.1, 1.0], True)
    # the strictly-inside check covers the methods that learn and fails on the edge optimum
    assert sorted(inside_checks(best)) == [False, True]
    text = rates_text(best)
    assert "flat never learns at any rate of [0.01, 0.1, 1]" in text
    assert "inside lr 0.1" in text and "edge lr 1 (grid edge)" in text
    kept, _ = at_best_rates(results, ("activation",))
    assert sorted(kept.runs["run_id"]) == sorted(
        f"{m}-{lr}-{s}" for m, lr in (("flat", 0.1), ("inside", 0.1), ("edge", 1.0))
        for s in range(2))


def test_a_diverged_rate_counts_as_not_learning():
    runs = runs_with(_rate_store(labels=True), ["activation", "lr"])
    flat = runs["activation"] == "flat"
    runs.loc[flat & (runs["lr"] == 1.0), "status"] = "diverged"
    assert not best_rates(runs, ("activation",))[("flat",)].learns
    runs.loc[flat & (runs["lr"] == 0.01) & (runs["seed"] == 0), ["labels", "end_loss"]] = \
        ["healthy", 1.0]  # one run that learned: the method has a best rate
    assert best_rates(runs, ("activation",))[("flat",)].learns


@pytest.mark.parametrize("tanh,expected", [
    ({0.01: 1.9, 0.1: 0.8, 1.0: 1.2}, "reproduced"),
    ({0.01: 1.9, 0.1: 0.8, 1.0: 0.7}, "partly"),     # tanh's optimum on the grid's edge
    ({0.01: 1.9, 0.1: 0.2, 1.0: 1.2}, "partly")])    # tanh below ReLU
def test_activations_finding_takes_never_learning_as_slowest(tanh, expected):
    """sigmoid flat at every rate (its noise minimum is no best rate and is not held to the
    grid), ReLU with an inside optimum at 0.4: sigmoid slowest, since it learns nowhere."""
    results = _rate_store(True, {"sigmoid": ENDS["flat"], "relu": ENDS["inside"], "tanh": tanh})
    rows = [r for r in findings_for("activations", results) if "slowest" in r["claim"]]
    assert rows[0]["verdict"] == expected
    assert "sigmoid never learns at any rate of [0.01, 0.1, 1]" in rows[0]["measured"]
    assert findings_for("activations", results)[0]["verdict"] == "reproduced"  # r_1 smallest


def _vanishing_store(sigmoid_learns_at=None):
    """A vanishing store on a 3-rate grid (depths 2 and 4, 2 seeds): sigmoid's r_1 at init
    falls 0.05 -> 1e-4 and it stalls at every rate (or learns at sigmoid_learns_at); ReLU/He
    keeps r_1 = 1 and learns best at lr 0.1 (end/initial 0.2), worse at 0.01 and 1."""
    runs, hist, layers = [], [], []
    for act, init in (("sigmoid", "xavier_normal"), ("relu", "he_normal")):
        for depth in (2, 4):
            for lr in (0.01, 0.1, 1.0):
                for seed in range(2):
                    run_id = f"{act}-{depth}-{lr}-{seed}"
                    if act == "sigmoid":
                        end, label = (0.5, "healthy") if lr == sigmoid_learns_at else \
                            (2.29 + 0.001 * seed, "vanishing@0,stalled@0")
                        r1 = 0.05 if depth == 2 else 1e-4
                    else:
                        end, label, r1 = {0.01: 1.5, 0.1: 0.46, 1.0: 0.9}[lr], "healthy", 1.0
                    runs.append({"run_id": run_id, "activation": act, "init": init,
                                 "depth": depth, "lr": lr, "seed": seed, "labels": label,
                                 "status": "completed", "final_train_accuracy": 0.5})
                    hist += [{"run_id": run_id, "step": 0, "train_loss": 2.3},
                             {"run_id": run_id, "step": 50, "train_loss": end}]
                    layers += [{"run_id": run_id, "step": 0, "layer": 1, "w_grad_norm": r1},
                               {"run_id": run_id, "step": 0, "layer": depth + 1,
                                "w_grad_norm": 1.0}]
    return Results(runs=pd.DataFrame(runs), history=pd.DataFrame(hist),
                   layers=pd.DataFrame(layers), manifest={})


def test_vanishing_on_a_rate_grid_judges_each_net_at_its_own_rate():
    rows = findings_for("vanishing", _vanishing_store())
    assert [r["verdict"] for r in rows] == ["reproduced", "reproduced"]
    assert rows[1]["claim"].startswith("deep sigmoid nets stall at every rate")
    assert "never learns at any rate of [0.01, 0.1, 1]" in rows[1]["measured"]
    assert "relu/he_normal/2 lr 0.1" in rows[1]["measured"]
    learns = findings_for("vanishing", _vanishing_store(sigmoid_learns_at=1.0))
    assert learns[1]["verdict"] == "partly"  # the deep sigmoid net learns at lr 1


def _gd_store(sgd_best, rows=100):
    """A gd_variants store: batch sizes 1, 32 and 0 (batch GD) on a 5-point rate grid, 2 seeds,
    100 steps; each run's final loss is its size's best loss times a factor of the rate (SGD's
    best at 0.03, the others' at 0.3)."""
    grid = (0.01, 0.03, 0.1, 0.3, 1.0)
    factors = {1: (3.0, 1.0, 2.0, 4.0, 8.0), 32: (9.0, 5.0, 3.0, 1.0, 2.0),
               0: (9.0, 5.0, 3.0, 1.0, 2.0)}
    best = {1: sgd_best, 32: 0.01, 0: 0.02}
    runs, hist = [], []
    for batch in (1, 32, 0):
        steps_per_epoch = 1 if batch == 0 else rows // batch
        for lr, factor in zip(grid, factors[batch]):
            for seed in (0, 1):
                run_id = f"{batch}-{lr}-{seed}"
                runs.append({"run_id": run_id, "batch_size": batch, "lr": lr, "seed": seed,
                             "status": "completed", "final_train_accuracy": 0.5})
                hist += [{"run_id": run_id, "step": 0, "epoch": 0.0, "train_loss": 2.3,
                          "test_accuracy": 0.1},
                         {"run_id": run_id, "step": 100, "epoch": 100 / steps_per_epoch,
                          "train_loss": best[batch] * factor * (1 + 0.1 * seed),
                          "test_accuracy": 0.5}]
    return Results(runs=pd.DataFrame(runs), history=pd.DataFrame(hist),
                   layers=pd.DataFrame(), manifest={})


def test_gd_variants_verdict_follows_the_stored_numbers():
    good = findings_for("gd_variants", _gd_store(sgd_best=0.5))
    assert [r["verdict"] for r in good] == ["reproduced", "reproduced"]
    assert "SGD lr 0.03" in good[0]["measured"] and "batch GD lr 0.3" in good[0]["measured"]
    assert "SGD 0.525 [0.5, 0.55]" in good[0]["measured"]  # at 1 epoch, SGD's best rate
    # SGD's loss above the start at every rate: per epoch it falls behind mini-batch (partly:
    # mini-batch still beats batch GD); per step mini-batch still beats it
    bad = findings_for("gd_variants", _gd_store(sgd_best=5.0))
    assert [r["verdict"] for r in bad] == ["partly", "reproduced"]


def test_highest_learning_rate_needs_every_seed_to_learn():
    from studies.analysis.findings.training import highest_learning_rate
    runs = pd.DataFrame([
        {"batchnorm": bn, "lr": lr, "seed": seed, "status": status, "initial_loss": 2.3,
         "end_loss": end}
        for bn, lr, seed, status, end in [
            (True, 1.0, 0, "completed", 1.0), (True, 1.0, 1, "completed", 1.1),
            (True, 3.0, 0, "completed", 1.2), (True, 3.0, 1, "diverged", np.inf),
            (False, 1.0, 0, "completed", 1.5), (False, 1.0, 1, "completed", 1.6),
            (False, 3.0, 0, "completed", 2.4), (False, 3.0, 1, "completed", 2.0)]])
    assert highest_learning_rate(runs, batchnorm=True) == 1.0   # one seed diverged at 3
    assert highest_learning_rate(runs, batchnorm=False) == 1.0  # one seed above its start at 3
    runs.loc[(~runs["batchnorm"]) & (runs["lr"] == 3.0), "end_loss"] = 2.0
    assert highest_learning_rate(runs, batchnorm=False) == 3.0
    assert np.isnan(highest_learning_rate(runs[runs["lr"] > 5], batchnorm=True))
