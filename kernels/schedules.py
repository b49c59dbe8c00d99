"""Learning-rate schedules lr(t) for the optimizer step t = 0, 1, 2, ... (the step being taken).

Each schedule may be preceded by a linear warmup of W steps: lr(t) = lr0 (t+1)/W for t < W, then
the schedule restarts its clock, lr(t) = base(t - W) (PyTorch: `SequentialLR` of a `LinearLR`
with start_factor 1/W over W-1 iterations and the base scheduler, milestone W).
"""
import math
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

    @property
    def code(self):
        return SCHEDULES[self.name]

    def lr(self, lr0, t):
        """lr at step t (plain Python, same formula as the kernel)."""
        return scheduled_lr.py_func(float(lr0), self.code, float(self.p1), float(self.p2),
                                    int(self.warmup), int(t))


SCHEDULES = {"constant": CONSTANT, "step": STEP, "exponential": EXPONENTIAL,
             "inverse_time": INVERSE_TIME, "cosine": COSINE}


def _check_warmup(warmup):
    if int(warmup) != warmup or warmup < 0:
        raise ValueError(f"warmup: expected a non-negative integer number of steps, got {warmup!r}")
    return int(warmup)


def Constant(warmup=0):
    """lr(t) = lr0."""
    return Schedule("constant", warmup=_check_warmup(warmup))


def Step(step_size, gamma=0.1, warmup=0):
    """lr(t) = lr0 gamma^floor(t/step_size)."""
    if not step_size >= 1:
        raise ValueError(f"step_size: expected a positive number of steps, got {step_size!r}")
    if not gamma > 0:
        raise ValueError(f"gamma: expected a positive factor, got {gamma!r}")
    return Schedule("step", float(step_size), float(gamma), _check_warmup(warmup))


def Exponential(gamma, warmup=0):
    """lr(t) = lr0 gamma^t."""
    if not gamma > 0:
        raise ValueError(f"gamma: expected a positive factor, got {gamma!r}")
    return Schedule("exponential", 0.0, float(gamma), _check_warmup(warmup))


def InverseTime(k, warmup=0):
    """lr(t) = lr0 / (1 + k t)."""
    if not k >= 0:
        raise ValueError(f"k: expected a non-negative decay rate, got {k!r}")
    return Schedule("inverse_time", float(k), 0.0, _check_warmup(warmup))


def Cosine(t_max, eta_min=0.0, warmup=0):
    """lr(t) = eta_min + (lr0 - eta_min)(1 + cos(pi min(t,T)/T))/2 with T = t_max."""
    if not t_max >= 1:
        raise ValueError(f"t_max: expected a positive number of steps, got {t_max!r}")
    if not eta_min >= 0:
        raise ValueError(f"eta_min: expected a non-negative learning rate, got {eta_min!r}")
    return Schedule("cosine", float(t_max), float(eta_min), _check_warmup(warmup))


def make_schedule(name, warmup=0, **params):
    """A schedule from its registry name and keyword parameters (used by specs and the CLI)."""
    builders = {"constant": Constant, "step": Step, "exponential": Exponential,
                "inverse_time": InverseTime, "cosine": Cosine}
    if name not in builders:
        raise ValueError(f"schedule: unknown name {name!r}; expected one of {sorted(builders)}")
    return builders[name](warmup=warmup, **params)
