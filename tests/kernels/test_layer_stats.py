"""kernels/layer_stats.py: the compiled layer summaries equal their NumPy reference (mean and
std to the bit, as NumPy sums; percentiles and fractions exactly or within the dtype's
tolerance), the evaluation pass equals MLP.forward bit for bit and finds the units never
active on any row, and a fresh compile and a cached load give the same bits."""

import numpy as np
import pytest

from kernels import step as K
from kernels.layer_stats import SUMMARY_COLUMNS, _summary_into, \
    evaluation_rows, evaluation_rows_reference, layer_summaries, layer_summaries_reference, \
    output_scores, output_scores_reference
from kernels.mlp import MLP
from kernels.tolerance import assert_close
from _fresh_cache import fresh_and_cached

SIZES = (1, 7, 8, 9, 127, 128, 129, 1000, 8191, 8192, 8193, 20000, 32768)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mean_and_std_are_numpys_to_the_bit(dtype):
    rng = np.random.default_rng(0)
    for n in SIZES:
        values = (rng.standard_normal(n) * 3 + 1).astype(dtype)
        out = np.empty(6)
        _summary_into(values, out, 0)
        assert out[0] == np.mean(values, dtype=np.float64), n
        assert out[1] == np.std(values, dtype=np.float64), n
        expected = np.percentile(values.astype(np.float64), (15, 50, 85, 98))
        assert_close(out[2:], expected, np.float64, name=f"percentiles n={n}")


def _blocks(net, n):
    work = net.workspace(n)
    out = []
    for layer in range(net.n_layers):
        start = work.cap * int(net.spec.unit_start[layer])
        width = net.sizes[layer + 1]

        def block(buf):
            return buf[start:start + n * width].reshape(n, width).copy()
        out.append({"z": block(work.z), "h": block(work.h) if net.spec.bn[layer] else None,
                    "a": block(work.a), "dz": block(work.dz)})
    return out


NETS = [("tanh", False, np.float32), ("sigmoid", True, np.float32), ("relu", False, np.float64),
        ("elu", True, np.float64)]


@pytest.mark.parametrize("activation,batchnorm,dtype", NETS)
@pytest.mark.parametrize("backward", [False, True])
def test_layer_summaries_equal_the_reference(activation, batchnorm, dtype, backward):
    rng = np.random.default_rng(1)
    net = MLP([6, 9, 7, 4], activation=activation, batchnorm=batchnorm, dtype=dtype, seed=3)
    n = 50
    x = rng.normal(size=(n, 6)).astype(dtype)
    y = np.eye(4)[rng.integers(0, 4, n)].astype(dtype)
    work = net.workspace(n)
    work.x[:x.size] = x.ravel()
    if backward:
        work.y[:y.size] = y.ravel()
        K.gradients(net.spec, (net.params, net.grads, net.running), work, n, net._step_record)
    else:
        K.forward_batch(net.spec, net.params, net.running, work, n, True)
    table = np.empty((net.n_layers, len(SUMMARY_COLUMNS)))
    layer_summaries(net.spec, work, n, backward, table)
    names = net.activations
    for layer, b in enumerate(_blocks(net, n)):
        g = b["dz"] * b["dz"].dtype.type(n) if backward else None
        expected = layer_summaries_reference(b["z"], b["h"], b["a"], g, names[layer])
        for k, column in enumerate(SUMMARY_COLUMNS):
            got, want = table[layer, k], expected[column]
            if np.isnan(want) or column.endswith(("_mean", "_std")) \
                    or column == "saturated_fraction":
                assert got == want or (np.isnan(got) and np.isnan(want)), (layer, column)
            else:
                assert_close(got, want, np.float64, name=f"layer {layer + 1} {column}")


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "relu", "identity", "elu", "gelu",
                                        ("leaky_relu", 0.1), ("elu", 0.0)])
@pytest.mark.parametrize("batchnorm", [False, True])
def test_activation_percentiles_are_selections_bits(activation, batchnorm):
    """The a_* percentiles (proved from the activation input's order statistics when the
    activation is non-decreasing; selected otherwise, as for GELU)
    are the bits _summary_into gives selecting them from the activation's buffer."""
    name, param = activation if isinstance(activation, tuple) else (activation, None)
    options = {"activation_param": param} if param is not None else {}
    rng = np.random.default_rng(6)
    net = MLP([6, 40, 30, 4], activation=name, batchnorm=batchnorm, dtype="float32", seed=2,
              **options)
    n = 300
    x = (rng.normal(size=(n, 6)) * 3).astype(np.float32)
    work = net.workspace(n)
    work.x[:x.size] = x.ravel()
    K.forward_batch(net.spec, net.params, net.running, work, n, True)
    table = np.empty((net.n_layers, len(SUMMARY_COLUMNS)))
    layer_summaries(net.spec, work, n, False, table)
    at = SUMMARY_COLUMNS.index("a_mean")
    for layer, b in enumerate(_blocks(net, n)):
        selected = np.empty(6)
        _summary_into(b["a"].ravel(), selected, 0)
        assert np.array_equal(table[layer, at:at + 6].view(np.int64), selected.view(np.int64)), \
            (name, layer)


def test_cross_entropy_scores_equal_numpy():
    """The compiled log-sum-exp against NumPy's: ordinary, confident (|z| ~ 1e4, where a naive
    softmax overflows) and tied logits, a NaN row; accuracy exactly np.argmax's."""
    rng = np.random.default_rng(7)
    for scale in (1.0, 30.0, 1e4):
        z = rng.normal(size=(1437, 10)) * scale
        z[5] = 2.0  # a tie: the first largest logit is the prediction
        t = np.eye(10)[rng.integers(0, 10, 1437)]
        loss, accuracy = output_scores(z, t, True)
        want_loss, want_accuracy = output_scores_reference(z, t, True)
        assert_close(loss, want_loss, np.float64, name=f"loss scale {scale}")
        assert accuracy == want_accuracy
    z[9, 3] = np.nan
    loss, accuracy = output_scores(z, t, True)
    assert np.isnan(loss) and accuracy == output_scores_reference(z, t, True)[1]


def test_evaluation_rows_equal_forward_and_find_the_never_active_units():
    rng = np.random.default_rng(2)
    net = MLP([5, 8, 6, 3], activation="relu", dtype="float32", seed=0)
    net.biases[0][:3] = -100.0   # units 0..2 of layer 1 never active
    net.biases[1][:2] = 100.0    # units 0..1 of layer 2 always active
    x = rng.normal(size=(1000, 5)).astype(np.float32)
    for cap in (1000, 300, 64):  # whole, chunked, chunked with a partial last chunk
        other = net.copy()
        other._reset_buffers()
        other.workspace(cap)
        out = np.empty((1000, 3), np.float32)
        active = np.zeros(int(other.spec.unit_start[-1]), np.bool_)
        evaluation_rows(other.spec, other.params, other.running, other._work, x, out, True,
                        active)
        assert np.array_equal(out, net.forward(x, logits=True))
        trace = net.trace(x, np.eye(3)[np.zeros(1000, int)])
        pre = [trace[f"h{k}"] for k in range(1, net.n_layers + 1)]
        assert np.array_equal(active, evaluation_rows_reference(pre))
        assert not active[:3].any() and active[8:10].all()


def test_active_units_with_nan_count_as_active():
    net = MLP([2, 3, 2], activation="relu", seed=0)
    work = net.workspace(4)
    x = np.array([[np.nan, 0.0], [1.0, 1.0], [0.5, -1.0], [2.0, 0.0]], np.float32)
    work.x[:x.size] = x.ravel()
    K.forward_batch(net.spec, net.params, net.running, work, 4, True)
    active = np.zeros(int(net.spec.unit_start[-1]), np.bool_)
    K.active_units(net.spec, work, 4, active)
    assert active[:3].all()  # row 0 is NaN in every unit of layer 1


def test_output_scores_match_the_formulas():
    rng = np.random.default_rng(3)
    z = rng.normal(size=(20, 4)) * 5
    t = np.eye(4)[rng.integers(0, 4, 20)]
    loss, accuracy = output_scores(z, t, True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    assert_close(loss, -np.mean(np.log((p * t).sum(axis=1))), np.float64)
    assert accuracy == np.mean(z.argmax(1) == t.argmax(1))
    loss, accuracy = output_scores(z, t, False)
    assert accuracy is None and loss == ((z - t) ** 2).sum() / 20


FRESH_OR_CACHED = """
import numpy as np
from kernels import _jit
from kernels.layer_stats import _summary_into
v = np.random.default_rng(0).normal(size=20011).astype(np.float32)
out = np.empty(6)
_summary_into(v, out, 0)
print(sum(_summary_into.stats.cache_misses.values()), sum(_summary_into.stats.cache_hits.values()))
print(" ".join(float(x).hex() for x in out))
"""


def test_fresh_compile_and_cached_load_give_the_same_bits(tmp_path):
    fresh, cached = (out.split("\n") for out in fresh_and_cached(FRESH_OR_CACHED, tmp_path))
    assert fresh[0] == "1 0" and cached[0] == "0 1"
    assert fresh[1] == cached[1]
