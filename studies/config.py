"""Run configurations: every key a study may fix or sweep, its default and its check, and the
objects (network, optimizer, clipping) one resolved configuration builds.

A configuration is a flat dict of scalars (and the `hidden` list), so it hashes into a run_id.
"""
import difflib
import math
import numbers
from dataclasses import dataclass

import numpy as np

from kernels.activations import ACTIVATIONS
from kernels.clipping import CLIPPING, make_clip
from kernels.init import INITS
from kernels.losses import LOSSES
from kernels.optimizers import OPTIMIZERS, make_optimizer
from kernels.schedules import SCHEDULES, make_schedule
from kernels.validation import SEED_BOUND

HIDDEN_ACTIVATIONS = sorted(k for k, a in ACTIVATIONS.items() if a.hidden)
OPTIMIZER_NAMES = list(OPTIMIZERS)
# loss+output pairs the kernels accept: cross-entropy is taken on softmax outputs only
OBJECTIVES = tuple(f"{loss}+{act}" for loss in LOSSES for act in ACTIVATIONS
                   if act == "softmax" or loss != "cross_entropy")


@dataclass(frozen=True)
class Field:
    """A configuration key: its type, default, allowed values or range, a description, and
    per_run: whether runs that differ in it can still train together in one multi-run group
    (seed, init, optimizer, schedule, clipping) rather than needing their own."""
    kind: type
    default: object
    help: str
    choices: tuple = ()
    minimum: float = None
    exclusive_minimum: bool = False
    nullable: bool = False
    maximum: float = None
    exclusive_maximum: bool = False
    per_run: bool = False


# sane upper bounds: a typo (1e9 steps, width 10**6) is an error, not hours of work or an
# out-of-memory crash; seeds stay below 2^63, what NumPy accepts and an int64 column stores
MAX_WIDTH, MAX_DEPTH, MAX_STEPS, MAX_ROWS = 65536, 1000, 10**8, 10**7
FRACTION = dict(minimum=0, maximum=1, exclusive_maximum=True)  # [0, 1)
SEED = dict(minimum=0, maximum=SEED_BOUND, exclusive_maximum=True)  # [0, 2^63)


FIELDS = {
    # data
    "dataset": Field(str, "digits", "dataset name or file path (see studies.data.datasets)"),
    "dataset_options": Field(dict, None, "builder options of the dataset, e.g. {noise = 0.2}",
                             nullable=True),
    "data_seed": Field(int, 0, "seed of the dataset's split/generation", **SEED),
    "n_samples": Field(int, None, "subsample the dataset to this many rows", minimum=1,
                       maximum=MAX_ROWS, nullable=True),
    "eval_rows": Field(int, 512, "training rows used for activation statistics", minimum=2,
                       maximum=MAX_ROWS),
    "gradient_stats": Field(bool, False, "also record percentiles of the back-propagated "
                            "gradient per layer (g_*; a backward pass over the evaluation rows "
                            "at each metric step)"),
    # curvature and gradient noise (studies.run.curvature_log; docs/curvature.md)
    "curvature": Field(bool, False, "also record the Hessian's sharpness (top eigenvalue, "
                       "Lanczos) and trace (Hutchinson) of the loss on the curvature rows"),
    "gradient_noise": Field(bool, False, "also record the simple noise scale B_simple = "
                            "tr(Sigma)/|G|^2 and each layer's gradient SNR on the curvature "
                            "rows (per-example gradients; not with batch norm)"),
    "curvature_every": Field(int, 0, "measure curvature/noise at metric steps that are "
                             "multiples of this (a multiple of metrics_every) and at the last "
                             "step; 0 = at every metric step", minimum=0, maximum=MAX_STEPS),
    "curvature_rows": Field(int, 0, "the first this many training rows make the batch whose "
                            "Hessian and gradient noise are measured; 0 = the whole training "
                            "set (with batch_size 0, the Hessian of the training loss)",
                            minimum=0, maximum=MAX_ROWS),
    "trace_samples": Field(int, 100, "Hutchinson probes of the Hessian trace", minimum=2,
                           maximum=100000),
    "sharpness_tol": Field(float, 1e-6, "Lanczos stops when the top Ritz residual is at most "
                           "this times the eigenvalue", minimum=0, exclusive_minimum=True,
                           maximum=1, exclusive_maximum=True),
    "sharpness_max_iter": Field(int, 100, "at most this many Hessian-vector products per "
                                "sharpness (capped at n_params)", minimum=1, maximum=100000),
    # architecture
    "depth": Field(int, 2, "number of hidden layers", minimum=0, maximum=MAX_DEPTH),
    "width": Field(int, 64, "units per hidden layer", minimum=1, maximum=MAX_WIDTH),
    "activation": Field(str, "relu", "hidden activation", choices=tuple(HIDDEN_ACTIVATIONS)),
    "output_activation": Field(str, None, "output activation (default: by loss)",
                               choices=tuple(ACTIVATIONS), nullable=True),
    "loss": Field(str, None, "loss (default: cross_entropy for classification, else mse)",
                  choices=tuple(LOSSES), nullable=True),
    "batchnorm": Field(bool, False, "batch norm on hidden layers"),
    "dtype": Field(str, "float32", "floating-point type", choices=("float32", "float64")),
    "device": Field(str, "cpu", "where training runs: cpu, or cuda (kernels.cuda; a GPU or "
                    "the simulator)", choices=("cpu", "cuda")),
    # initialization
    "init": Field(str, None, "weight init (default: he_normal for ReLU family, else "
                  "xavier_normal)", choices=tuple(INITS), nullable=True, per_run=True),
    "gain": Field(float, 1.0, "init gain", minimum=0, exclusive_minimum=True, per_run=True),
    "init_scale": Field(float, None, "std/bound of naive inits", minimum=0,
                        exclusive_minimum=True, nullable=True, per_run=True),
    "sigma_w2": Field(float, None, "mean-field weight variance: W ~ N(0, sigma_w2/fan_in) "
                      "(sets init=lecun_normal, gain=sqrt(sigma_w2))", minimum=0,
                      exclusive_minimum=True, nullable=True, per_run=True),
    "sigma_b2": Field(float, 0.0, "bias variance: b ~ N(0, sigma_b2)", minimum=0,
                      per_run=True),
    # optimization
    "optimizer": Field(str, "sgd", "optimizer", choices=tuple(OPTIMIZER_NAMES), per_run=True),
    "lr": Field(float, 0.01, "learning rate", minimum=0, exclusive_minimum=True,
                per_run=True),
    "momentum": Field(float, 0.9, "momentum (momentum, nesterov)", **FRACTION, per_run=True),
    "beta1": Field(float, 0.9, "Adam beta1", **FRACTION, per_run=True),
    "beta2": Field(float, 0.999, "Adam beta2", **FRACTION, per_run=True),
    "rho": Field(float, 0.99, "RMSProp decay", **FRACTION, per_run=True),
    "eps": Field(float, 1e-8, "RMSProp/Adam epsilon (nonzero in the dtype)", minimum=0,
                 exclusive_minimum=True, per_run=True),
    "eps_inside_sqrt": Field(bool, True, "report's lr/sqrt(v+eps) (else PyTorch's)",
                             per_run=True),
    "weight_decay": Field(float, 0.0, "L2 weight decay", minimum=0, per_run=True),
    "schedule": Field(str, "constant", "learning-rate schedule", choices=tuple(SCHEDULES),
                      per_run=True),
    "step_size": Field(int, 100, "step schedule: steps between decays", minimum=1,
                       maximum=MAX_STEPS, per_run=True),
    "gamma": Field(float, 0.5, "step/exponential schedule factor", minimum=0,
                   exclusive_minimum=True, per_run=True),
    "decay_k": Field(float, 1e-3, "inverse-time schedule rate", minimum=0, per_run=True),
    "eta_min": Field(float, 0.0, "cosine schedule floor", minimum=0, per_run=True),
    "warmup": Field(int, 0, "linear warmup steps", minimum=0, maximum=MAX_STEPS,
                    per_run=True),
    "clip": Field(str, "none", "gradient clipping mode", choices=tuple(CLIPPING),
                  per_run=True),
    "clip_threshold": Field(float, 1.0, "clipping threshold", minimum=0,
                            exclusive_minimum=True, per_run=True),
    "batch_size": Field(int, 64, "rows per step; 0 = full batch (batch GD), 1 = SGD",
                        minimum=0, maximum=MAX_ROWS),
    "steps": Field(int, 500, "optimizer steps", minimum=1, maximum=MAX_STEPS),
    "metrics_every": Field(int, 50, "record metrics every this many steps", minimum=1,
                           maximum=MAX_STEPS),
    "seed": Field(int, 0, "seed of initialization and shuffling", **SEED, per_run=True),
    "objective": Field(str, None, "loss and output activation as one value 'loss+activation' "
                       "(e.g. 'mse+sigmoid'), so one sweep axis can pair them; leave loss and "
                       "output_activation unset", choices=tuple(OBJECTIVES), nullable=True),
}


# keys in which runs of one multi-run group may differ (everything else they share)
PER_RUN_KEYS = frozenset(name for name, f in FIELDS.items() if f.per_run)


def suggest(word, choices):
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_value(key, value, where):
    """Checks one configuration value; returns it normalized (ints to floats etc.)."""
    if key not in FIELDS:
        raise ValueError(f"{where}: unknown key {key!r}{suggest(key, FIELDS)}; allowed keys: "
                         f"{sorted(FIELDS)}")
    field = FIELDS[key]
    if value is None or (field.nullable and value == "default"):
        if field.nullable:
            return None
        raise ValueError(f"{where}: {key} may not be empty; expected a {field.kind.__name__}")
    if field.kind is dict:
        return _check_table(key, value, where)
    if field.kind is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where}: {key} = {value!r}: expected true or false")
        return value
    if field.kind is int:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ValueError(f"{where}: {key} = {value!r}: expected an integer")
        value = int(value)
    elif field.kind is float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or \
                not math.isfinite(value):
            raise ValueError(f"{where}: {key} = {value!r}: expected a finite number")
        value = float(value)
    elif field.kind is str:
        if not isinstance(value, str):
            raise ValueError(f"{where}: {key} = {value!r}: expected a string")
        if field.choices and value not in field.choices:
            raise ValueError(f"{where}: {key} = {value!r} is not allowed{suggest(value, field.choices)};"
                             f" expected one of {sorted(field.choices)}")
    if field.minimum is not None:
        low = field.minimum
        if value < low or (field.exclusive_minimum and value == low):
            relation = ">" if field.exclusive_minimum else ">="
            raise ValueError(f"{where}: {key} = {value!r}: expected a value {relation} {low}")
    if field.maximum is not None:
        high = field.maximum
        if value > high or (field.exclusive_maximum and value == high):
            relation = "<" if field.exclusive_maximum else "<="
            raise ValueError(f"{where}: {key} = {value!r}: expected a value {relation} {high}")
    return value


def _check_table(key, value, where):
    """A table of options: string keys, values scalars (string, bool, integer, finite number)
    or lists of scalars. An empty table is None (no options)."""
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ValueError(f"{where}: {key} = {value!r}: expected a table of options")

    def scalar(v):
        return isinstance(v, (str, bool, numbers.Integral)) or \
            (isinstance(v, numbers.Real) and math.isfinite(v))
    for name, v in value.items():
        if not (scalar(v) or (isinstance(v, list) and all(scalar(item) for item in v))):
            raise ValueError(f"{where}: {key}.{name} = {v!r}: expected a string, a boolean, a "
                             f"finite number or a list of those")
    return dict(sorted(value.items())) or None


def _check_combinations(out, where):
    """Checks that involve several keys: eps must survive the cast to the run's dtype (a
    float32 eps below ~1.4e-45 is 0 there, and then 0/0 = NaN weights), lr must not overflow
    it, and batch norm needs batches of at least 2 rows."""
    dtype = np.dtype(out["dtype"])
    if OPTIMIZERS[out["optimizer"]].uses_eps and dtype.type(out["eps"]) == 0:
        raise ValueError(f"{where}: eps = {out['eps']!r}: rounds to 0 in {dtype.name}; expected "
                         f"a value >= {float(np.finfo(dtype).smallest_subnormal):.3g}")
    with np.errstate(over="ignore"):
        if not np.isfinite(dtype.type(out["lr"])):
            raise ValueError(f"{where}: lr = {out['lr']!r}: overflows {dtype.name}; expected a "
                             f"value <= {np.finfo(dtype).max}")
    if out["batchnorm"] and out["batch_size"] == 1:
        raise ValueError(f"{where}: batch_size = 1 with batchnorm = true: batch norm needs "
                         f"batches of at least 2 rows; expected batch_size 0 or >= 2")
    _check_curvature(out, where)


def _check_curvature(out, where):
    """Curvature and noise need the CPU kernels, an interval on the metric steps, per-example
    gradients (no batch norm) and at least 2 rows for the noise."""
    if not (out["curvature"] or out["gradient_noise"]):
        return
    if out["device"] != "cpu":
        raise ValueError(f"{where}: curvature/gradient_noise with device = {out['device']!r}: "
                         f"only the cpu kernels compute them; expected device 'cpu'")
    every, metrics = out["curvature_every"], out["metrics_every"]
    if every % metrics:
        raise ValueError(f"{where}: curvature_every = {every}: expected 0 or a multiple of "
                         f"metrics_every = {metrics}")
    if out["gradient_noise"] and out["batchnorm"]:
        raise ValueError(f"{where}: gradient_noise with batchnorm = true: per-example gradients "
                         f"are not defined with batch norm; expected batchnorm = false")
    if out["gradient_noise"] and out["curvature_rows"] == 1:
        raise ValueError(f"{where}: curvature_rows = 1 with gradient_noise: the noise needs at "
                         f"least 2 rows; expected 0 or >= 2")


def resolve(config, where="config"):
    """Defaults filled in and every value checked: the configuration that is hashed and run."""
    out = {key: field.default for key, field in FIELDS.items()}
    for key, value in config.items():
        out[key] = check_value(key, value, where)
    if out["init"] is not None and INITS[out["init"]].needs_scale and out["init_scale"] is None:
        raise ValueError(f"{where}: init = {out['init']!r} needs init_scale")
    if out["objective"] is not None and (out["loss"] is not None or
                                         out["output_activation"] is not None):
        raise ValueError(f"{where}: objective = {out['objective']!r} sets the loss and the output "
                         f"activation; leave loss and output_activation unset")
    _check_combinations(out, where)
    return canonical(out)


# Keys that only matter for some choices: elsewhere they are reset to their defaults, so runs
# that train identically get one configuration and one run_id (a sweep crossing clip = "none"
# with thresholds runs it once).
USED_BY = {
    "clip_threshold": ("clip", ("global_norm", "layer_norm", "value")),
    "momentum": ("optimizer", ("momentum", "nesterov")),
    "beta1": ("optimizer", ("adam",)), "beta2": ("optimizer", ("adam",)),
    "rho": ("optimizer", ("rmsprop",)),
    "eps": ("optimizer", ("rmsprop", "adam")),
    "eps_inside_sqrt": ("optimizer", ("rmsprop", "adam")),
    "step_size": ("schedule", ("step",)), "gamma": ("schedule", ("step", "exponential")),
    "decay_k": ("schedule", ("inverse_time",)), "eta_min": ("schedule", ("cosine",)),
}


# curvature keys -> the switches that use them (reset to defaults while all are off)
MEASURED_BY = {"curvature_every": ("curvature", "gradient_noise"),
               "curvature_rows": ("curvature", "gradient_noise"),
               "trace_samples": ("curvature",), "sharpness_tol": ("curvature",),
               "sharpness_max_iter": ("curvature",)}


def canonical(config):
    """The configuration with keys its choices do not use reset to their defaults."""
    out = dict(config)
    for key, (chooser, users) in USED_BY.items():
        if out[chooser] not in users:
            out[key] = FIELDS[key].default
    for key, switches in MEASURED_BY.items():
        if not any(out[s] for s in switches):
            out[key] = FIELDS[key].default
    return out


def hidden_widths(config):
    return [config["width"]] * config["depth"]


def build_network(config, n_features, n_outputs, classification):
    """The MLP a configuration describes (kernels.MLP)."""
    from kernels import MLP
    loss, output_activation = config["loss"], config["output_activation"]
    if config.get("objective"):
        loss, output_activation = config["objective"].split("+")
    loss = loss or ("cross_entropy" if classification else "mse")
    if loss == "cross_entropy" and not classification:
        raise ValueError("loss: cross_entropy needs a classification dataset")
    init, gain = config["init"], config["gain"]
    if config["sigma_w2"] is not None:
        init, gain = "lecun_normal", math.sqrt(config["sigma_w2"])
    return MLP([n_features] + hidden_widths(config) + [n_outputs],
               activation=config["activation"], init=init, gain=gain,
               init_scale=config["init_scale"], bias_scale=math.sqrt(config["sigma_b2"]),
               loss=loss, output_activation=output_activation,
               batchnorm=config["batchnorm"], dtype=config["dtype"], seed=config["seed"])


# schedule parameter -> the configuration key that holds it
SCHEDULE_KEYS = {"step_size": "step_size", "gamma": "gamma", "k": "decay_k", "t_max": "steps",
                 "eta_min": "eta_min"}


def build_schedule(config):
    """The schedule (kernels.schedules.make_schedule) a configuration describes; cosine anneals
    over all `steps`."""
    name = config["schedule"]
    params = {p: config[SCHEDULE_KEYS[p]] for p in SCHEDULES[name].params}
    return make_schedule(name, warmup=config["warmup"], **params)


def build_optimizer(config):
    """The optimizer (with its schedule) a configuration describes, through
    kernels.optimizers.make_optimizer with the keys of the optimizer's registry entry."""
    name = config["optimizer"]
    hyper = {key: config[key] for key in OPTIMIZERS[name].hyper if key in config}
    return make_optimizer(name, lr=config["lr"], weight_decay=config["weight_decay"],
                          schedule=build_schedule(config), **hyper)


def build_clip(config):
    """The clipping (kernels.clipping.make_clip) a configuration describes."""
    return make_clip(config["clip"], config["clip_threshold"])
