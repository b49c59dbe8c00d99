"""Run configurations: every key a study may fix or sweep, its default and its check, and the
objects (network, optimizer, clipping) one resolved configuration builds.

A configuration is a flat dict of scalars (and the `hidden` list), so it hashes into a run_id.
"""
import difflib
import math
import numbers
from dataclasses import dataclass

from kernels.activations import ACTIVATIONS
from kernels.clipping import CLIPPING, Clip
from kernels.init import INITS
from kernels.losses import LOSSES
from kernels.optimizers import Adam, Momentum, RMSProp, SGD
from kernels.schedules import SCHEDULES, make_schedule

HIDDEN_ACTIVATIONS = sorted(k for k, a in ACTIVATIONS.items() if a.hidden)
OPTIMIZER_NAMES = ["sgd", "momentum", "nesterov", "rmsprop", "adam"]
# loss+output pairs the kernels accept: cross-entropy is taken on softmax outputs only
OBJECTIVES = tuple(f"{loss}+{act}" for loss in LOSSES for act in ACTIVATIONS
                   if act == "softmax" or loss != "cross_entropy")


@dataclass(frozen=True)
class Field:
    """A configuration key: its type, default, allowed values or range, and a description."""
    kind: type
    default: object
    help: str
    choices: tuple = ()
    minimum: float = None
    exclusive_minimum: bool = False
    nullable: bool = False


FIELDS = {
    # data
    "dataset": Field(str, "digits", "dataset name or file path (see studies.data.datasets)"),
    "dataset_options": Field(dict, None, "builder options of the dataset, e.g. {noise = 0.2}",
                             nullable=True),
    "data_seed": Field(int, 0, "seed of the dataset's split/generation", minimum=0),
    "n_samples": Field(int, None, "subsample the dataset to this many rows", minimum=1,
                       nullable=True),
    "eval_rows": Field(int, 512, "training rows used for activation statistics", minimum=2),
    "gradient_stats": Field(bool, False, "also record percentiles of the back-propagated "
                            "gradient per layer (g_*; a backward pass over the evaluation rows "
                            "at each metric step)"),
    # architecture
    "depth": Field(int, 2, "number of hidden layers", minimum=0),
    "width": Field(int, 64, "units per hidden layer", minimum=1),
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
                  "xavier_normal)", choices=tuple(INITS), nullable=True),
    "gain": Field(float, 1.0, "init gain", minimum=0, exclusive_minimum=True),
    "init_scale": Field(float, None, "std/bound of naive inits", minimum=0,
                        exclusive_minimum=True, nullable=True),
    "sigma_w2": Field(float, None, "mean-field weight variance: W ~ N(0, sigma_w2/fan_in) "
                      "(sets init=lecun_normal, gain=sqrt(sigma_w2))", minimum=0,
                      exclusive_minimum=True, nullable=True),
    "sigma_b2": Field(float, 0.0, "bias variance: b ~ N(0, sigma_b2)", minimum=0),
    # optimization
    "optimizer": Field(str, "sgd", "optimizer", choices=tuple(OPTIMIZER_NAMES)),
    "lr": Field(float, 0.01, "learning rate", minimum=0, exclusive_minimum=True),
    "momentum": Field(float, 0.9, "momentum (momentum, nesterov)", minimum=0),
    "beta1": Field(float, 0.9, "Adam beta1", minimum=0),
    "beta2": Field(float, 0.999, "Adam beta2", minimum=0),
    "rho": Field(float, 0.99, "RMSProp decay", minimum=0),
    "eps": Field(float, 1e-8, "RMSProp/Adam epsilon", minimum=0, exclusive_minimum=True),
    "eps_inside_sqrt": Field(bool, True, "report's lr/sqrt(v+eps) (else PyTorch's)"),
    "weight_decay": Field(float, 0.0, "L2 weight decay", minimum=0),
    "schedule": Field(str, "constant", "learning-rate schedule", choices=tuple(SCHEDULES)),
    "step_size": Field(int, 100, "step schedule: steps between decays", minimum=1),
    "gamma": Field(float, 0.5, "step/exponential schedule factor", minimum=0,
                   exclusive_minimum=True),
    "decay_k": Field(float, 1e-3, "inverse-time schedule rate", minimum=0),
    "eta_min": Field(float, 0.0, "cosine schedule floor", minimum=0),
    "warmup": Field(int, 0, "linear warmup steps", minimum=0),
    "clip": Field(str, "none", "gradient clipping mode", choices=tuple(CLIPPING)),
    "clip_threshold": Field(float, 1.0, "clipping threshold", minimum=0,
                            exclusive_minimum=True),
    "batch_size": Field(int, 64, "rows per step; 0 = full batch (batch GD), 1 = SGD",
                        minimum=0),
    "steps": Field(int, 500, "optimizer steps", minimum=1),
    "metrics_every": Field(int, 50, "record metrics every this many steps", minimum=1),
    "seed": Field(int, 0, "seed of initialization and shuffling", minimum=0),
    "objective": Field(str, None, "loss and output activation as one value 'loss+activation' "
                       "(e.g. 'mse+sigmoid'), so one sweep axis can pair them; leave loss and "
                       "output_activation unset", choices=tuple(OBJECTIVES), nullable=True),
}


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
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise ValueError(f"{where}: {key} = {value!r}: expected a table of options")
        return dict(sorted(value.items()))
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
    return value


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


def canonical(config):
    """The configuration with keys its choices do not use reset to their defaults."""
    out = dict(config)
    for key, (chooser, users) in USED_BY.items():
        if out[chooser] not in users:
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


def build_schedule(config):
    name = config["schedule"]
    params = {"constant": {}, "step": {"step_size": config["step_size"], "gamma": config["gamma"]},
              "exponential": {"gamma": config["gamma"]},
              "inverse_time": {"k": config["decay_k"]},
              "cosine": {"t_max": config["steps"], "eta_min": config["eta_min"]}}[name]
    return make_schedule(name, warmup=config["warmup"], **params)


def build_optimizer(config):
    """The optimizer (with its schedule) a configuration describes."""
    common = dict(lr=config["lr"], weight_decay=config["weight_decay"],
                  schedule=build_schedule(config))
    name = config["optimizer"]
    if name == "sgd":
        return SGD(**common)
    if name in ("momentum", "nesterov"):
        return Momentum(momentum=config["momentum"], nesterov=name == "nesterov", **common)
    if name == "rmsprop":
        return RMSProp(rho=config["rho"], eps=config["eps"],
                       eps_inside_sqrt=config["eps_inside_sqrt"], **common)
    return Adam(beta1=config["beta1"], beta2=config["beta2"], eps=config["eps"],
                eps_inside_sqrt=config["eps_inside_sqrt"], **common)


def build_clip(config):
    return Clip(config["clip"], config["clip_threshold"] if config["clip"] != "none" else 0.0)
