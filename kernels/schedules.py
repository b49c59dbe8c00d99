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
from .registry import Entry, build_registry
from .validation import check_choice

CONSTANT, STEP, EXPONENTIAL, INVERSE_TIME, COSINE = range(5)



def lr_at(lr0, code, p1, p2, warmup, t):
    """lr at step t for schedule `code` with parameters (p1, p2) and `warmup` steps.

    Plain Python compiled for every target: `scheduled_lr` (CPU) and the CUDA device function
    of kernels.cuda.optimizers are this one function."""
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


scheduled_lr = kernel(lr_at)


@dataclass(frozen=True)
class Schedule:
    """A schedule by name with its two parameters and an optional warmup; see SCHEDULES."""
    name: str = "constant"
    p1: float = 0.0
    p2: float = 0.0
    warmup: int = 0

    def __post_init__(self):
        """Checks the name, warmup and the schedule's parameters (whichever builder or direct
        construction made it): a ValueError naming the builder's argument."""
        check_choice("schedule", self.name, SCHEDULES)
        object.__setattr__(self, "warmup", _check_warmup(self.warmup))
        checks = dict(SCHEDULES[self.name].checks)
        for slot in ("p1", "p2"):
            argument, expected, ok = checks.get(slot, (slot, "a finite number", _any))
            object.__setattr__(self, slot, _number(argument, getattr(self, slot), expected, ok))

    @property
    def code(self):
        return SCHEDULES[self.name].code

    def lr(self, lr0, t):
        """lr at step t (plain Python, same formula as the kernel)."""
        return lr_at(float(lr0), self.code, float(self.p1), float(self.p2), int(self.warmup),
                     int(t))


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
    return Schedule("constant", warmup=warmup)


def Step(step_size, gamma=0.1, warmup=0):
    """lr(t) = lr0 gamma^floor(t/step_size)."""
    return Schedule("step", step_size, gamma, warmup)


def Exponential(gamma, warmup=0):
    """lr(t) = lr0 gamma^t."""
    return Schedule("exponential", 0.0, gamma, warmup)


def InverseTime(k, warmup=0):
    """lr(t) = lr0 / (1 + k t)."""
    return Schedule("inverse_time", k, 0.0, warmup)


def Cosine(t_max, eta_min=0.0, warmup=0):
    """lr(t) = eta_min + (lr0 - eta_min)(1 + cos(pi min(t,T)/T))/2 with T = t_max."""
    return Schedule("cosine", t_max, eta_min, warmup)


def _any(value):
    return True


STEPS = ("a positive number of steps (>= 1)", lambda s: s >= 1)
FACTOR = ("a positive factor", lambda g: g > 0)
RATE = ("a non-negative decay rate", lambda x: x >= 0)
FLOOR = ("a non-negative learning rate", lambda e: e >= 0)


@dataclass(frozen=True, kw_only=True)
class ScheduleInfo(Entry):
    """Registry entry: code, formula, the builder, its parameters (p1, p2 in that order) and
    their checks (slot, (argument, expected, ok))."""
    builder: object
    params: tuple = ()
    checks: tuple = ()


SCHEDULES = build_registry([
    ScheduleInfo(name="constant", code=CONSTANT, formula="lr0", builder=Constant),
    ScheduleInfo(name="step", code=STEP, formula="lr0 gamma^floor(t / step_size)  (torch StepLR)",
                 builder=Step, params=("step_size", "gamma"),
                 checks=(("p1", ("step_size",) + STEPS), ("p2", ("gamma",) + FACTOR))),
    ScheduleInfo(name="exponential", code=EXPONENTIAL, formula="lr0 gamma^t  (torch ExponentialLR)",
                 builder=Exponential, params=("gamma",),
                 checks=(("p2", ("gamma",) + FACTOR),)),
    ScheduleInfo(name="inverse_time", code=INVERSE_TIME, formula="lr0 / (1 + k t)",
                 builder=InverseTime, params=("k",), checks=(("p1", ("k",) + RATE),)),
    ScheduleInfo(name="cosine", code=COSINE,
                 formula="eta_min + (lr0 - eta_min)(1 + cos(pi min(t, T)/T))/2  "
                 "(torch CosineAnnealingLR, t <= T)", builder=Cosine, params=("t_max", "eta_min"),
                 checks=(("p1", ("t_max",) + STEPS), ("p2", ("eta_min",) + FLOOR))),
])
SCHEDULE_FORMULAS = {name: entry.formula for name, entry in SCHEDULES.items()}


def make_schedule(name, warmup=0, **params):
    """A Schedule from its registry name and keyword parameters (the one factory: specs, the
    CLI and the bench build schedules here). Unknown names or parameters: a ValueError."""
    check_choice("schedule", name, SCHEDULES)
    entry = SCHEDULES[name]
    signature = inspect.signature(entry.builder).parameters
    for key in params:
        if key not in entry.params:
            raise ValueError(f"{key}: not a parameter of schedule {name!r}; expected "
                             f"{list(entry.params) or 'none'}")
    for key, p in signature.items():
        if p.default is inspect.Parameter.empty and key not in params:
            raise ValueError(f"{key}: schedule {name!r} needs it")
    return entry.builder(warmup=warmup, **params)
