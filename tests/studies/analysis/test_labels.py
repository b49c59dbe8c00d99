"""studies.analysis.labels: pathology labels on real networks built to vanish, explode, die,
saturate, diverge, stall and stay healthy (kernel fits, and tiny specs through the real
runner); healthy refused for the runs that never learn; threshold overrides and their
validation, also by name in a spec's [labels]; the string form."""
import math

import numpy as np
import pandas as pd
import pytest

from kernels import MLP, SGD
import studies
from studies.analysis.labels import LABELS, Thresholds, diverged_now, format_labels, label_run, \
    parse_labels, softmax_classes
from studies.analysis.metrics import layer_statistics, merge_layer_rows, step_frames
from studies.run.runner import run_study
from studies.spec import parse_spec

# lr 1e-12 probes the gradients at initialization: the updates are negligible by construction,
# so the absolute update test is switched off where a test checks the ratio tests alone.
RATIO_ONLY = {"vanishing_update": 1e-300}


def data(n=64, d=8, k=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)), rng.integers(0, k, n)


def tables(net, x, y, lr=1e-12, epochs=1, batch_size=None):
    """Per-step and per-layer tables of a fit, with activation metrics before and after."""
    before = layer_statistics(net, x)
    hist = net.fit(x, y, SGD(lr=lr), epochs=epochs, batch_size=batch_size, evaluate=False)
    per_step, kernel = step_frames(hist.steps)
    metrics = [{"step": 0, **r} for r in before]
    if not hist.diverged:
        metrics += [{"step": len(per_step), **r} for r in layer_statistics(net, x)]
    return per_step, merge_layer_rows(kernel, metrics), hist


def labels_of(net, thresholds=None, **fit):
    x, y = data(d=net.sizes[0], k=net.sizes[-1])
    if not net.classification:
        y = np.random.default_rng(1).normal(size=(len(x), net.sizes[-1]))
    per_step, layers, _ = tables(net, x, y, **fit)
    return label_run(per_step, layers, thresholds)


def test_deep_sigmoid_with_small_naive_init_vanishes_at_step_0():
    net = MLP([8] + [32] * 10 + [4], activation="sigmoid", init="naive_normal",
              init_scale=0.1, seed=0)
    run, layers = labels_of(net, RATIO_ONLY)
    assert run["vanishing"] == 0 and "exploding" not in run
    vanishing = set(layers.loc[layers.label == "vanishing", "layer"])
    assert 1 in vanishing and 11 not in vanishing
    assert format_labels(run).startswith("vanishing@0")


@pytest.mark.parametrize("activation,gain,depth,thresholds", [
    ("tanh", 10.0, 15, {"exploding_norm": 1e30}),  # chaotic tanh: the layer ratio alone (~1e4)
    ("identity", 3.0, 12, {})])                    # deep linear: ratio ~0.3, global norm ~1e13
def test_large_gain_explodes(activation, gain, depth, thresholds):
    net = MLP([8] + [32] * depth + [4], activation=activation, init="lecun_normal", gain=gain,
              loss="mse", seed=0)
    run, _ = labels_of(net, {**thresholds, **RATIO_ONLY})
    assert run["exploding"] == 0 and "vanishing" not in run


def test_relu_with_large_negative_biases_dies_in_that_layer():
    net = MLP([8, 16, 16, 4], activation="relu", seed=0)
    net.biases[1][...] = -100.0
    run, layers = labels_of(net, RATIO_ONLY)
    assert run["dead"] == 0
    assert set(layers.loc[layers.label == "dead", "layer"]) == {2}
    # layer 1 is alive, but no gradient passes the dead layer: its updates are exactly zero
    assert set(layers.loc[layers.layer == 1, "label"]) == {"vanishing"}


def test_sigmoid_with_huge_weights_saturates():
    net = MLP([8, 32, 32, 4], activation="sigmoid", init="naive_normal", init_scale=20.0,
              seed=0)
    run, layers = labels_of(net)
    assert run["saturated"] == 0
    assert {1, 2} <= set(layers.loc[layers.label == "saturated", "layer"])


def test_huge_learning_rate_diverges_and_stops_where_the_kernel_stopped():
    net = MLP([8, 32, 32, 1], activation="tanh", loss="mse", seed=0)
    x, _ = data()
    y = np.random.default_rng(1).normal(size=(len(x), 1))
    per_step, layers, hist = tables(net, x, y, lr=50.0, epochs=20, batch_size=16)
    assert hist.diverged
    run, _ = label_run(per_step, layers)
    assert 0 < run["diverged"] <= hist.diverged_step
    assert not math.isfinite(per_step["loss"].iloc[-1]) or \
        not math.isfinite(per_step["grad_norm"].iloc[-1])


def test_shallow_tanh_with_xavier_init_is_healthy_through_training():
    net = MLP([8, 16, 4], activation="tanh", init="xavier_normal", seed=0)
    run, layers = labels_of(net, lr=0.1, epochs=5, batch_size=16)
    assert run == {"healthy": 0} and format_labels(run) == "healthy"
    assert list(layers.label) == ["healthy", "healthy"] and list(layers.layer) == [1, 2]


def test_threshold_overrides_change_the_outcome():
    net = MLP([8] + [32] * 10 + [4], activation="sigmoid", init="naive_normal",
              init_scale=0.1, seed=0)
    x, y = data()
    per_step, layers, _ = tables(net, x, y)
    assert "vanishing" in label_run(per_step, layers)[0]
    assert "vanishing" not in label_run(per_step, layers,
                                        {"vanishing_ratio": 1e-30, **RATIO_ONLY})[0]
    healthy = MLP([8, 16, 4], activation="tanh", seed=0)
    per_step, layers, _ = tables(healthy, x, y)
    assert "exploding" not in label_run(per_step, layers)[0]
    assert label_run(per_step, layers, Thresholds(exploding_norm=1e-6))[0]["exploding"] == 0


def test_bad_threshold_keys_and_values_are_errors():
    with pytest.raises(ValueError,
                       match=r"'vanish'.*allowed: vanishing_ratio, vanishing_update, exploding"):
        Thresholds.from_dict({"vanish": 1e-3})
    for bad in ({"dead_fraction": 1.5}, {"exploding_norm": -1.0}, {"vanishing_ratio": "x"},
                {"divergence_factor": float("nan")}, {"saturated_fraction": True},
                {"vanishing_ratio": 1e4}, {"min_improvement": 1.0}, {"chance_margin": 2.0},
                {"final_rise": 0.0}):
        with pytest.raises(ValueError, match="thresholds"):
            Thresholds.from_dict(bad)
    assert Thresholds.from_dict(None) == Thresholds()
    assert Thresholds.from_dict({"dead_fraction": 0.9}).dead_fraction == 0.9


def layer_frame(rows):
    return pd.DataFrame(rows, columns=["step", "layer", "w_grad_norm", "w_norm",
                                       "saturated_fraction", "dead_fraction"])


def test_mostly_saturated_layer_fires_and_first_step_is_reported():
    hist = pd.DataFrame({"step": [0, 10, 20], "loss": [2.3, 2.0, 1.9], "grad_norm": 1.0})
    layers = layer_frame([(0, 1, 1.0, 1.0, 0.1, np.nan), (0, 2, 1.0, 1.0, 0.2, np.nan),
                          (10, 1, 1.0, 1.0, 0.3, np.nan), (10, 2, 1.0, 1.0, 0.6, np.nan),
                          (20, 1, 1.0, 1.0, 0.55, np.nan), (20, 2, 1.0, 1.0, 0.9, np.nan)])
    run, per_layer = label_run(hist, layers)
    assert run == {"saturated": 10}
    assert per_layer.values.tolist() == [[1, "saturated", 20], [2, "saturated", 10]]


def test_metric_only_nan_rows_are_not_non_finite_gradients():
    hist = pd.DataFrame({"step": [0, 1], "loss": [1.0, 0.9], "grad_norm": [1.0, 1.0]})
    layers = layer_frame([(0, 1, 1.0, 1.0, np.nan, 0.0), (0, 2, 2.0, 1.0, np.nan, 0.0),
                          (1, 1, 1.0, 1.0, np.nan, np.nan), (1, 2, 2.0, 1.0, np.nan, np.nan),
                          (2, 1, np.nan, np.nan, np.nan, 0.0), (2, 2, np.nan, np.nan, np.nan, 0.0)])
    assert label_run(hist, layers)[0] == {"healthy": 0}
    assert label_run(None, layers)[0] == {"healthy": 0}  # kernel rows found through w_norm
    layers.loc[2, "w_grad_norm"] = np.nan  # a real NaN at a kernel step
    assert label_run(hist, layers)[0] == {"exploding": 1}


def test_divergence_rules():
    t = Thresholds()
    assert diverged_now(float("nan"), 2.3, t) and diverged_now(float("inf"), 2.3)
    assert diverged_now(23.1, 2.3) and not diverged_now(22.9, 2.3)
    assert not diverged_now(5.0, 0.0) and not diverged_now(5.0, float("nan"))
    assert diverged_now(5.0, 0.4, Thresholds(divergence_factor=2.0))
    hist = pd.DataFrame({"step": [0, 1, 2, 3, 4], "loss": [1.0, 5.0, 0.5, 11.0, np.nan]})
    assert label_run(hist, None)[0] == {"diverged": 3}  # the factor; then non-finite
    rising = pd.DataFrame({"step": [0, 1, 2, 3], "loss": [1.0, 1.5, 0.9, 1.2]})
    assert label_run(rising, None)[0] == {"diverged": 3}  # ended 20% above, from step 3 on
    assert label_run(rising, None, {"final_rise": 0.5})[0] == {"stalled": 3}


def test_format_and_parse_labels():
    run = {"dead": 120, "vanishing": 0, "exploding": 120}
    text = format_labels(run)
    assert text == "vanishing@0,exploding@120,dead@120"
    assert parse_labels(text) == run
    assert parse_labels("healthy") == {"healthy": 0} and format_labels({}) == ""
    with pytest.raises(ValueError, match="allowed"):
        parse_labels("wobbly@3")
    assert set(LABELS) == {"vanishing", "exploding", "dead", "saturated", "diverged", "stalled"}
    assert parse_labels("vanishing@0,stalled@0") == {"vanishing": 0, "stalled": 0}


def test_no_rows_give_no_labels():
    run, per_layer = label_run(pd.DataFrame(), pd.DataFrame())
    assert run == {} and list(per_layer.columns) == ["layer", "label", "first_step"]


# ---------------------------------------------------------------- through the real runner

DIGITS = {"dataset": "digits", "n_samples": 400, "width": 16, "steps": 150,
          "metrics_every": 25, "batch_size": 32}


def runner_results(tmp_path, name, **fixed):
    """Results of one tiny run through the real runner (digits, serial)."""
    spec = parse_spec({"name": name, "fixed": {**DIGITS, **fixed}}, path=f"<{name}>")
    run_study(spec, "quick", out=tmp_path / name, workers=0, show_progress=False)
    return studies.load(tmp_path / name)


def final_and_initial(results):
    loss = results.history.sort_values("step")["train_loss"].dropna()
    return loss.iloc[-1], loss.iloc[0]


def test_sigmoid_depth_5_at_a_tiny_rate_stays_at_ln10_and_is_stalled(tmp_path):
    r = runner_results(tmp_path, "stall", depth=5, activation="sigmoid", init="xavier_normal",
                       lr=1e-3)
    final, initial = final_and_initial(r)
    assert abs(final - math.log(10)) < 0.15 and final > 0.95 * initial
    run = parse_labels(r.runs["labels"].iloc[0])
    assert run["stalled"] == 0 and "healthy" not in run and "diverged" not in run
    assert label_run(r.history, r.layers)[0] == run  # the stored labels are label_run's
    assert softmax_classes(r.layers) == 10


def test_uniform_collapse_is_vanishing_by_update_ratio_though_the_gradient_ratio_is_one(tmp_path):
    r = runner_results(tmp_path, "collapse", depth=4, activation="tanh", init="naive_normal",
                       init_scale=0.01, lr=0.01)
    at0 = r.layers[r.layers.step == 0].sort_values("layer")["w_grad_norm"].to_numpy()
    assert 0.1 < at0[0] / at0[-1] < 10  # the ratio test cannot see it
    assert "vanishing" not in label_run(r.history, r.layers, RATIO_ONLY)[0]
    run, per_layer = label_run(r.history, r.layers)
    assert run["vanishing"] == 0 and "stalled" in run and "healthy" not in run
    assert set(per_layer.loc[per_layer.label == "vanishing", "layer"]) == {1, 2, 3, 4, 5}


def test_run_that_ends_above_its_initial_loss_is_diverged(tmp_path):
    r = runner_results(tmp_path, "rise", depth=10, width=64, n_samples=600, activation="tanh",
                       sigma_w2=4.0, sigma_b2=0.05, lr=1.0, batch_size=64)
    final, initial = final_and_initial(r)
    assert initial < final < Thresholds().divergence_factor * initial
    assert r.runs["status"].iloc[0] == "completed"  # the runner's factor never tripped
    run = parse_labels(r.runs["labels"].iloc[0])
    assert "diverged" in run and "healthy" not in run and "stalled" not in run


def test_a_run_that_learns_is_healthy_and_chance_accuracy_is_stalled(tmp_path):
    r = runner_results(tmp_path, "learn", depth=1, activation="tanh", init="xavier_normal",
                       lr=0.1)
    assert r.runs["labels"].iloc[0] == "healthy"
    assert r.runs["final_train_accuracy"].iloc[0] > 0.9
    # the same run, had it ended at 15% accuracy on 10 classes, would be guessing
    hist = r.history.copy()
    hist.loc[hist.step == hist.step.max(), "train_accuracy"] = 0.15
    run = label_run(hist, r.layers)[0]
    assert set(run) == {"stalled"} and run["stalled"] == hist.step.max()
    assert label_run(hist, r.layers, {"chance_margin": 0.01})[0] == {"healthy": 0}


# The runs of the vanishing study (quick scale: digits, width 64, SGD lr 0.05, batch 64,
# 300 steps) that used to be labelled healthy, and what they are: the first four end at the
# uniform guess (ln 10 = 2.303, chance accuracy); deep ReLU/Xavier moves a little (loss ~2.1,
# ~20% accuracy) while its first layer's updates stay below 1e-5 of its weights.
NEVER_LEARN = [("sigmoid", 5, "he_normal", "stalled"), ("sigmoid", 5, "xavier_normal", "stalled"),
               ("tanh", 10, "glorot_standard", "stalled"),
               ("tanh", 20, "glorot_standard", "stalled"),
               ("relu", 20, "xavier_normal", "vanishing")]


@pytest.mark.parametrize("activation,depth,init,label", NEVER_LEARN)
def test_healthy_is_refused_for_the_vanishing_runs_that_never_learn(tmp_path, activation,
                                                                     depth, init, label):
    r = runner_results(tmp_path, "never", dataset="digits", n_samples=None, width=64,
                       depth=depth, activation=activation, init=init, lr=0.05,
                       batch_size=64, steps=300, metrics_every=50)
    final, _ = final_and_initial(r)
    accuracy = r.runs["final_train_accuracy"].iloc[0]
    if label == "stalled":
        assert abs(final - math.log(10)) < 0.01 and accuracy < 0.2
    run = parse_labels(r.runs["labels"].iloc[0])
    assert label in run and "healthy" not in run


def test_a_spec_labels_table_takes_every_threshold_by_name():
    from dataclasses import fields
    from studies.spec import SpecError
    names = {f.name: getattr(Thresholds(), f.name) for f in fields(Thresholds)}
    assert {"vanishing_update", "final_rise", "min_improvement", "chance_margin"} <= set(names)
    spec = parse_spec({"name": "t", "labels": names}, path="<t>")
    assert Thresholds.from_dict(spec.labels) == Thresholds()
    with pytest.raises(SpecError, match=r"\[labels\].*'min_improvment'"):
        parse_spec({"name": "t", "labels": {"min_improvment": 0.1}}, path="<t>")


@pytest.mark.parametrize("activation,scale,lr", [("sigmoid", 0.1, 1e-12), ("relu", 1.0, 0.5),
                                                 ("tanh", 5.0, 10.0)])
def test_numpy_columns_and_frames_give_the_same_labels(activation, scale, lr):
    """label_columns (what a run labels its own NumPy columns with) and label_run on the
    DataFrames (what the store relabels loaded runs with) agree, per run and per layer."""
    from studies.analysis.labels import label_columns
    net = MLP([8, 16, 16, 4], activation=activation, init="naive_normal", init_scale=scale,
              seed=0)
    x, y = data()
    per_step, layers, _ = tables(net, x, y, lr=lr, epochs=3, batch_size=16)
    run, table = label_run(per_step, layers)
    columns = [{c: frame[c].to_numpy() for c in frame.columns} for frame in (per_step, layers)]
    run_np, rows = label_columns(*columns)
    assert run_np == run
    assert rows == [(int(r.layer), r.label, int(r.first_step)) for r in table.itertuples()]


def test_an_mse_sigmoid_classifier_at_chance_accuracy_is_stalled_and_relabels_the_same(tmp_path):
    """The chance-accuracy test needs K, which a sigmoid output does not show (its mean is not
    1/K): the runner records the run's n_classes, and the store's relabelling reads it back."""
    r = runner_results(tmp_path, "mse_stall", depth=5, activation="sigmoid",
                       init="xavier_normal", loss="mse", output_activation="sigmoid", lr=1e-3)
    row = r.runs.iloc[0]
    assert row["n_classes"] == 10 and row["loss_function"] == "mse"
    assert softmax_classes(r.layers) is None
    assert row["final_train_accuracy"] < 0.2
    run = parse_labels(row["labels"])
    assert "stalled" in run and "healthy" not in run
    assert "stalled" not in label_run(r.history, r.layers)[0]  # without K it looked learned
    assert label_run(r.history, r.layers, n_classes=10, loss="mse")[0] == run
    relabelled = studies.load(tmp_path / "mse_stall", thresholds={})
    assert relabelled.runs["labels"].iloc[0] == row["labels"]


def test_the_ln_k_bar_of_learning_is_cross_entropys_only():
    """An MSE run that fell from 50 to 3 learned (its bar is L0), though 3 is above ln 10."""
    from studies.analysis.labels import label_columns
    steps = np.arange(0, 60, 10)
    history = {"step": steps, "loss": np.geomspace(50.0, 3.0, len(steps)),
               "train_accuracy": np.linspace(0.1, 0.6, len(steps))}
    assert label_columns(history, {}, None, 10, "mse")[0] == {"healthy": 0}
    assert "stalled" in label_columns(history, {}, None, 10, "cross_entropy")[0]
    regression = {"step": steps, "loss": history["loss"]}
    assert label_columns(regression, {}, None, 0, "mse")[0] == {"healthy": 0}


def test_an_mse_run_must_beat_predicting_the_mean_of_its_targets():
    """Its bar of learning is min(L0, sum_j Var(t_j)): falling from 5 to just below the mean
    predictor's loss is no learning; without the variance the bar is L0 alone."""
    from studies.analysis.labels import label_columns
    steps = np.arange(0, 60, 10)
    history = {"step": steps, "loss": np.geomspace(5.0, 0.98, len(steps))}
    assert set(label_columns(history, {}, None, 0, "mse", 1.0)[0]) == {"stalled"}
    assert label_columns(history, {}, None, 0, "mse", 1.5)[0] == {"healthy": 0}
    assert label_columns(history, {}, None, 0, "mse", None)[0] == {"healthy": 0}
    assert label_columns(history, {}, None, 0, "mse", float("nan"))[0] == {"healthy": 0}
    # the variance caps the bar of MSE regression only: cross-entropy keeps ln K, and MSE on
    # classes its L0 (chance accuracy tells there; this run ends at 60%)
    assert label_columns(history, {}, None, 10, "cross_entropy", 1.0)[0] == {"healthy": 0}
    on_classes = {**history, "train_accuracy": np.linspace(0.1, 0.6, len(steps))}
    assert label_columns(on_classes, {}, None, 10, "mse", 1.0)[0] == {"healthy": 0}


def test_a_regression_net_that_only_learns_the_targets_mean_is_stalled(tmp_path):
    """Targets 3 + noise, independent of the inputs: all a net can learn is their mean, which
    takes the loss from about 10 to about 1 (a 90% fall, that the L0 bar alone calls learning);
    the runner's target_variance bar calls it stalled, and so does the store on relabelling."""
    rng = np.random.default_rng(0)
    path = tmp_path / "noise.npz"
    np.savez(path, x_train=rng.normal(size=(400, 8)), y_train=3.0 + rng.normal(size=(400, 1)),
             x_test=rng.normal(size=(100, 8)), y_test=3.0 + rng.normal(size=(100, 1)))
    r = runner_results(tmp_path, "mean_only", dataset=str(path), n_samples=None, depth=1,
                       activation="tanh", loss="mse", output_activation="identity", lr=0.05)
    row = r.runs.iloc[0]
    final, initial = final_and_initial(r)
    assert row["n_classes"] == 0 and abs(row["target_variance"] - 1.0) < 0.2
    assert final < 0.3 * initial and final > 0.95 * row["target_variance"]
    run = parse_labels(row["labels"])
    assert "stalled" in run and "healthy" not in run
    assert label_run(r.history, r.layers, n_classes=0, loss="mse")[0] == {"healthy": 0}
    assert studies.load(tmp_path / "mean_only", thresholds={}).runs["labels"].iloc[0] == \
        row["labels"]


def test_the_runner_records_the_variance_of_an_mse_runs_training_targets(tmp_path):
    """One-hot targets of 10 near-balanced classes: sum_j p_j (1 - p_j) = 1 - sum_j p_j^2,
    at most 0.9; the relabelled store gives the stored labels."""
    r = runner_results(tmp_path, "mse_var", depth=1, activation="tanh", loss="mse",
                       output_activation="identity", lr=0.05)
    row = r.runs.iloc[0]
    assert 0.88 < row["target_variance"] <= 0.9
    assert studies.load(tmp_path / "mse_var", thresholds={}).runs["labels"].iloc[0] == \
        row["labels"]
    ce = runner_results(tmp_path, "ce_var", depth=1, activation="tanh", lr=0.05)
    assert pd.isna(ce.runs["target_variance"].iloc[0])  # none for cross-entropy
