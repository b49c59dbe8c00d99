"""Optimizers as hyperparameters + state (m, v, t) over the flat parameter buffer.

g = gradient (+ weight_decay * theta, L2 as torch.optim), t = step from 1, eta = lr(t).
- SGD:       theta -= eta g
- Momentum:  v = mu v + g; theta -= eta v              (PyTorch form, dampening 0)
  Nesterov:  v = mu v + g; theta -= eta (g + mu v)
- RMSProp:   v = rho v + (1-rho) g^2; theta -= eta g / sqrt(v + eps)       (eps_inside_sqrt, report)
                                      theta -= eta g / (sqrt(v) + eps)     (PyTorch, optax)
- Adam:      m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; mhat = m/(1-b1^t); vhat = v/(1-b2^t)
             theta -= eta mhat / sqrt(vhat + eps)  (eps_inside_sqrt, report)
             theta -= eta mhat / (sqrt(vhat) + eps)  (PyTorch, the Adam paper)
`eps_inside_sqrt` defaults to True, the report's form.
"""
import math
from dataclasses import dataclass

import numpy as np

from ._jit import LANES, kernel, kernel_inline, kernel_ordered
from .registry import Entry, build_registry
from .schedules import Schedule
from .validation import check_choice, check_nonnegative, check_positive

SGD_CODE, MOMENTUM_CODE, RMSPROP_CODE, ADAM_CODE = range(4)

# Slots of the float64 hyperparameter vector and of the int64 code vector given to the kernels.
H_LR, H_MOMENTUM, H_DECAY, H_EPS, H_WEIGHT_DECAY, H_SCHED_P1, H_SCHED_P2, H_CLIP = range(8)
N_HYPER = 8
C_OPTIMIZER, C_NESTEROV, C_EPS_INSIDE, C_SCHEDULE, C_WARMUP, C_CLIP = range(6)
N_CODES = 6


@kernel
def optimizer_update(params, grads, m, v, lo, hi, codes, hyper, lr, t):
    """One update of params[lo:hi] in place; returns sum of squared updates of the segment."""
    return optimizer_update_norms(params, grads, m, v, lo, hi, codes, hyper, lr, t)[0]


@kernel
def optimizer_update_norms(params, grads, m, v, lo, hi, codes, hyper, lr, t):
    """One update of params[lo:hi] in place; returns (sum of squared updates, sum of squared
    parameters before the update) of the segment, so the fused step reads the weights once."""
    upd, w_sq, _ = _optimizer_pass(params, grads, m, v, lo, hi, codes, hyper, lr, t, True)
    return upd, w_sq


@kernel
def optimizer_update_finite(params, grads, m, v, lo, hi, codes, hyper, lr, t):
    """True when the update of params[lo:hi] would write only finite parameters and moments:
    the same arithmetic as the update, nothing written (a step that fails is not applied)."""
    return _optimizer_pass(params, grads, m, v, lo, hi, codes, hyper, lr, t, None)[2] == 0.0


@kernel
def _optimizer_pass(params, grads, m, v, lo, hi, codes, hyper, lr, t, write):
    """write=True: updates params[lo:hi] and returns (sum of squared updates, sum of squared
    parameters before, 0); write=None (a type, so each form compiles without the other's
    work): writes nothing and returns (0, 0, sum of 0 x every value the update would write),
    0 when all are finite, NaN otherwise.

    The arithmetic runs in the buffer's dtype (as torch.optim does): the float64
    hyperparameters are rounded once to that dtype, and every optimizer has its own loop with
    no branch inside, so float32 updates vectorize 8 or 16 wide."""
    opt = codes[C_OPTIMIZER]
    cast = params.dtype.type
    wd = cast(hyper[H_WEIGHT_DECAY])
    if opt == SGD_CODE:
        return _sgd(params, grads, lo, hi, cast(lr), wd, write)
    if opt == MOMENTUM_CODE:
        return _momentum(params, grads, v, lo, hi, cast(lr), wd, cast(hyper[H_MOMENTUM]),
                         codes[C_NESTEROV] != 0, write)
    eps = cast(hyper[H_EPS])
    zero = cast(0.0)
    eps_in, eps_out = (eps, zero) if codes[C_EPS_INSIDE] != 0 else (zero, eps)
    decay = hyper[H_DECAY]
    if opt == RMSPROP_CODE:
        return _rmsprop(params, grads, v, lo, hi, cast(lr), wd,
                        (cast(decay), cast(1.0 - decay), eps_in, eps_out), write)
    mu = hyper[H_MOMENTUM]
    coef = (cast(mu), cast(1.0 - mu), cast(decay), cast(1.0 - decay), cast(lr / (1.0 - mu ** t)),
            cast(1.0 / (1.0 - decay ** t)), eps_in, eps_out)
    return _adam(params, grads, m, v, lo, hi, wd, coef, write)


# Each update runs over full blocks of LANES entries (a constant trip count, so the block's
# arithmetic vectorizes) and then the tail; entry lo + k's squares go to partial sum k % LANES,
# in order, so the returned sums are the same bits in every compilation (kernel_ordered).
# lo, hi: uint64 (no wraparound checks). Each *_at returns (d, theta before, 0 x every value
# it writes or would write): 0 for finite values, NaN for NaN or Inf (no nnan/ninf, so 0 x is
# not folded).
STRIDE = np.uint64(LANES)


@kernel_inline
def _sgd_at(params, grads, i, lr, wd, write):
    """d = lr (g + wd theta); theta -= d."""
    p = params[i]
    d = lr * (grads[i] + wd * p)
    new = p - d
    if write is not None:
        params[i] = new
    return d, p, float(new) * 0.0


@kernel_inline
def _momentum_at(params, grads, v, i, lr, wd, mu, nesterov, write):
    """v = mu v + g; d = lr v (Nesterov: lr (g + mu v)); theta -= d."""
    p = params[i]
    g = grads[i] + wd * p
    vi = mu * v[i] + g
    d = lr * (g + mu * vi) if nesterov else lr * vi
    new = p - d
    if write is not None:
        v[i] = vi
        params[i] = new
    return d, p, float(new) * 0.0 + float(vi) * 0.0


@kernel_inline
def _rmsprop_at(params, grads, v, i, lr, wd, coef, write):
    """v = rho v + (1-rho) g^2; d = lr g / (sqrt(v + eps_in) + eps_out), with (eps_in, eps_out) =
    (eps, 0) for the report's form and (0, eps) for PyTorch's (x + 0 is exact)."""
    rho, one_minus_rho, eps_in, eps_out = coef
    p = params[i]
    g = grads[i] + wd * p
    vi = rho * v[i] + one_minus_rho * g * g
    d = lr * g / (math.sqrt(vi + eps_in) + eps_out)
    new = p - d
    if write is not None:
        v[i] = vi
        params[i] = new
    return d, p, float(new) * 0.0 + float(vi) * 0.0


@kernel_inline
def _adam_at(params, grads, m, v, i, wd, coef, write):
    """m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; d = s m / (sqrt(v c + eps_in) + eps_out) with
    coef = (b1, 1-b1, b2, 1-b2, s = lr/(1-b1^t), c = 1/(1-b2^t), eps_in, eps_out)."""
    b1, one_minus_b1, b2, one_minus_b2, step, inv_bc2, eps_in, eps_out = coef
    p = params[i]
    g = grads[i] + wd * p
    mi = b1 * m[i] + one_minus_b1 * g
    vi = b2 * v[i] + one_minus_b2 * g * g
    d = step * mi / (math.sqrt(vi * inv_bc2 + eps_in) + eps_out)
    new = p - d
    if write is not None:
        m[i] = mi
        v[i] = vi
        params[i] = new
    return d, p, float(new) * 0.0 + float(mi) * 0.0 + float(vi) * 0.0


@kernel_inline
def _blocks(lo, hi):
    """(end of the full blocks, tail length) of [lo, hi)."""
    full = lo + (hi - lo) // STRIDE * STRIDE
    return full, hi - full


@kernel_inline
def _add_squares(acc, j, d, p, bad, write):
    if write is None:  # the checking pass: only the finiteness sum
        acc[2, j] += bad
    else:
        acc[0, j] += float(d) * float(d)
        acc[1, j] += float(p) * float(p)


@kernel_ordered
def _sgd(params, grads, lo, hi, lr, wd, write):
    acc = np.zeros((3, LANES))
    full, tail = _blocks(lo, hi)
    for base in range(lo, full, STRIDE):
        for j in range(LANES):
            d, p, bad = _sgd_at(params, grads, base + np.uint64(j), lr, wd, write)
            _add_squares(acc, j, d, p, bad, write)
    for j in range(tail):
        d, p, bad = _sgd_at(params, grads, full + j, lr, wd, write)
        _add_squares(acc, j, d, p, bad, write)
    return lane_sums(acc)


@kernel_ordered
def _momentum(params, grads, v, lo, hi, lr, wd, mu, nesterov, write):
    acc = np.zeros((3, LANES))
    full, tail = _blocks(lo, hi)
    for base in range(lo, full, STRIDE):
        for j in range(LANES):
            d, p, bad = _momentum_at(params, grads, v, base + np.uint64(j), lr, wd, mu,
                                     nesterov, write)
            _add_squares(acc, j, d, p, bad, write)
    for j in range(tail):
        d, p, bad = _momentum_at(params, grads, v, full + j, lr, wd, mu, nesterov, write)
        _add_squares(acc, j, d, p, bad, write)
    return lane_sums(acc)


@kernel_ordered
def _rmsprop(params, grads, v, lo, hi, lr, wd, coef, write):
    acc = np.zeros((3, LANES))
    full, tail = _blocks(lo, hi)
    for base in range(lo, full, STRIDE):
        for j in range(LANES):
            d, p, bad = _rmsprop_at(params, grads, v, base + np.uint64(j), lr, wd, coef, write)
            _add_squares(acc, j, d, p, bad, write)
    for j in range(tail):
        d, p, bad = _rmsprop_at(params, grads, v, full + j, lr, wd, coef, write)
        _add_squares(acc, j, d, p, bad, write)
    return lane_sums(acc)


@kernel_ordered
def _adam(params, grads, m, v, lo, hi, wd, coef, write):
    acc = np.zeros((3, LANES))
    full, tail = _blocks(lo, hi)
    for base in range(lo, full, STRIDE):
        for j in range(LANES):
            d, p, bad = _adam_at(params, grads, m, v, base + np.uint64(j), wd, coef, write)
            _add_squares(acc, j, d, p, bad, write)
    for j in range(tail):
        d, p, bad = _adam_at(params, grads, m, v, full + j, wd, coef, write)
        _add_squares(acc, j, d, p, bad, write)
    return lane_sums(acc)


@kernel_ordered
def lane_sums(acc):
    """The row sums of acc's LANES partial sums, each in lane order."""
    a, b, c = 0.0, 0.0, 0.0
    for j in range(acc.shape[1]):
        a += acc[0, j]
        b += acc[1, j]
        c += acc[2, j]
    return a, b, c


def check_fraction(name, value):
    """A number in [0, 1)."""
    value = check_nonnegative(name, value)
    if value >= 1.0:
        raise ValueError(f"{name}: expected a number in [0, 1), got {value!r}")
    return value


def check_flag(name, value):
    """A bool (NumPy bools included)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name}: expected true or false, got {value!r}")
    return bool(value)


class Optimizer:
    """Base: hyperparameters, a learning-rate schedule, and state bound to one network.

    Hyperparameters are plain attributes, checked when the optimizer is built and again
    whenever changed values reach the kernels (`check`), so `opt.lr = nan` set later raises a
    ValueError naming lr at the next step instead of training to NaN weights."""
    name = ""
    # (attribute, argument name, check) of the class's own hyperparameters beyond lr and
    # weight_decay; Adam keeps beta1 in `momentum` and beta2 in `decay`.
    checked = ()
    uses_eps = False

    def __init__(self, lr, weight_decay=0.0, schedule=None):
        self.lr = check_positive("lr", lr)
        self.weight_decay = check_nonnegative("weight_decay", weight_decay)
        if schedule is None:
            schedule = Schedule()
        self.schedule = schedule
        self.momentum = 0.0
        self.decay = 0.0
        self.eps = 0.0
        self.nesterov = False
        self.eps_inside_sqrt = False
        self.state = None
        self._owner = None
        self._check_schedule()

    def _check_schedule(self):
        if not isinstance(self.schedule, Schedule):
            raise ValueError(f"schedule: expected a kernels.schedules.Schedule, got "
                             f"{self.schedule!r}")

    def check(self, dtype=None):
        """Every hyperparameter in its range (ValueError naming it); with a dtype, lr,
        weight_decay and eps must also be finite there and eps nonzero (a float32 eps below
        ~1.4e-45 rounds to 0, and 0/0 = NaN where a gradient is 0)."""
        check_positive("lr", self.lr)
        check_nonnegative("weight_decay", self.weight_decay)
        self._check_schedule()
        check_flag("nesterov", self.nesterov)
        check_flag("eps_inside_sqrt", self.eps_inside_sqrt)
        for attribute, argument, checker in self.checked:
            checker(argument, getattr(self, attribute))
        if dtype is None:
            return
        cast = np.dtype(dtype).type
        names = ("lr", "weight_decay") + (("eps",) if self.uses_eps else ())
        with np.errstate(over="ignore"):
            for argument in names:
                value = getattr(self, argument)
                if not np.isfinite(cast(value)):
                    raise ValueError(f"{argument}: {value!r} overflows {np.dtype(dtype).name}; "
                                     f"expected at most {np.finfo(dtype).max}")
        if self.uses_eps and cast(self.eps) == 0:
            raise ValueError(f"eps: {self.eps!r} rounds to 0 in {np.dtype(dtype).name}; expected "
                             f"at least {float(np.finfo(dtype).smallest_subnormal):.3g}")

    def codes_and_hyper(self, clip, dtype=None):
        """The int64 code and float64 hyperparameter vectors the kernels read (after `check`,
        in the network's dtype when given)."""
        self.check(dtype)
        codes = np.zeros(N_CODES, np.int64)
        codes[C_OPTIMIZER] = OPTIMIZERS[self.name].code
        codes[C_NESTEROV] = int(self.nesterov)
        codes[C_EPS_INSIDE] = int(self.eps_inside_sqrt)
        codes[C_SCHEDULE] = self.schedule.code
        codes[C_WARMUP] = self.schedule.warmup
        codes[C_CLIP] = clip.code
        hyper = np.zeros(N_HYPER, np.float64)
        hyper[[H_LR, H_MOMENTUM, H_DECAY, H_EPS, H_WEIGHT_DECAY]] = (
            self.lr, self.momentum, self.decay, self.eps, self.weight_decay)
        hyper[H_SCHED_P1], hyper[H_SCHED_P2] = self.schedule.p1, self.schedule.p2
        hyper[H_CLIP] = clip.threshold
        return codes, hyper

    def bind(self, owner, n_params, dtype):
        """Allocates (m, v, t) for `owner` on first use (after `check` in its dtype); refuses
        a second network."""
        if self._owner is None:
            self.check(dtype)
            self._owner = owner
            self.state = (np.zeros(n_params, dtype), np.zeros(n_params, dtype),
                          np.zeros(1, np.int64))
        elif self._owner is not owner:
            raise ValueError("optimizer: this optimizer already holds the state of another "
                             "network; create one optimizer per network")
        return self.state

    @property
    def step_count(self):
        return 0 if self.state is None else int(self.state[2][0])

    def config(self):
        """Every hyperparameter by name (for manifests)."""
        return {"optimizer": self.name, "lr": self.lr, "momentum": self.momentum,
                "decay": self.decay, "eps": self.eps, "nesterov": self.nesterov,
                "eps_inside_sqrt": self.eps_inside_sqrt, "weight_decay": self.weight_decay,
                "schedule": self.schedule.name, "schedule_p1": self.schedule.p1,
                "schedule_p2": self.schedule.p2, "warmup": self.schedule.warmup}

    def __repr__(self):
        keys = {k: v for k, v in self.config().items() if k != "optimizer"}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in keys.items())})"


class SGD(Optimizer):
    """theta -= lr g."""
    name = "sgd"

    def __init__(self, lr=0.01, weight_decay=0.0, schedule=None):
        super().__init__(lr, weight_decay, schedule)


class Momentum(Optimizer):
    """v = mu v + g; theta -= lr v (Nesterov: theta -= lr (g + mu v))."""
    name = "momentum"
    checked = (("momentum", "momentum", check_fraction),)

    def __init__(self, lr=0.01, momentum=0.9, nesterov=False, weight_decay=0.0, schedule=None):
        super().__init__(lr, weight_decay, schedule)
        self.momentum = check_fraction("momentum", momentum)
        self.nesterov = bool(nesterov)


class RMSProp(Optimizer):
    """v = rho v + (1-rho) g^2; theta -= lr g / sqrt(v + eps) (or / (sqrt(v) + eps))."""
    name = "rmsprop"
    checked = (("decay", "rho", check_fraction), ("eps", "eps", check_positive))
    uses_eps = True

    def __init__(self, lr=0.01, rho=0.99, eps=1e-8, eps_inside_sqrt=True, weight_decay=0.0,
                 schedule=None):
        super().__init__(lr, weight_decay, schedule)
        self.decay = check_fraction("rho", rho)
        self.eps = check_positive("eps", eps)
        self.eps_inside_sqrt = bool(eps_inside_sqrt)

    @property
    def rho(self):
        return self.decay


class Adam(Optimizer):
    """Bias-corrected m, v; theta -= lr mhat / sqrt(vhat + eps) (or / (sqrt(vhat) + eps))."""
    name = "adam"
    checked = (("momentum", "beta1", check_fraction), ("decay", "beta2", check_fraction),
               ("eps", "eps", check_positive))
    uses_eps = True

    def __init__(self, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, eps_inside_sqrt=True,
                 weight_decay=0.0, schedule=None):
        super().__init__(lr, weight_decay, schedule)
        self.momentum = check_fraction("beta1", beta1)
        self.decay = check_fraction("beta2", beta2)
        self.eps = check_positive("eps", eps)
        self.eps_inside_sqrt = bool(eps_inside_sqrt)

    @property
    def beta1(self):
        return self.momentum

    @property
    def beta2(self):
        return self.decay


@dataclass(frozen=True, kw_only=True)
class OptimizerInfo(Entry):
    """Registry entry: code, update formula, the class, the hyperparameters its constructor
    takes beyond lr, weight_decay and schedule, and preset arguments of a variant (nesterov
    is Momentum with nesterov=True)."""
    cls: type
    hyper: tuple = ()
    preset: tuple = ()
    variant_of: str = None

    @property
    def uses_eps(self):
        return self.cls.uses_eps


OPTIMIZERS = build_registry([
    OptimizerInfo(name="sgd", code=SGD_CODE, formula="theta -= lr g", cls=SGD),
    OptimizerInfo(name="momentum", code=MOMENTUM_CODE, formula="v = mu v + g; theta -= lr v",
                  cls=Momentum, hyper=("momentum", "nesterov")),
    OptimizerInfo(name="nesterov", code=MOMENTUM_CODE,
                  formula="v = mu v + g; theta -= lr (g + mu v)", cls=Momentum,
                  hyper=("momentum",), preset=(("nesterov", True),), variant_of="momentum"),
    OptimizerInfo(name="rmsprop", code=RMSPROP_CODE,
                  formula="v = rho v + (1-rho) g^2; theta -= lr g / sqrt(v + eps)", cls=RMSProp,
                  hyper=("rho", "eps", "eps_inside_sqrt")),
    OptimizerInfo(name="adam", code=ADAM_CODE,
                  formula="m, v EMAs (b1, b2); theta -= lr mhat / sqrt(vhat + eps)", cls=Adam,
                  hyper=("beta1", "beta2", "eps", "eps_inside_sqrt")),
])


def make_optimizer(name, lr=None, **hyper):
    """An optimizer from its registry name (the one factory: specs, the CLI and the bench build
    optimizers here). lr None: the class default; hyper: weight_decay, schedule (a Schedule)
    and the entry's own hyperparameters (OPTIMIZERS[name].hyper); anything else is a
    ValueError naming it."""
    check_choice("optimizer", name, OPTIMIZERS)
    entry = OPTIMIZERS[name]
    allowed = entry.hyper + ("weight_decay", "schedule")
    for key in hyper:
        if key not in allowed:
            raise ValueError(f"{key}: not a hyperparameter of optimizer {name!r}; expected one "
                             f"of {sorted(allowed)}")
    args = {**dict(entry.preset), **hyper}
    if lr is not None:
        args["lr"] = lr
    return entry.cls(**args)


def update_reference(name, theta, g, state, t, lr, momentum=0.0, decay=0.0, eps=0.0,
                     nesterov=False, eps_inside_sqrt=True, weight_decay=0.0):
    """One update in float64 NumPy; returns (theta, (m, v)). t counts from 1."""
    m, v = (np.array(s, np.float64) for s in state)
    g = np.asarray(g, np.float64) + weight_decay * theta
    if name == "sgd":
        return theta - lr * g, (m, v)
    if name == "momentum":
        v = momentum * v + g
        return theta - lr * (g + momentum * v if nesterov else v), (m, v)
    if name == "rmsprop":
        v = decay * v + (1 - decay) * g * g
        denom = np.sqrt(v + eps) if eps_inside_sqrt else np.sqrt(v) + eps
        return theta - lr * g / denom, (m, v)
    if name == "adam":
        m = momentum * m + (1 - momentum) * g
        v = decay * v + (1 - decay) * g * g
        mhat, vhat = m / (1 - momentum**t), v / (1 - decay**t)
        denom = np.sqrt(vhat + eps) if eps_inside_sqrt else np.sqrt(vhat) + eps
        return theta - lr * mhat / denom, (m, v)
    raise KeyError(name)
