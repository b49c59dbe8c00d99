"""Tests for kernels.schedules: every schedule, with and without linear warmup, against
torch.optim.lr_scheduler (the lr torch's optimizer actually applies at step t equals ours at t),
through the compiled kernel and the fused MLP.train_step, and the argument checks."""
import math

import numpy as np
import pytest
import torch
from torch.optim import lr_scheduler as S

from _torch_helpers import random_batch
from _torch_twin import (torch_flat_params, torch_forward_backward, torch_twin)
from kernels.tolerance import assert_close
from kernels import MLP
from kernels.optimizers import SGD
from kernels.schedules import (SCHEDULES, Constant, Cosine, Exponential, InverseTime, Schedule,
                               Step, make_schedule, scheduled_lr)

LR0 = 0.1
N_STEPS = 60
T_MAX, ETA_MIN = 50, 1e-3
STEP_SIZE, STEP_GAMMA, EXP_GAMMA, K = 7, 0.5, 0.95, 0.3


def ours(name, warmup):
    return {"constant": lambda: Constant(warmup=warmup),
            "step": lambda: Step(STEP_SIZE, STEP_GAMMA, warmup=warmup),
            "exponential": lambda: Exponential(EXP_GAMMA, warmup=warmup),
            "inverse_time": lambda: InverseTime(K, warmup=warmup),
            "cosine": lambda: Cosine(T_MAX, ETA_MIN, warmup=warmup)}[name]()


def torch_scheduler(name, warmup, opt):
    """The torch scheduler of ours(name, warmup); warmup W as SequentialLR of a LinearLR from
    1/W to 1 over W-1 iterations, then the base scheduler from milestone W."""
    base = {"constant": lambda: S.LambdaLR(opt, lambda t: 1.0),
            "step": lambda: S.StepLR(opt, STEP_SIZE, STEP_GAMMA),
            "exponential": lambda: S.ExponentialLR(opt, EXP_GAMMA),
            "inverse_time": lambda: S.LambdaLR(opt, lambda t: 1.0 / (1.0 + K * t)),
            "cosine": lambda: S.CosineAnnealingLR(opt, T_MAX, ETA_MIN)}[name]
    if warmup == 0:
        return base()
    warm = S.LinearLR(opt, start_factor=1.0 / warmup, end_factor=1.0, total_iters=warmup - 1)
    return S.SequentialLR(opt, [warm, base()], milestones=[warmup])


def n_steps(name, warmup):
    """Cosine is compared up to T_max only: beyond it torch's CosineAnnealingLR climbs back up
    (a periodic cosine) while ours holds eta_min (see test_cosine_holds_eta_min_after_t_max).
    torch 2.13's SequentialLR needs no such exception: the warmup + base sequence matches the
    closed form lr0 (t+1)/W, then base(t - W), to rounding (no off-by-one at the milestone)."""
    return warmup + T_MAX + 1 if name == "cosine" else N_STEPS


def torch_applied_lrs(name, warmup, count):
    """The lr torch's SGD applies at steps 0..count-1: with the parameter reset to 0 and a
    gradient of 1 before each step, the parameter after the step is exactly -lr."""
    p = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = torch.optim.SGD([p], lr=LR0)
    sched = torch_scheduler(name, warmup, opt)
    lrs = []
    for _ in range(count):
        with torch.no_grad():
            p.zero_()
        p.grad = torch.ones(1, dtype=torch.float64)
        group_lr = opt.param_groups[0]["lr"]
        opt.step()
        lrs.append(-float(p.detach()[0]))
        assert lrs[-1] == group_lr
        sched.step()
    return np.array(lrs)


CASES = [(name, w) for name in sorted(SCHEDULES) for w in (0, 1, 5)]


def case_id(case):
    return f"{case[0]}-warmup{case[1]}"


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_schedule_matches_torch_lr_scheduler(case):
    name, warmup = case
    count = n_steps(name, warmup)
    assert count >= 50
    want = torch_applied_lrs(name, warmup, count)
    sched = ours(name, warmup)
    py = np.array([sched.lr(LR0, t) for t in range(count)])
    jit = np.array([scheduled_lr(LR0, sched.code, sched.p1, sched.p2, sched.warmup, t)
                    for t in range(count)])
    assert_close(py, want, np.float64, f"{name} (Schedule.lr)", strict=True, atol=0.0)
    assert_close(jit, want, np.float64, f"{name} (kernel)", strict=True, atol=0.0)
    if warmup:
        assert_close(py[:warmup], LR0 * np.arange(1, warmup + 1) / warmup,
                     np.float64, "warmup ramp", strict=True, atol=0.0)
    if name != "constant":  # the schedule does change the rate over the run
        assert want[warmup:].min() < 0.5 * LR0


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_train_step_records_the_torch_lr(case):
    """Through the fused step with SGD: last_step_stats()['lr'] is torch's lr at each step,
    and the parameters follow torch's SGD under that scheduler."""
    name, warmup = case
    rng = np.random.default_rng(20)
    net = MLP([4, 6, 3], activation="tanh", loss="mse", dtype="float64", seed=1)
    model = torch_twin(net)
    opt = SGD(LR0, schedule=ours(name, warmup))
    topt = torch.optim.SGD(model.parameters(), lr=LR0)
    recorded, applied = [], []
    sched = torch_scheduler(name, warmup, topt)
    for step in range(n_steps(name, warmup)):
        x, y = random_batch(rng, net, 6)
        net.train_step(x, y, opt)
        recorded.append(net.last_step_stats()["lr"])
        applied.append(topt.param_groups[0]["lr"])
        torch_forward_backward(model, "mse", x, y)
        topt.step()
        sched.step()
        assert_close(net.params, torch_flat_params(model),
                     np.float64, f"params after step {step}", strict=True)
    assert_close(np.array(recorded), np.array(applied),
                 np.float64, f"{name} recorded lr", strict=True, atol=0.0)


def test_cosine_holds_eta_min_after_t_max():
    """Past T_max ours stays at eta_min (the report's annealing); torch's recursive
    CosineAnnealingLR keeps following the cosine back up, so the torch comparison stops at T_max."""
    sched = Cosine(T_MAX, ETA_MIN)
    after = np.array([sched.lr(LR0, T_MAX + k) for k in range(1, 30)])
    jit = np.array([scheduled_lr(LR0, sched.code, sched.p1, sched.p2, 0, T_MAX + k)
                    for k in range(1, 30)])
    assert np.all(after == ETA_MIN) and np.all(jit == ETA_MIN)
    torch_lrs = torch_applied_lrs("cosine", 0, T_MAX + 30)
    assert torch_lrs[T_MAX + 29] > 10 * ETA_MIN


@pytest.mark.parametrize("warmup", [0, 3])
def test_closed_forms(warmup):
    """Every schedule against its formula written out here (non-integer step sizes too)."""
    lr0, w = 0.3, warmup
    forms = {
        Constant(warmup=w): lambda t: lr0,
        Step(2.5, 0.7, warmup=w): lambda t: lr0 * 0.7 ** math.floor(t / 2.5),
        Exponential(0.9, warmup=w): lambda t: lr0 * 0.9 ** t,
        InverseTime(0.25, warmup=w): lambda t: lr0 / (1 + 0.25 * t),
        Cosine(20, 0.01, warmup=w): lambda t: 0.01 + (lr0 - 0.01) * (
            1 + math.cos(math.pi * min(t, 20) / 20)) / 2,
    }
    for sched, form in forms.items():
        got = [sched.lr(lr0, t) for t in range(60)]
        want = [lr0 * (t + 1) / w if t < w else form(t - w) for t in range(60)]
        assert_close(got, want, np.float64, f"{sched.name} closed form", strict=True, atol=0.0)


# ---------------------------------------------------------------- argument checks


@pytest.mark.parametrize("build, argument", [
    (lambda: Step(0), "step_size"), (lambda: Step(math.inf), "step_size"),
    (lambda: Step("7"), "step_size"), (lambda: Step(7, gamma=0.0), "gamma"),
    (lambda: Step(7, gamma=math.nan), "gamma"), (lambda: Exponential(-0.5), "gamma"),
    (lambda: Exponential(math.inf), "gamma"), (lambda: InverseTime(-1.0), "k"),
    (lambda: InverseTime(math.inf), "k"), (lambda: InverseTime(None), "k"),
    (lambda: Cosine(0), "t_max"), (lambda: Cosine(math.nan), "t_max"),
    (lambda: Cosine(10, eta_min=-1e-3), "eta_min"), (lambda: Cosine(10, eta_min=math.inf),
                                                     "eta_min"),
    (lambda: Constant(warmup=-1), "warmup"), (lambda: Constant(warmup=2.5), "warmup"),
    (lambda: Constant(warmup="5"), "warmup"), (lambda: Constant(warmup=None), "warmup"),
    (lambda: Constant(warmup=True), "warmup"), (lambda: Cosine(10, warmup=math.inf), "warmup"),
    (lambda: make_schedule("linear"), "schedule"), (lambda: Schedule("linear"), "schedule"),
    (lambda: make_schedule("step", step_size=5, decay=0.5), "decay"),
    (lambda: make_schedule("cosine"), "t_max"),
])
def test_bad_schedule_parameters_raise_naming_them(build, argument):
    with pytest.raises(ValueError, match=rf"^{argument}:"):
        build()


def test_non_finite_parameters_never_reach_the_rate():
    """Before the fix InverseTime(inf) was accepted and gave lr(0) = lr0 / (1 + inf * 0) = NaN."""
    for sched in (InverseTime(1e6), Exponential(1e-3), Step(1.0, 1e-3), Cosine(1.0)):
        assert all(math.isfinite(sched.lr(LR0, t)) for t in range(100))


def test_make_schedule_builds_each_registered_schedule():
    params = {"constant": {}, "step": {"step_size": STEP_SIZE, "gamma": STEP_GAMMA},
              "exponential": {"gamma": EXP_GAMMA}, "inverse_time": {"k": K},
              "cosine": {"t_max": T_MAX, "eta_min": ETA_MIN}}
    assert set(params) == set(SCHEDULES)
    for name, kw in params.items():
        assert make_schedule(name, warmup=2, **kw) == ours(name, 2)


def test_exponential_growth_is_the_range_test_ramp():
    """gamma > 1 raises the rate: lr(t) = lr0 (lr_end/lr0)^(t/T) with gamma = (lr_end/lr0)^(1/T)
    (the lr_range study's schedule), the rate torch's ExponentialLR applies."""
    lr0, lr_end, t_end = 1e-4, 1.0, 200
    gamma = (lr_end / lr0) ** (1.0 / t_end)
    sched = Exponential(gamma)
    p = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = torch.optim.SGD([p], lr=lr0)
    torch_sched = S.ExponentialLR(opt, gamma)
    for t in range(t_end + 1):
        expected = lr0 * (lr_end / lr0) ** (t / t_end)
        assert math.isclose(sched.lr(lr0, t), expected, rel_tol=1e-12)
        assert math.isclose(scheduled_lr(lr0, sched.code, sched.p1, sched.p2, 0, t),
                            opt.param_groups[0]["lr"], rel_tol=1e-12)
        opt.step()  # a no-op (no gradient), in the order torch expects before the schedule's
        torch_sched.step()
