"""studies.config: key ranges, cross-key checks, the per-run flag and the objects a resolved
configuration builds (through the kernels' factories)."""
import numpy as np
import pandas as pd
import pytest

from kernels.clipping import Clip
from kernels.optimizers import Adam, Momentum, RMSProp, SGD
from kernels.schedules import Cosine, Exponential, InverseTime, Step
from studies.config import FIELDS, PER_RUN_KEYS, build_clip, build_optimizer, check_value, \
    resolve


def test_per_run_keys_are_what_multimlp_takes_per_run():
    """The per_run flag marks exactly the keys that set initial parameters, data order,
    optimizer, schedule and clipping (all per run in MultiMLP); every other key groups."""
    assert PER_RUN_KEYS == {
        "seed", "init", "gain", "init_scale", "sigma_w2", "sigma_b2",
        "optimizer", "lr", "momentum", "beta1", "beta2", "rho", "eps", "eps_inside_sqrt",
        "weight_decay", "schedule", "step_size", "gamma", "decay_k", "eta_min", "warmup",
        "clip", "clip_threshold"}
    assert all(FIELDS[k].per_run for k in PER_RUN_KEYS)


@pytest.mark.parametrize("key,value,message", [
    ("beta1", 1.0, r"beta1 = 1.0: expected a value < 1"),
    ("beta2", 1.5, r"beta2 = 1.5: expected a value < 1"),
    ("rho", 1.0, r"rho = 1.0: expected a value < 1"),
    ("momentum", 1.0, r"momentum = 1.0: expected a value < 1"),
    ("momentum", -0.1, r"momentum = -0.1: expected a value >= 0"),
    ("seed", -1, r"seed = -1: expected a value >= 0"),
    ("seed", 2**63, r"seed = 9223372036854775808: expected a value < 9223372036854775808"),
    ("data_seed", 2**64, r"data_seed = 18446744073709551616: expected a value <"),
    ("width", 65537, r"width = 65537: expected a value <= 65536"),
    ("depth", 1001, r"depth = 1001: expected a value <= 1000"),
    ("steps", 10**8 + 1, r"steps = 100000001: expected a value <= 100000000"),
    ("n_samples", 10**7 + 1, r"n_samples = 10000001: expected a value <= 10000000"),
    ("batch_size", 10**7 + 1, r"batch_size = 10000001: expected a value <= 10000000"),
    ("eval_rows", 10**7 + 1, r"eval_rows = 10000001: expected a value <= 10000000"),
    ("eps", 0.0, r"eps = 0.0: expected a value > 0"),
    ("dataset_options", {"noise": {"a": 1}}, r"dataset_options.noise = \{'a': 1\}: expected a "
                                             r"string, a boolean, a finite number or a list"),
    ("dataset_options", {"noise": float("nan")}, r"dataset_options.noise = nan"),
    ("dataset_options", {"widths": [1, [2]]}, r"dataset_options.widths = \[1, \[2\]\]"),
    ("dataset_options", [1], r"dataset_options = \[1\]: expected a table of options"),
])
def test_out_of_range_values_are_one_line_errors(key, value, message):
    with pytest.raises(ValueError, match=f"^spec.toml: {message}") as info:
        check_value(key, value, "spec.toml")
    assert "\n" not in str(info.value)


def test_values_at_the_bounds_are_accepted():
    assert check_value("seed", 2**63 - 1, "c") == 2**63 - 1
    assert check_value("width", 65536, "c") == 65536
    assert check_value("beta2", 0.9999, "c") == 0.9999
    assert check_value("momentum", 0, "c") == 0.0


def test_eps_must_be_nonzero_in_the_dtype():
    with pytest.raises(ValueError, match=r"^c: eps = 1e-46: rounds to 0 in float32; expected "
                                         r"a value >= 1.4e-45"):
        resolve({"optimizer": "adam", "eps": 1e-46, "dtype": "float32"}, "c")
    assert resolve({"optimizer": "adam", "eps": 1e-46, "dtype": "float64"})["eps"] == 1e-46
    # SGD does not use eps: the key is reset, not checked
    assert resolve({"optimizer": "sgd", "eps": 1e-46, "dtype": "float32"})["eps"] == 1e-8


def test_lr_must_not_overflow_the_dtype():
    with pytest.raises(ValueError, match=r"^c: lr = 1e\+300: overflows float32"):
        resolve({"lr": 1e300, "dtype": "float32"}, "c")


def test_batchnorm_needs_batches_of_two_rows():
    with pytest.raises(ValueError, match="^c: batch_size = 1 with batchnorm = true"):
        resolve({"batchnorm": True, "batch_size": 1}, "c")
    assert resolve({"batchnorm": True, "batch_size": 0})["batch_size"] == 0
    assert resolve({"batchnorm": False, "batch_size": 1})["batch_size"] == 1


def test_dataset_options_are_normalized_and_store(tmp_path):
    assert resolve({"dataset_options": {}})["dataset_options"] is None
    options = resolve({"dataset_options": {"noise": 0.2, "classes": [1, 2], "name": "a",
                                           "flag": True}})["dataset_options"]
    assert list(options) == ["classes", "flag", "name", "noise"]
    from studies.store import Store
    store = Store(tmp_path)
    store.prepare()
    for run_id, opts in (("empty", {}), ("some", {"noise": 0.2})):
        config = resolve({"dataset_options": opts, "seed": 2**63 - 1})
        part = store.write_run(run_id, {"status": "completed", **config}, {"step": [0]},
                               {"layer": [1]})
        row = pd.read_parquet(part / "run.parquet").iloc[0]
        assert row["seed"] == 2**63 - 1


@pytest.mark.parametrize("config,expected", [
    ({"optimizer": "sgd", "lr": 0.1}, SGD(0.1)),
    ({"optimizer": "momentum", "momentum": 0.5}, Momentum(0.01, momentum=0.5)),
    ({"optimizer": "nesterov"}, Momentum(0.01, momentum=0.9, nesterov=True)),
    ({"optimizer": "rmsprop", "rho": 0.9, "eps": 1e-6, "eps_inside_sqrt": False},
     RMSProp(0.01, rho=0.9, eps=1e-6, eps_inside_sqrt=False)),
    ({"optimizer": "adam", "beta1": 0.8, "beta2": 0.99, "weight_decay": 0.1},
     Adam(0.01, beta1=0.8, beta2=0.99, weight_decay=0.1)),
    ({"schedule": "step", "step_size": 7, "gamma": 0.3}, SGD(0.01, schedule=Step(7, 0.3))),
    ({"schedule": "exponential", "gamma": 0.9, "warmup": 3},
     SGD(0.01, schedule=Exponential(0.9, warmup=3))),
    ({"schedule": "inverse_time", "decay_k": 0.2}, SGD(0.01, schedule=InverseTime(0.2))),
    ({"schedule": "cosine", "steps": 40, "eta_min": 1e-4},
     SGD(0.01, schedule=Cosine(40, 1e-4))),
])
def test_build_optimizer_matches_the_classes(config, expected):
    built = build_optimizer(resolve(config))
    assert type(built) is type(expected) and built.config() == expected.config()


def test_build_clip():
    assert build_clip(resolve({})) == Clip()
    assert build_clip(resolve({"clip": "value", "clip_threshold": 0.5})) == Clip("value", 0.5)
    assert build_clip(resolve({"clip": "none", "clip_threshold": 0.5})) == Clip()


def test_field_bounds_are_consistent():
    for name, field in FIELDS.items():
        if field.minimum is not None and field.maximum is not None:
            assert field.minimum < field.maximum, name
        if field.default is not None and field.kind in (int, float) and name != "seed":
            assert check_value(name, field.default, "defaults") == field.default
    assert np.dtype("float32").type(FIELDS["eps"].default) > 0
