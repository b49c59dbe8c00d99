"""The registries share one shape (name -> frozen Entry with code, formula and flags), their
codes are the kernels' constants, and the sets the studies use derive from their flags."""
import dataclasses

import numpy as np
import pytest

from kernels import activations as A
from kernels import clipping, optimizers, schedules
from kernels.activations import ACTIVATIONS, RELU_FAMILY, derivative_reference
from kernels.clipping import CLIPPING
from kernels.init import INITS
from kernels.losses import CROSS_ENTROPY, LOSSES, MSE
from kernels.optimizers import OPTIMIZERS
from kernels.registry import Entry, build_registry, code_to_name, names_where
from kernels.schedules import SCHEDULES

REGISTRIES = {"activations": ACTIVATIONS, "losses": LOSSES, "inits": INITS,
              "optimizers": OPTIMIZERS, "schedules": SCHEDULES, "clipping": CLIPPING}


@pytest.mark.parametrize("registry", REGISTRIES.values(), ids=REGISTRIES.keys())
def test_every_registry_maps_names_to_frozen_entries(registry):
    for name, entry in registry.items():
        assert isinstance(entry, Entry) and entry.name == name
        assert isinstance(entry.formula, str) and entry.formula and "\n" not in entry.formula
        with pytest.raises(dataclasses.FrozenInstanceError):
            entry.formula = "changed"


def test_codes_are_the_kernel_constants():
    assert {n: a.code for n, a in ACTIVATIONS.items()} == {
        "identity": A.IDENTITY, "sigmoid": A.SIGMOID, "tanh": A.TANH, "relu": A.RELU,
        "leaky_relu": A.LEAKY_RELU, "elu": A.ELU, "gelu": A.GELU, "gelu_tanh": A.GELU_TANH,
        "softmax": A.SOFTMAX}
    assert (LOSSES["mse"].code, LOSSES["cross_entropy"].code) == (MSE, CROSS_ENTROPY)
    assert {n: e.code for n, e in OPTIMIZERS.items()} == {
        "sgd": optimizers.SGD_CODE, "momentum": optimizers.MOMENTUM_CODE,
        "nesterov": optimizers.MOMENTUM_CODE, "rmsprop": optimizers.RMSPROP_CODE,
        "adam": optimizers.ADAM_CODE}
    assert {n: e.code for n, e in SCHEDULES.items()} == {
        "constant": schedules.CONSTANT, "step": schedules.STEP,
        "exponential": schedules.EXPONENTIAL, "inverse_time": schedules.INVERSE_TIME,
        "cosine": schedules.COSINE}
    assert {n: e.code for n, e in CLIPPING.items()} == {
        "none": clipping.NO_CLIP, "global_norm": clipping.GLOBAL_NORM,
        "layer_norm": clipping.LAYER_NORM, "value": clipping.VALUE}
    assert all(entry.code is None for entry in INITS.values())
    assert A.CODE_TO_NAME == {a.code: n for n, a in ACTIVATIONS.items()}


def test_build_registry_refuses_duplicates():
    with pytest.raises(ValueError, match="registry: duplicate name 'a'"):
        build_registry([Entry(name="a", formula="x"), Entry(name="a", formula="y")])
    with pytest.raises(ValueError, match="registry: duplicate code 1"):
        build_registry([Entry(name="a", formula="x", code=1), Entry(name="b", formula="y",
                                                                      code=1)])
    registry = build_registry([Entry(name="a", formula="x", code=3), Entry(name="b",
                                                                          formula="y")])
    assert code_to_name(registry) == {3: "a"} and names_where(registry, code=None) == ("b",)


def test_activation_families_and_matched_inits():
    assert names_where(ACTIVATIONS, family="relu-like") == (
        "relu", "leaky_relu", "elu", "gelu", "gelu_tanh")
    assert RELU_FAMILY == frozenset(names_where(ACTIVATIONS, family="relu-like"))
    assert names_where(ACTIVATIONS, family="sigmoid-like") == ("sigmoid", "tanh")
    assert names_where(ACTIVATIONS, hidden=False) == ("softmax",)
    for name, entry in ACTIVATIONS.items():
        assert entry.matched_init == ("he_normal" if name in RELU_FAMILY else "xavier_normal")
        assert entry.matched_init in INITS


HIDDEN = [n for n, a in ACTIVATIONS.items() if a.hidden]


@pytest.mark.parametrize("name", HIDDEN)
def test_dead_capable_means_an_interval_of_zero_derivative(name):
    """dead_capable <=> f' is exactly 0 on a whole interval (here h in [-6, 0]); ELU, GELU and
    Leaky ReLU keep f' != 0 there, ReLU does not."""
    h = np.linspace(-6.0, 0.0, 601)
    zero_on_interval = bool(np.all(derivative_reference(name, h) == 0.0))
    assert ACTIVATIONS[name].dead_capable == zero_on_interval
    assert names_where(ACTIVATIONS, dead_capable=True) == ("relu",)


@pytest.mark.parametrize("name", HIDDEN)
def test_saturation_flag_means_a_vanishing_derivative_in_both_tails(name):
    """saturates <=> f' -> 0 as h -> -inf and as h -> +inf (a bounded output)."""
    vanishes = bool(np.all(np.abs(derivative_reference(name, np.array([-30.0, 30.0]))) < 1e-10))
    assert ACTIVATIONS[name].saturates == vanishes


def test_the_studies_sets_derive_from_the_registry():
    from studies.analysis.metrics import DEAD_CAPABLE, INACTIVE_CAPABLE
    from studies.plots.vanishing import MATCHED_INIT
    from kernels.mlp import RELU_FAMILY as MLP_RELU_FAMILY
    # dead_fraction: strictly dead units (zero gradient on every row), ReLU only;
    # inactive_fraction: never-active units of the whole relu-like family
    assert DEAD_CAPABLE == ("relu",) == tuple(n for n, a in ACTIVATIONS.items()
                                              if a.dead_capable)
    assert INACTIVE_CAPABLE == ("relu", "leaky_relu", "elu", "gelu", "gelu_tanh")
    assert MLP_RELU_FAMILY == RELU_FAMILY == frozenset(INACTIVE_CAPABLE)
    assert {n: i for n, i in MATCHED_INIT.items() if i != "xavier_normal"} == {
        n: "he_normal" for n in INACTIVE_CAPABLE}


def test_other_flags():
    assert LOSSES["cross_entropy"].classification and not LOSSES["mse"].classification
    assert names_where(INITS, needs_scale=True) == ("naive_normal", "naive_uniform")
    assert names_where(CLIPPING, per_layer=True) == ("layer_norm",)
    assert [n for n, e in OPTIMIZERS.items() if e.uses_eps] == ["rmsprop", "adam"]
    assert SCHEDULES["cosine"].params == ("t_max", "eta_min")
    assert OPTIMIZERS["nesterov"].variant_of == "momentum"
