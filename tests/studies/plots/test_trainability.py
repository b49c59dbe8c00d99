"""The trainability heatmap and the mean-field correlation figure on hand-made stores: the
agreement of 'trained' with 'depth < 6 xi_c' and the verdict follow the stored accuracies, and
the correlation figure's xi_c numbers are the theory's (ReLU: none above sigma_w^2 = 2)."""
import math

import pandas as pd
import pytest

from studies.analysis.findings import findings_for
from studies.plots import mean_field as M
from studies.plots import trainability as P
from studies.store import Results
from studies.theory import mean_field as theory

SIGMA_W2 = (0.25, 0.5, 1.0, 4.0)
DEPTHS = (2, 8, 32)


def _store(flip=()):
    """Accuracy 0.9 where depth < 6 xi_c, else 0.1; cells in `flip` get the other value."""
    runs, hist = [], []
    for s in SIGMA_W2:
        for d in DEPTHS:
            for seed in (0, 1):
                good = (d < theory.trainable_depth(s, 0.05, "tanh")) != ((s, d) in flip)
                run_id = f"{s}-{d}-{seed}"
                runs.append({"run_id": run_id, "activation": "tanh", "sigma_w2": s,
                             "sigma_b2": 0.05, "depth": d, "seed": seed, "status": "completed",
                             "final_train_accuracy": 0.5, "width": 8, "steps": 10,
                             "optimizer": "sgd", "lr": 0.1, "dataset": "digits"})
                hist += [{"run_id": run_id, "step": 0, "train_loss": 2.3, "test_accuracy": 0.1},
                         {"run_id": run_id, "step": 10, "train_loss": 1.0,
                          "test_accuracy": 0.9 if good else 0.1}]
    return Results(runs=pd.DataFrame(runs), history=pd.DataFrame(hist),
                   layers=pd.DataFrame(), manifest={})


def test_heatmap_agreement_and_verdict_follow_the_accuracies():
    (fig,) = P.trainability_heatmap(_store())
    assert fig.numbers["agreement"] == 1.0 and fig.numbers["cells"] == 12
    assert "on 100% of 12 cells" in fig.caption and "Verdict: reproduced" in fig.caption
    assert findings_for("trainability", _store())[0]["verdict"] == "reproduced"
    flipped = _store(flip={(0.25, 2), (0.5, 8), (1.0, 32)})
    (fig,) = P.trainability_heatmap(flipped)
    assert fig.numbers["agreement"] == pytest.approx(0.75)
    assert findings_for("trainability", flipped)[0]["verdict"] == "partly"


def test_correlation_figure_numbers_are_the_theory():
    (fig,) = M.mean_field_correlation(_store())
    xi = fig.numbers["xi_c"]
    assert xi["tanh"]["1"] == pytest.approx(theory.depth_scales(1.0, 0.05, "tanh")[1])
    assert xi["relu"]["0.5"] == pytest.approx(-1 / math.log(0.25))
    assert math.isnan(xi["relu"]["2.5"]) and math.isnan(xi["relu"]["4"])
    assert "no chaotic phase" in fig.caption
