"""Weight initializations (fan_in = n_{l-1}, fan_out = n_l), drawn in float64 from a seeded
`np.random.Generator` so float32 and float64 networks of one seed start from the same weights.

A deep random network in the mean-field sense (W_ij ~ N(0, sigma_w^2/fan_in)) is `lecun_normal`
with `gain=sigma_w`; biases ~ N(0, sigma_b^2) through `bias_scale=sigma_b`.
"""
import math
from dataclasses import dataclass

import numpy as np

from .registry import Entry, build_registry
from .validation import check_choice, check_nonnegative, check_positive, check_positive_int


@dataclass(frozen=True, kw_only=True)
class Init(Entry):
    """Registry entry (no runtime code: weights are drawn in Python). distribution: "normal",
    "uniform" or "orthogonal"; fan: the fan its variance divides by ("in", "avg" for
    (fan_in + fan_out)/2, or None); needs_scale: naive inits take `init_scale`."""
    distribution: str
    fan: str = None
    needs_scale: bool = False


INITS = build_registry([
    Init(name="naive_normal", formula="N(0, scale^2)", distribution="normal", needs_scale=True),
    Init(name="naive_uniform", formula="U(-scale, scale)", distribution="uniform",
         needs_scale=True),
    Init(name="glorot_standard", formula="U(+-1/sqrt(fan_in)) (Glorot & Bengio's 'standard' init)",
         distribution="uniform", fan="in"),
    Init(name="xavier_uniform", formula="U(+-gain sqrt(6/(fan_in+fan_out)))",
         distribution="uniform", fan="avg"),
    Init(name="xavier_normal", formula="N(0, gain^2 2/(fan_in+fan_out))", distribution="normal",
         fan="avg"),
    Init(name="he_uniform", formula="U(+-gain sqrt(6/fan_in))", distribution="uniform", fan="in"),
    Init(name="he_normal", formula="N(0, gain^2 2/fan_in)", distribution="normal", fan="in"),
    Init(name="lecun_normal", formula="N(0, gain^2/fan_in)", distribution="normal", fan="in"),
    Init(name="lecun_uniform", formula="U(+-gain sqrt(3/fan_in))", distribution="uniform",
         fan="in"),
    Init(name="orthogonal", formula="gain Q, Q from the QR of a Gaussian matrix (sign-corrected)",
         distribution="orthogonal"),
])

# Recommended gains, as torch.nn.init.calculate_gain.
GAINS = {"identity": 1.0, "sigmoid": 1.0, "tanh": 5.0 / 3.0, "relu": math.sqrt(2.0),
         "leaky_relu": math.sqrt(2.0 / (1 + 0.01**2)), "elu": 1.0, "gelu": 1.0,
         "gelu_tanh": 1.0, "softmax": 1.0}


def _check(name, n_out, n_in, gain, scale):
    """ValueError naming the argument for an unknown init, a width < 1, gain <= 0 or a missing
    or non-positive scale of a naive init."""
    check_choice("init", name, INITS)
    check_positive_int("n_out", n_out)
    check_positive_int("n_in", n_in)
    check_positive("gain", gain)
    if INITS[name].needs_scale:
        if scale is None:
            raise ValueError(f"scale: init {name!r} needs a scale (its std or bound)")
        check_positive("scale", scale)


def sample_weights(name, n_out, n_in, rng, gain=1.0, scale=None):
    """An (n_out, n_in) float64 matrix drawn by the named initialization."""
    _check(name, n_out, n_in, gain, scale)
    fan_in, fan_out = n_in, n_out
    shape = (n_out, n_in)
    if name == "naive_normal":
        return rng.normal(0.0, scale, shape)
    if name == "naive_uniform":
        return rng.uniform(-scale, scale, shape)
    if name == "glorot_standard":
        bound = 1.0 / math.sqrt(fan_in)
        return rng.uniform(-bound, bound, shape)
    if name == "xavier_uniform":
        bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-bound, bound, shape)
    if name == "xavier_normal":
        return rng.normal(0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)), shape)
    if name == "he_uniform":
        bound = gain * math.sqrt(6.0 / fan_in)
        return rng.uniform(-bound, bound, shape)
    if name == "he_normal":
        return rng.normal(0.0, gain * math.sqrt(2.0 / fan_in), shape)
    if name == "lecun_normal":
        return rng.normal(0.0, gain * math.sqrt(1.0 / fan_in), shape)
    if name == "lecun_uniform":
        bound = gain * math.sqrt(3.0 / fan_in)
        return rng.uniform(-bound, bound, shape)
    if name == "orthogonal":
        a = rng.normal(0.0, 1.0, (max(shape), min(shape)))
        q, r = np.linalg.qr(a)
        q *= np.sign(np.diag(r))
        return gain * (q if n_out >= n_in else q.T)
    raise ValueError(f"init: {name!r} has no sampler")


def sample_biases(n_out, rng, bias_scale=0.0):
    """Zeros, or N(0, bias_scale^2) when bias_scale > 0."""
    check_positive_int("n_out", n_out)
    check_nonnegative("bias_scale", bias_scale)
    if bias_scale == 0.0:
        return np.zeros(n_out)
    return rng.normal(0.0, bias_scale, n_out)


def expected_std(name, n_out, n_in, gain=1.0, scale=None):
    """The standard deviation the named initialization aims for (for tests and docs)."""
    _check(name, n_out, n_in, gain, scale)
    fan_in, fan_out = n_in, n_out
    uniform = {"naive_uniform": scale, "glorot_standard": 1 / math.sqrt(fan_in),
               "xavier_uniform": gain * math.sqrt(6 / (fan_in + fan_out)),
               "he_uniform": gain * math.sqrt(6 / fan_in),
               "lecun_uniform": gain * math.sqrt(3 / fan_in)}
    if name in uniform:
        return uniform[name] / math.sqrt(3.0)
    normal = {"naive_normal": scale, "xavier_normal": gain * math.sqrt(2 / (fan_in + fan_out)),
              "he_normal": gain * math.sqrt(2 / fan_in), "lecun_normal": gain / math.sqrt(fan_in),
              "orthogonal": gain / math.sqrt(max(fan_in, fan_out))}
    return normal[name]
