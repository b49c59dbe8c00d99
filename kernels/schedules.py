"""Learning-rate schedules lr(t) for the optimizer step t = 0, 1, 2, ... (the step being taken).

Each schedule may be preceded by a linear warmup of W steps: lr(t) = lr0 (t+1)/W for t < W, then
the schedule restarts its clock, lr(t) = base(t - W) (PyTorch: `SequentialLR` of a `LinearLR`
with start_factor 1/W over W-1 iterations and the base scheduler, milestone W).
"""
import inspect
import math
import numbers
from dataclasses import dataclass

from ._jit import kernel

CONSTANT, STEP, EXPONENTIAL, INVERSE_TIME, COSINE = range(5)

SCHEDULE_FORMULAS = {
    "constant": "lr0",
    "step": "lr0 gamma^floor(t / step_size)  (torch StepLR)",
    "exponential": "lr0 gamma^t  (torch ExponentialLR)",
    "inverse_time": "lr0 / (1 + k t)",
    "cosine": "eta_min + (lr0 - eta_min)(1 + cos(pi min(t, T)/T))/2  (torch CosineAnnealingLR, t <= T)",
}


@kernel
def scheduled_lr(lr0, code, p1, p2, warmup, t):
    """lr at step t for schedule `code` with parameters (p1, p2) and `warmup` steps."""
    if warmup > 0:
        if t < warmup:
            return lr0 * (t + 1.0) / warmup
        t = t - warmup
    if code == STEP:
        return lr0 * p2 ** math.floor(t / p1)
    if code == EXPONENTIAL:
        return lr0 * p2 ** t
    if code == INVERSE_TIME:
        return lr0 / (1.0 + p1 * t)
    if code == COSINE:
        tt = min(float(t), p1)
        return p2 + (lr0 - p2) * (1.0 + math.cos(math.pi * tt / p1)) / 2.0
    return lr0


@dataclass(frozen=True)
class Schedule:
    """A schedule by name with its two parameters and an optional warmup; see SCHEDULES."""
    name: str = "constant"
    p1: float = 0.0
    p2: float = 0.0
    warmup: int = 0

    def __post_init__(self):
        if not isinstance(self.name, str) or self.name not in SCHEDULES:
            raise ValueError(f"schedule: unknown name {self.name!r}; expected one of "
                             f"{sorted(SCHEDULES)}")

    @property
    def code(self):
        return SCHEDULES[self.name]

    def lr(self, lr0, t):
        """lr at step t (plain Python, same formula as the kernel)."""
        return scheduled_lr.py_func(float(lr0), self.code, float(self.p1), float(self.p2),
                                    int(self.warmup), int(t))


SCHEDULES = {"constant": CONSTANT, "step": STEP, "exponential": EXPONENTIAL,
             "inverse_time": INVERSE_TIME, "cosine": COSINE}


def _number(argument, value, expected, ok):
    """`value` as a float if it is a finite real number satisfying ok(value); else a ValueError
    naming `argument` (bools, strings, None and inf/nan included: inf would give NaN rates)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or \
            not math.isfinite(value) or not ok(value):
        raise ValueError(f"{argument}: expected {expected}, got {value!r}")
    return float(value)


def _check_warmup(warmup):
    _number("warmup", warmup, "a non-negative integer number of steps",
            lambda w: w >= 0 and int(w) == w)
    return int(warmup)


def Constant(warmup=0):
    """lr(t) = lr0."""
    return Schedule("constant", warmup=_check_warmup(warmup))


def Step(step_size, gamma=0.1, warmup=0):
    """lr(t) = lr0 gamma^floor(t/step_size)."""
    step_size = _number("step_size", step_size, "a positive number of steps (>= 1)",
                        lambda s: s >= 1)
    gamma = _number("gamma", gamma, "a positive factor", lambda g: g > 0)
    return Schedule("step", step_size, gamma, _check_warmup(warmup))


def Exponential(gamma, warmup=0):
    """lr(t) = lr0 gamma^t."""
    gamma = _number("gamma", gamma, "a positive factor", lambda g: g > 0)
    return Schedule("exponential", 0.0, gamma, _check_warmup(warmup))


def InverseTime(k, warmup=0):
    """lr(t) = lr0 / (1 + k t)."""
    k = _number("k", k, "a non-negative decay rate", lambda x: x >= 0)
    return Schedule("inverse_time", k, 0.0, _check_warmup(warmup))


def Cosine(t_max, eta_min=0.0, warmup=0):
    """lr(t) = eta_min + (lr0 - eta_min)(1 + cos(pi min(t,T)/T))/2 with T = t_max."""
    t_max = _number("t_max", t_max, "a positive number of steps (>= 1)", lambda t: t >= 1)
    eta_min = _number("eta_min", eta_min, "a non-negative learning rate", lambda e: e >= 0)
    return Schedule("cosine", t_max, eta_min, _check_warmup(warmup))


def make_schedule(name, warmup=0, **params):
    """A schedule from its registry name and keyword parameters (used by specs and the CLI)."""
    builders = {"constant": Constant, "step": Step, "exponential": Exponential,
                "inverse_time": InverseTime, "cosine": Cosine}
    if not isinstance(name, str) or name not in builders:
        raise ValueError(f"schedule: unknown name {name!r}; expected one of {sorted(builders)}")
    signature = inspect.signature(builders[name]).parameters
    allowed = [p for p in signature if p != "warmup"]
    for key in params:
        if key not in allowed:
            raise ValueError(f"{key}: not a parameter of schedule {name!r}; expected "
                             f"{allowed or 'none'}")
    for key, p in signature.items():
        if p.default is inspect.Parameter.empty and key not in params:
            raise ValueError(f"{key}: schedule {name!r} needs it")
    return builders[name](warmup=warmup, **params)
