"""studies.analysis.metrics: every activation statistic against an independent NumPy forward pass of a
fixed tiny network (with and without batch norm, batch and running statistics), dead and
saturated fractions on networks built to die and saturate, and the tidy kernel records."""
import numpy as np
import pandas as pd
import pytest
from scipy import special

from kernels import MLP, SGD
from kernels.layout import allocate_record
from studies.analysis.metrics import KERNEL_LAYER_COLUMNS, LAYER_COLUMNS, STEP_COLUMNS, \
    layer_statistics, merge_layer_rows, step_frames, step_records

ACT = {"identity": lambda h: h, "tanh": np.tanh, "sigmoid": special.expit,
       "relu": lambda h: np.maximum(h, 0.0), "leaky_relu": lambda h: np.where(h > 0, h, 0.01 * h),
       "elu": lambda h: np.where(h > 0, h, np.expm1(np.minimum(h, 0.0))),
       "gelu": lambda h: 0.5 * h * (1.0 + special.erf(h / np.sqrt(2.0))),
       "softmax": lambda h: special.softmax(h, axis=1)}
Q = (15, 50, 85, 98)


def inputs(n=24, d=5, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d))


def numpy_forward(net, x, training):
    """[(z, h or None, a)] per layer in float64, written from the formulas."""
    a, out = np.asarray(x, np.float64), []
    f64 = (lambda v: np.asarray(v, np.float64))
    for layer in range(net.n_layers):
        z = a @ f64(net.weights[layer]).T + f64(net.biases[layer])
        h = None
        if net.spec.bn[layer]:
            if training:
                mean, var = z.mean(axis=0), z.var(axis=0)
            else:
                mean, var = f64(net.running_mean[layer]), f64(net.running_var[layer])
            h = f64(net.gammas[layer]) * (z - mean) / np.sqrt(var + net.spec.bn_eps) \
                + f64(net.betas[layer])
        a = ACT[net.activations[layer]](z if h is None else h)
        out.append((z, h, a))
    return out


def expected_row(layer, z, h, a, activation):
    row = {"layer": layer}
    for prefix, v in (("z", z), ("h", h), ("a", a)):
        row[f"{prefix}_mean"] = np.nan if v is None else v.mean()
        row[f"{prefix}_std"] = np.nan if v is None else v.std()
        for q in Q:
            row[f"{prefix}_p{q}"] = np.nan if v is None else np.percentile(v, q)
    pre = z if h is None else h
    for q in (15, 50, 85):
        row[f"unit0_p{q}"] = np.percentile(pre[:, 0], q)
    if activation == "tanh":
        row["saturated_fraction"] = np.mean(np.abs(a) > 0.97)
    elif activation == "sigmoid":
        row["saturated_fraction"] = np.mean((a < 0.03) | (a > 0.97))
    else:
        row["saturated_fraction"] = np.nan
    never = np.all(pre <= 0, axis=0).mean()
    row["dead_fraction"] = never if activation == "relu" else np.nan
    row["inactive_fraction"] = never if activation in ("relu", "leaky_relu", "elu", "gelu",
                                                       "gelu_tanh") else np.nan
    for key in ("g_mean", "g_std", "g_p2") + tuple(f"g_p{q}" for q in Q):
        row[key] = np.nan
    return row


def check_rows(net, x, training, rtol=1e-9, atol=1e-10):
    rows = layer_statistics(net, x, training=training)
    assert [r["layer"] for r in rows] == list(range(1, net.n_layers + 1))
    ref = numpy_forward(net, x, training)
    for row, (z, h, a), act in zip(rows, ref, net.activations):
        assert tuple(row) == LAYER_COLUMNS
        want = expected_row(row["layer"], z, h, a, act)
        for key in LAYER_COLUMNS:
            assert np.isnan(row[key]) == np.isnan(want[key]), (row["layer"], key)
            if not np.isnan(want[key]):
                assert abs(row[key] - want[key]) <= atol + rtol * abs(want[key]), \
                    (row["layer"], key, row[key], want[key])
    return rows


@pytest.mark.parametrize("activation,batchnorm,training", [
    ("tanh", False, True), ("sigmoid", False, True), ("relu", True, True),
    ("leaky_relu", True, False), ("gelu", False, True), ("elu", True, True)])
def test_statistics_match_a_numpy_forward(activation, batchnorm, training):
    net = MLP([5, 7, 6, 3], activation=activation, batchnorm=batchnorm, seed=3, bias_scale=0.2)
    if batchnorm:
        rng = np.random.default_rng(1)
        for layer in range(2):  # non-trivial affine and running statistics
            net.gammas[layer][...] = rng.uniform(0.5, 2.0, 7 if layer == 0 else 6)
            net.betas[layer][...] = rng.normal(0, 0.5, 7 if layer == 0 else 6)
            net.running_mean[layer][...] = rng.normal(0, 0.3, 7 if layer == 0 else 6)
            net.running_var[layer][...] = rng.uniform(0.5, 2.0, 7 if layer == 0 else 6)
    rows = check_rows(net, inputs(), training)
    hidden = rows[:-1]
    assert all(np.isnan(r["h_mean"]) != batchnorm for r in hidden)
    assert np.isnan(rows[-1]["h_p50"])  # the output layer never has batch norm


def test_statistics_leave_parameters_and_running_averages_alone():
    net = MLP([5, 8, 3], activation="relu", batchnorm=True, seed=0)
    params, running = net.params.copy(), net.running.copy()
    layer_statistics(net, inputs(), training=True)
    assert np.array_equal(params, net.params) and np.array_equal(running, net.running)


def test_float32_network_statistics():
    net = MLP([5, 16, 3], activation="tanh", dtype="float32", seed=2)
    check_rows(net, inputs(40), True, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "elu", "gelu"])
def test_never_active_units_with_biases_forced_negative_and_positive(activation):
    """inactive_fraction: the whole relu-like family; dead_fraction: ReLU only (NaN else)."""
    net = MLP([5, 10, 3], activation=activation, seed=0)
    x = inputs()
    for bias, share in ((-100.0, 1.0), (100.0, 0.0)):
        net.biases[0][...] = bias
        row = layer_statistics(net, x)[0]
        assert row["inactive_fraction"] == share
        assert row["dead_fraction"] == share if activation == "relu" \
            else np.isnan(row["dead_fraction"])
    net.biases[0][:4] = -100.0
    assert layer_statistics(net, x)[0]["inactive_fraction"] == pytest.approx(0.4)


def test_dead_units_over_the_whole_training_set_not_only_the_evaluation_rows():
    """active (a pass over every training row) decides dead_fraction, not the rows x: a unit
    negative on the evaluation rows but positive on a later training row is not dead."""
    from studies.analysis.metrics import evaluation_outputs, new_active
    net = MLP([1, 2, 2], activation="relu", seed=0)
    net.weights[0][...] = [[1.0], [-1.0]]
    net.biases[0][...] = 0.0
    x_train = np.array([[-1.0], [-2.0], [3.0], [-1.5]])
    active = new_active(net)
    evaluation_outputs(net, x_train, True, active)
    assert layer_statistics(net, x_train[:2])[0]["dead_fraction"] == 0.5  # these rows only
    assert layer_statistics(net, x_train[:2], active=active)[0]["dead_fraction"] == 0.0


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_columns_from_an_evaluation_pass_equal_a_training_mode_pass(activation):
    """Without batch norm, the first rows an evaluation pass leaves in the workspace summarize
    to the bits of a separate training-mode pass over them (what a run's metric step reuses);
    split into chunks, the outputs are those of one pass."""
    from studies.analysis import metrics
    net = MLP([5, 16, 16, 3], activation=activation, seed=1, dtype="float32")
    x_train = inputs(n=40, seed=2).astype(np.float32)
    active = metrics.new_active(net)
    whole = metrics.evaluation_outputs(net, x_train, True, active)
    reused = metrics.workspace_layer_columns(net, 12, active=active)
    fresh = metrics.layer_columns(net, x_train[:12], active=active)
    for column in LAYER_COLUMNS:
        assert np.array_equal(reused[column], fresh[column], equal_nan=True), column
    chunked = metrics.EVALUATION_CHUNK
    try:
        metrics.EVALUATION_CHUNK = 7
        assert np.array_equal(metrics.evaluation_outputs(net, x_train, True), whole)
    finally:
        metrics.EVALUATION_CHUNK = chunked


def test_a_unit_active_on_a_single_row_is_not_dead():
    net = MLP([1, 2, 2], activation="relu", seed=0)
    net.weights[0][...] = [[1.0], [-1.0]]
    net.biases[0][...] = 0.0
    x = np.array([[-1.0], [-2.0], [3.0]])  # unit 0 positive on the last row only; unit 1 never
    row = layer_statistics(net, x)[0]
    assert row["dead_fraction"] == 0.0
    x = np.array([[-1.0], [-2.0], [-3.0]])
    assert layer_statistics(net, x)[0]["dead_fraction"] == 0.5


@pytest.mark.parametrize("activation", ["sigmoid", "tanh"])
def test_saturated_fraction_with_huge_weights(activation):
    net = MLP([5, 32, 3], activation=activation, init="naive_normal", init_scale=50.0, seed=0)
    rows = check_rows(net, inputs(50), True)
    assert rows[0]["saturated_fraction"] > 0.95
    small = MLP([5, 32, 3], activation=activation, init="naive_normal", init_scale=0.01, seed=0)
    assert layer_statistics(small, inputs(50))[0]["saturated_fraction"] == 0.0


@pytest.mark.parametrize("activation", ["relu", "identity", "gelu", "elu"])
def test_saturation_is_nan_where_it_does_not_apply(activation):
    net = MLP([5, 6, 3], activation=activation, seed=0)
    rows = layer_statistics(net, inputs())
    assert all(np.isnan(r["saturated_fraction"]) for r in rows)
    assert np.isnan(rows[-1]["dead_fraction"])  # softmax output


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "identity"])
def test_dead_fraction_is_nan_where_it_does_not_apply(activation):
    net = MLP([5, 6, 3], activation=activation, seed=0)
    net.biases[0][...] = -100.0
    assert all(np.isnan(r["dead_fraction"]) for r in layer_statistics(net, inputs()))


def test_non_finite_activations_give_nan_percentiles_not_errors():
    net = MLP([5, 6, 3], activation="identity", loss="mse", seed=0)
    net.weights[0][0, 0] = 1e308
    net.weights[1][...] = 1e308  # overflow to inf, then inf - inf = NaN in layer 2
    rows = layer_statistics(net, inputs())
    assert np.isnan(rows[1]["a_p50"]) or np.isinf(rows[1]["a_p50"])


def test_statistics_validate_inputs():
    net = MLP([5, 6, 3], activation="relu", batchnorm=True, seed=0)
    with pytest.raises(ValueError, match="shape"):
        layer_statistics(net, np.zeros((4, 2)))
    with pytest.raises(ValueError, match="2 rows"):
        layer_statistics(net, np.zeros((1, 5)))
    assert len(layer_statistics(net, np.zeros((1, 5)), training=False)) == 2


def trained_history():
    x = inputs(32)
    y = np.random.default_rng(0).integers(0, 3, 32)
    net = MLP([5, 8, 6, 3], activation="tanh", seed=0)
    return net, net.fit(x, y, SGD(lr=0.1), epochs=3, batch_size=8, evaluate=False)


def test_step_frames_are_tidy_and_compute_the_update_ratio():
    net, history = trained_history()
    per_step, layers = step_frames(history.steps, step_offset=10)
    assert tuple(per_step.columns) == STEP_COLUMNS
    assert tuple(layers.columns) == KERNEL_LAYER_COLUMNS
    assert list(per_step["step"]) == list(range(10, 22))
    assert len(layers) == 12 * 3 and list(layers["layer"][:4]) == [1, 2, 3, 1]
    s = history.steps
    assert np.array_equal(per_step["loss"], s["loss"])
    second = layers[(layers.step == 11) & (layers.layer == 2)].iloc[0]
    assert second.w_grad_norm == s["w_grad_norm"][1, 1]
    assert second.update_ratio == pytest.approx(s["w_update_norm"][1, 1] / s["w_norm"][1, 1])
    assert 0 < second.update_ratio < 1
    rows, layer_rows = step_records(history.steps)
    assert rows[0]["step"] == 0 and set(rows[0]) == set(STEP_COLUMNS)
    assert len(layer_rows) == 36 and set(layer_rows[0]) == set(KERNEL_LAYER_COLUMNS)


def test_step_frames_from_a_record_with_unused_rows():
    rec = allocate_record(5, 2)
    rec.loss[:2] = [1.0, 0.5]
    rec.w_norm[:2] = [[2.0, 4.0], [2.0, 0.0]]
    rec.w_update_norm[:2] = [[0.002, 0.04], [0.0, 0.0]]
    per_step, layers = step_frames(rec, step_offset=3, n_steps=2)
    assert list(per_step["step"]) == [3, 4]
    assert list(layers["update_ratio"][:2]) == [0.001, 0.01]
    assert np.isnan(layers["update_ratio"].iloc[3])  # 0 / 0


def test_merge_keeps_metric_only_and_kernel_only_steps():
    net, history = trained_history()
    _, kernel = step_frames(history.steps)
    stats = layer_statistics(net, inputs(16))
    merged = merge_layer_rows(kernel, [{"step": 0, **r} for r in stats]
                              + [{"step": 12, **r} for r in stats])
    assert len(merged) == 12 * 3 + 3
    assert merged[merged.step == 0]["a_mean"].notna().all()
    assert merged[merged.step == 5]["a_mean"].isna().all()
    assert merged[merged.step == 12]["w_grad_norm"].isna().all()
    assert isinstance(merged, pd.DataFrame) and merged["step"].is_monotonic_increasing


@pytest.mark.parametrize("batchnorm", [False, True])
def test_backpropagated_gradient_statistics_match_the_reference(batchnorm):
    from kernels.reference import reference_trace_of
    net = MLP([5, 7, 6, 3], activation="tanh", batchnorm=batchnorm, seed=4, bias_scale=0.2)
    x = inputs()
    y = np.random.default_rng(2).integers(0, 3, len(x))
    ref = reference_trace_of(net, x, y)
    before = net.params.copy()
    rows = layer_statistics(net, x, training=True, y=y)
    assert np.array_equal(net.params, before)
    for row in rows:
        g = ref[f"delta{row['layer']}"] * len(x)  # per-sample dl_i/dz
        want = {"g_mean": g.mean(), "g_std": g.std(), "g_p2": np.percentile(g, 2),
                **{f"g_p{q}": np.percentile(g, q) for q in Q}}
        for key, value in want.items():
            assert abs(row[key] - value) <= 1e-10 + 1e-9 * abs(value), (row["layer"], key)
    no_targets = layer_statistics(net, x, training=True)
    assert all(np.isnan(r["g_std"]) for r in no_targets)
    for key in ("a_mean", "z_p98", "unit0_p50"):
        assert [r[key] for r in no_targets] == [r[key] for r in rows]
