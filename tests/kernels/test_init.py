"""kernels/init.py: every initialization in INITS: shape, dtype, seeded reproducibility, the
empirical std against `expected_std` within a sampling bound computed from the sample size,
uniform bounds, orthogonality, the formulas against torch.nn.init (fan conventions, gains and
torch's own samples), biases, and ValueErrors for bad arguments."""
import math

import numpy as np
import pytest
import torch
from scipy import stats

from kernels.init import GAINS, INITS, expected_std, sample_biases, sample_weights
from kernels.tolerance import assert_close

torch.set_num_threads(1)

UNIFORM = {"naive_uniform", "glorot_standard", "xavier_uniform", "he_uniform", "lecun_uniform"}
NORMAL = {"naive_normal", "xavier_normal", "he_normal", "lecun_normal"}
SCALE = 0.3  # for the naive inits
N_OUT, N_IN = 400, 300  # unequal fans, so a fan_in/fan_out swap moves the std by 15%
# Probability that a correct sampler fails one sampling check: 1e-9 (two-sided).
P_FALSE_FAILURE = 1e-9
Z_BOUND = stats.norm.isf(P_FALSE_FAILURE / 2)  # ~6.1 standard errors


def draw(name, n_out=N_OUT, n_in=N_IN, seed=0, gain=1.0):
    return sample_weights(name, n_out, n_in, np.random.default_rng(seed), gain=gain, scale=SCALE)


def std_of(name, n_out=N_OUT, n_in=N_IN, gain=1.0):
    return expected_std(name, n_out, n_in, gain=gain, scale=SCALE)


def mean_square_interval(kind, n, sigma):
    """A (lo, hi) interval holding mean(w^2) of n i.i.d. zero-mean draws of std sigma with
    probability 1 - P_FALSE_FAILURE: exact chi-square for normals (n mean(w^2)/sigma^2 ~
    chi2(n)); for uniforms the CLT with Var(w^2) = 4 a^4/45 = 0.8 sigma^4 (a = sqrt(3) sigma)."""
    if kind == "normal":
        lo, hi = stats.chi2.ppf([P_FALSE_FAILURE / 2, 1 - P_FALSE_FAILURE / 2], n) / n
    else:
        half = Z_BOUND * math.sqrt(0.8 / n)
        lo, hi = 1 - half, 1 + half
    return lo * sigma ** 2, hi * sigma ** 2


def test_registry_names_and_gains_match_torch():
    assert all(key == init.name for key, init in INITS.items())
    assert UNIFORM | NORMAL | {"orthogonal"} == set(INITS)
    assert {name for name, i in INITS.items() if i.needs_scale} == {"naive_normal",
                                                                    "naive_uniform"}
    calc = torch.nn.init.calculate_gain
    assert_close(GAINS["identity"], calc("linear"), np.float64, "identity gain")
    for name in ("sigmoid", "tanh", "relu"):
        assert_close(GAINS[name], calc(name), np.float64, f"{name} gain")
    assert_close(GAINS["leaky_relu"], calc("leaky_relu", 0.01), np.float64, "leaky_relu gain")


@pytest.mark.parametrize("name", sorted(INITS))
@pytest.mark.parametrize("n_out, n_in", [(1, 1), (3, 7), (7, 3), (5, 5)])
def test_shape_dtype_and_seeded_reproducibility(name, n_out, n_in):
    w = draw(name, n_out, n_in, seed=5)
    assert w.shape == (n_out, n_in) and w.dtype == np.float64
    assert np.all(np.isfinite(w))
    assert w.tobytes() == draw(name, n_out, n_in, seed=5).tobytes()  # same seed, same bits
    if n_out * n_in > 1 or name != "orthogonal":  # a 1x1 orthogonal matrix is +-gain
        assert not np.array_equal(w, draw(name, n_out, n_in, seed=6))


@pytest.mark.parametrize("name", sorted(UNIFORM | NORMAL))
def test_empirical_std_matches_expected_std(name):
    gain = 1.7
    w = draw(name, gain=gain, seed=1)
    sigma = std_of(name, gain=gain)
    n = w.size
    # zero mean: |mean| within Z_BOUND standard errors
    assert abs(w.mean()) <= Z_BOUND * sigma / math.sqrt(n), (w.mean(), sigma)
    lo, hi = mean_square_interval("normal" if name in NORMAL else "uniform", n, sigma)
    mean_square = float(np.mean(w * w))
    assert lo <= mean_square <= hi, f"{name}: mean(w^2) {mean_square:.6g} outside " \
        f"[{lo:.6g}, {hi:.6g}] (expected std {sigma:.6g}, measured {math.sqrt(mean_square):.6g})"


@pytest.mark.parametrize("name", sorted(UNIFORM))
def test_uniform_bounds(name):
    """All |w| <= a = sqrt(3) sigma, and both extremes come near a: P(w > a (1 - d)) = d/2, so
    P(max w < a (1 - d)) = (1 - d/2)^n <= exp(-n d/2), and d = -2 ln(P/2)/n keeps the max and
    the min together below P_FALSE_FAILURE."""
    w = draw(name, seed=2)
    bound = math.sqrt(3.0) * std_of(name)
    assert np.abs(w).max() <= bound
    d = -2.0 * math.log(P_FALSE_FAILURE / 2) / w.size
    assert w.max() >= bound * (1 - d) and w.min() <= -bound * (1 - d)


@pytest.mark.parametrize("gain", [1.0, 5.0 / 3.0])
@pytest.mark.parametrize("n_out, n_in", [(3, 8), (8, 3), (6, 6), (1, 5)])
def test_orthogonal(n_out, n_in, gain):
    """Rows (n_out <= n_in) or columns orthonormal times gain; mean(w^2) = gain^2/max(fans)
    exactly, which is expected_std^2; Q sign-corrected so that Q^T A has a positive diagonal."""
    w = draw("orthogonal", n_out, n_in, seed=3, gain=gain)
    small = min(n_out, n_in)
    gram = w @ w.T if n_out <= n_in else w.T @ w
    assert_close(gram, gain ** 2 * np.eye(small), np.float64, "W W^T")
    assert_close(np.mean(w * w), std_of("orthogonal", n_out, n_in, gain) ** 2, np.float64,
                 "mean square")
    a = np.random.default_rng(3).normal(0.0, 1.0, (max(n_out, n_in), small))
    q = w / gain if n_out >= n_in else w.T / gain
    r = q.T @ a  # the R of A = Q R
    assert np.all(np.diag(r) > 0)
    assert_close(np.tril(r, -1), np.zeros_like(r), np.float64, "R upper triangular")


def test_orthogonal_matches_torch_on_the_gram_matrix():
    t = torch.empty(N_IN // 10, N_OUT // 10, dtype=torch.float64)
    torch.nn.init.orthogonal_(t, gain=2.0, generator=torch.Generator().manual_seed(0))
    w = draw("orthogonal", N_IN // 10, N_OUT // 10, gain=2.0)
    assert_close(w @ w.T, t @ t.T, np.float64, "gram vs torch")


def torch_fans(n_out, n_in):
    return torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(n_out, n_in))


@pytest.mark.parametrize("n_out, n_in", [(N_OUT, N_IN), (7, 50)])
def test_formulas_match_torch_nn_init(n_out, n_in):
    """torch's fan convention for an (out, in) weight, then torch's documented formulas:
    xavier std = gain sqrt(2/(fan_in + fan_out)), kaiming std = gain/sqrt(fan_in) (gain sqrt(2)
    for relu, 1 for linear), uniform bound sqrt(3) std; torch's default Linear weight bound
    1/sqrt(fan_in) is glorot_standard."""
    fan_in, fan_out = torch_fans(n_out, n_in)
    assert (fan_in, fan_out) == (n_in, n_out)
    gain = 1.3
    relu, linear = torch.nn.init.calculate_gain("relu"), torch.nn.init.calculate_gain("linear")
    torch_std = {
        "xavier_normal": gain * math.sqrt(2.0 / (fan_in + fan_out)),
        "xavier_uniform": gain * math.sqrt(2.0 / (fan_in + fan_out)),
        "he_normal": gain * relu / math.sqrt(fan_in),
        "he_uniform": gain * relu / math.sqrt(fan_in),
        "lecun_normal": gain * linear / math.sqrt(fan_in),
        "lecun_uniform": gain * linear / math.sqrt(fan_in),
        "glorot_standard": 1.0 / math.sqrt(fan_in) / math.sqrt(3.0),
    }
    for name, std in torch_std.items():
        assert_close(std_of(name, n_out, n_in, gain), std, np.float64, f"{name} std")


# our init, torch's in-place initializer and the kwargs making them the same distribution
TORCH_TWINS = [
    ("xavier_normal", torch.nn.init.xavier_normal_, {"gain": 1.3}, 1.3),
    ("xavier_uniform", torch.nn.init.xavier_uniform_, {"gain": 1.3}, 1.3),
    ("he_normal", torch.nn.init.kaiming_normal_, {"nonlinearity": "relu"}, 1.0),
    ("he_uniform", torch.nn.init.kaiming_uniform_, {"nonlinearity": "relu"}, 1.0),
    ("lecun_normal", torch.nn.init.kaiming_normal_, {"nonlinearity": "linear"}, 1.0),
    ("lecun_uniform", torch.nn.init.kaiming_uniform_, {"nonlinearity": "linear"}, 1.0),
]


@pytest.mark.parametrize("name, torch_init, kwargs, gain", TORCH_TWINS)
def test_torch_samples_have_our_expected_std(name, torch_init, kwargs, gain):
    """torch's own samples, not a transcription of its formulas: their mean square lies in the
    sampling interval of our expected_std, and uniform ones stay within our bound."""
    t = torch.empty(N_OUT, N_IN, dtype=torch.float64)
    torch_init(t, generator=torch.Generator().manual_seed(0), **kwargs)
    w = t.numpy()
    sigma = std_of(name, gain=gain)
    kind = "uniform" if name in UNIFORM else "normal"
    lo, hi = mean_square_interval(kind, w.size, sigma)
    assert lo <= float(np.mean(w * w)) <= hi, (name, math.sqrt(np.mean(w * w)), sigma)
    if kind == "uniform":
        assert np.abs(w).max() <= math.sqrt(3.0) * sigma * (1 + 1e-12)


def test_biases():
    rng = np.random.default_rng(4)
    zeros = sample_biases(7, rng)
    assert zeros.shape == (7,) and zeros.dtype == np.float64 and np.all(zeros == 0.0)
    assert np.all(sample_biases(7, rng, bias_scale=0.0) == 0.0)
    b = sample_biases(100_000, np.random.default_rng(5), bias_scale=0.2)
    assert b.shape == (100_000,) and b.dtype == np.float64
    assert b.tobytes() == sample_biases(100_000, np.random.default_rng(5), 0.2).tobytes()
    assert abs(b.mean()) <= Z_BOUND * 0.2 / math.sqrt(b.size)
    lo, hi = mean_square_interval("normal", b.size, 0.2)
    assert lo <= float(np.mean(b * b)) <= hi


@pytest.mark.parametrize("call, argument", [
    (lambda: sample_weights("he", 3, 4, np.random.default_rng(0)), "init"),
    (lambda: sample_weights(None, 3, 4, np.random.default_rng(0)), "init"),
    (lambda: expected_std("kaiming_normal", 3, 4), "init"),
    (lambda: sample_weights("naive_normal", 3, 4, np.random.default_rng(0)), "scale"),
    (lambda: sample_weights("naive_uniform", 3, 4, np.random.default_rng(0), scale=-1.0),
     "scale"),
    (lambda: expected_std("naive_normal", 3, 4, scale=0.0), "scale"),
    (lambda: sample_weights("he_normal", 3, 4, np.random.default_rng(0), gain=0.0), "gain"),
    (lambda: sample_weights("xavier_uniform", 3, 4, np.random.default_rng(0), gain=math.nan),
     "gain"),
    (lambda: sample_weights("orthogonal", 0, 4, np.random.default_rng(0)), "n_out"),
    (lambda: sample_weights("lecun_normal", 3, 2.5, np.random.default_rng(0)), "n_in"),
    (lambda: sample_biases(3, np.random.default_rng(0), bias_scale=-0.1), "bias_scale"),
    (lambda: sample_biases(0, np.random.default_rng(0)), "n_out"),
])
def test_bad_arguments_raise_value_error_naming_them(call, argument):
    with pytest.raises(ValueError, match=rf"^{argument}: "):
        call()
