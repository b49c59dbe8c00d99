"""Curvature and gradient-noise columns of a run (studies.run.curvature_log through the chunk
driver): the numbers are the kernels' own (net.sharpness, hessian_trace, gradient_noise on the
same state and seed), the same grouped or alone, on the configured interval and rows, NaN when
off, and measuring them changes nothing of the training."""
import numpy as np
import pandas as pd
import pytest

from studies.config import FIELDS, resolve
from studies.run.curvature_log import HISTORY_COLUMNS, HUTCHINSON, LANCZOS, LAYER_COLUMNS, \
    CurvatureLog, estimator_seed
from studies.run.execute import build_run, dataset_for, train_group, train_run, training_data

BASE = {"dataset": "digits", "n_samples": 150, "width": 8, "depth": 2, "steps": 6,
        "metrics_every": 2, "batch_size": 16, "eval_rows": 32, "dtype": "float64",
        "activation": "tanh", "lr": 0.1, "trace_samples": 8, "sharpness_tol": 1e-8}
ON = {**BASE, "curvature": True, "gradient_noise": True}


@pytest.fixture(scope="module")
def alone():
    return [train_run(resolve({**ON, "seed": s})) for s in (0, 1, 2)]


def test_grouped_runs_give_the_bits_of_runs_alone(alone):
    configs = [resolve({**ON, "seed": s}) for s in (0, 1, 2)]
    grouped = train_group(configs)
    for (_, h_group, l_group), (_, h_alone, l_alone) in zip(grouped, alone):
        for group, single, columns in ((h_group, h_alone, HISTORY_COLUMNS),
                                       (l_group, l_alone, LAYER_COLUMNS)):
            assert np.isfinite(single[list(columns)].to_numpy()).all()
            for column in columns:
                np.testing.assert_array_equal(np.asarray(group[column]),
                                              single[column].to_numpy())
    # different runs draw different probes: the seeds are per run
    assert alone[0][1]["hessian_trace"].iloc[0] != alone[1][1]["hessian_trace"].iloc[0]


def _direct(config, rows=None):
    """The kernels' numbers on the initial network of `config` (its step-0 state)."""
    data = dataset_for(config)
    net = build_run(config, data)[0]
    x, _, y, _ = training_data(net, data, config)
    x, y = (x, y) if rows is None else (x[:rows], y[:rows])
    sharp = net.sharpness(x, y, tol=config["sharpness_tol"], max_iter=config["sharpness_max_iter"],
                          seed=estimator_seed(config["seed"], 0, LANCZOS))
    trace = net.hessian_trace(x, y, samples=config["trace_samples"],
                              seed=estimator_seed(config["seed"], 0, HUTCHINSON))
    return sharp, trace, net.gradient_noise(x, y)


@pytest.mark.parametrize("rows", [0, 40])
def test_step_zero_equals_direct_calls_on_the_initial_network(alone, rows):
    config = resolve({**ON, "seed": 1, "curvature_rows": rows})
    _, history, layers = alone[1] if rows == 0 else train_run(config)
    sharp, (trace, se), noise = _direct(config, rows or None)
    first = history.iloc[0]
    assert first["step"] == 0
    assert (first["sharpness"], first["hessian_trace"], first["hessian_trace_se"]) == \
        (sharp, trace, se)
    assert first["noise_scale"] == noise["b_simple"]
    at0 = layers[layers["step"] == 0].sort_values("layer")
    np.testing.assert_array_equal(at0["grad_snr"], noise["snr_layers"])
    np.testing.assert_array_equal(at0["layer_noise_scale"],
                                  noise["trace_sigma_layers"] / noise["grad_sq_layers"])
    if rows:  # fewer rows: another batch, other numbers
        assert first["sharpness"] != alone[1][1]["sharpness"].iloc[0]


def test_a_trained_network_measures_as_the_direct_calls_at_its_step():
    config = resolve({**ON, "curvature_every": 4})
    data = dataset_for(config)
    net = build_run(config, data)[0]
    x, y_train, y, _ = training_data(net, data, config)
    for _ in range(3):
        net.loss_and_grads(x, y_train)
        net.params -= 0.1 * net.grads
    log = CurvatureLog(config, x, y)
    log.calls = 2  # the third metric step: step 4
    evals, stats = {}, {"layer": np.arange(1, 4)}
    log.add(net, evals, stats)
    assert evals["sharpness"] == net.sharpness(
        x, y, tol=config["sharpness_tol"], max_iter=config["sharpness_max_iter"],
        seed=estimator_seed(config["seed"], 4, LANCZOS))
    assert (evals["hessian_trace"], evals["hessian_trace_se"]) == net.hessian_trace(
        x, y, samples=config["trace_samples"], seed=estimator_seed(config["seed"], 4, HUTCHINSON))
    assert list(stats["grad_snr"]) == list(net.gradient_noise(x, y)["snr_layers"])
    net.params[0] = np.nan  # a non-finite network records NaN, not an error
    log.add(net, evals, stats)
    assert all(np.isnan(evals[c]) for c in HISTORY_COLUMNS)
    assert all(np.isnan(stats[c]).all() for c in LAYER_COLUMNS)


def test_the_interval_picks_its_metric_steps_and_the_last():
    _, history, layers = train_run(resolve({**ON, "steps": 10, "metrics_every": 2,
                                            "curvature_every": 4, "trace_samples": 2}))
    measured = history.loc[history["sharpness"].notna(), "step"].tolist()
    assert measured == [0, 4, 8, 10]
    assert history.loc[history["noise_scale"].notna(), "step"].tolist() == measured
    assert sorted(layers.loc[layers["grad_snr"].notna(), "step"].unique()) == measured


def test_off_by_default_the_columns_are_nan_and_training_is_the_same(alone):
    assert not FIELDS["curvature"].default and not FIELDS["gradient_noise"].default
    run, history, layers = train_run(resolve({**BASE, "seed": 0}))
    for frame, columns in ((history, HISTORY_COLUMNS), (layers, LAYER_COLUMNS)):
        assert frame[list(columns)].isna().all().all()
    _, h_on, l_on = alone[0]
    pd.testing.assert_frame_equal(history.drop(columns=[*HISTORY_COLUMNS, "train_time"]),
                                  h_on.drop(columns=[*HISTORY_COLUMNS, "train_time"]))
    pd.testing.assert_frame_equal(layers.drop(columns=list(LAYER_COLUMNS)),
                                  l_on.drop(columns=list(LAYER_COLUMNS)))


def test_curvature_alone_leaves_the_noise_columns_nan():
    _, history, layers = train_run(resolve({**BASE, "curvature": True, "steps": 2,
                                            "trace_samples": 2}))
    assert history["sharpness"].notna().all() and history["noise_scale"].isna().all()
    assert layers["grad_snr"].isna().all()


@pytest.mark.parametrize("changes,message", [
    ({"curvature": True, "curvature_every": 3}, r"curvature_every = 3: expected 0 or a multiple "
                                                r"of metrics_every = 2"),
    ({"gradient_noise": True, "batchnorm": True}, r"gradient_noise with batchnorm = true"),
    ({"gradient_noise": True, "curvature_rows": 1}, r"curvature_rows = 1 with gradient_noise"),
    ({"curvature": True, "device": "cuda"}, r"only the cpu kernels compute them"),
    ({"curvature": True, "trace_samples": 1}, r"trace_samples = 1: expected a value >= 2"),
    ({"curvature": True, "sharpness_tol": 0.0}, r"sharpness_tol = 0.0: expected a value > 0"),
])
def test_bad_curvature_settings_are_one_line_errors(changes, message):
    with pytest.raises(ValueError, match=message):
        resolve({**BASE, **changes})


def test_curvature_keys_are_shared_by_a_group_and_reset_while_off():
    assert not any(FIELDS[k].per_run for k in ("curvature", "gradient_noise", "curvature_every",
                                               "curvature_rows", "trace_samples",
                                               "sharpness_tol", "sharpness_max_iter"))
    off = resolve({**BASE, "curvature_every": 4, "trace_samples": 7, "curvature_rows": 9})
    assert off == resolve(BASE)
    noise_only = resolve({**BASE, "gradient_noise": True, "trace_samples": 7,
                          "curvature_rows": 9})
    assert noise_only["trace_samples"] == FIELDS["trace_samples"].default
    assert noise_only["curvature_rows"] == 9
