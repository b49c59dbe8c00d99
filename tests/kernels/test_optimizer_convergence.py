"""Every optimizer of kernels/optimizers.py, through the update kernel, converges: to the
optimum of a quadratic with curvatures 1..10 and to (1, 1) on Rosenbrock's function."""
import numpy as np
import pytest

from kernels.optimizers import SGD, Adam, Momentum, RMSProp
from kernels.schedules import Exponential
from test_optimizers import kernel_state, kernel_step


def minimize(opt, grad, x0, n_steps):
    params = np.array(x0, np.float64)
    m, v = kernel_state(params.size)
    g = np.empty_like(params)
    for t in range(1, n_steps + 1):
        g[:] = grad(params)
        kernel_step(opt, params, g, m, v, t)
    return params


QUAD_A = np.linspace(1.0, 10.0, 10)
QUAD_C = np.random.default_rng(11).normal(size=10)

# (optimizer, steps) reaching the optimum of 0.5 sum a_i (x_i - c_i)^2, a in [1, 10]
QUADRATIC = {
    "sgd": (SGD(0.1), 300),
    "momentum": (Momentum(0.02, 0.9), 400),
    "nesterov": (Momentum(0.02, 0.9, nesterov=True), 400),
    "rmsprop": (RMSProp(0.05, 0.9, schedule=Exponential(1e-3 ** (1 / 2000))), 2000),
    "rmsprop-eps-outside": (RMSProp(0.05, 0.9, eps_inside_sqrt=False,
                                    schedule=Exponential(1e-3 ** (1 / 2000))), 2000),
    "adam": (Adam(0.1, schedule=Exponential(1e-2 ** (1 / 2000))), 2000),
    "adam-eps-outside": (Adam(0.1, eps_inside_sqrt=False,
                              schedule=Exponential(1e-2 ** (1 / 2000))), 2000),
}

# (optimizer, steps) reaching (1, 1) on Rosenbrock from (-1.2, 1)
ROSENBROCK = {
    "sgd": (SGD(1e-3), 20000),
    "momentum": (Momentum(1e-3, 0.9), 5000),
    "nesterov": (Momentum(1e-3, 0.9, nesterov=True), 5000),
    "rmsprop": (RMSProp(1e-2, 0.9, schedule=Exponential(1e-3 ** (1 / 10000))), 10000),
    "rmsprop-eps-outside": (RMSProp(1e-2, 0.9, eps_inside_sqrt=False,
                                    schedule=Exponential(1e-3 ** (1 / 10000))), 10000),
    "adam": (Adam(1e-2, 0.9, 0.999, schedule=Exponential(0.1 ** (1 / 10000))), 10000),
    "adam-eps-outside": (Adam(1e-2, 0.9, 0.999, eps_inside_sqrt=False,
                              schedule=Exponential(0.1 ** (1 / 10000))), 10000),
}


def rosenbrock_grad(p):
    x, y = p
    return np.array([-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)])


@pytest.mark.parametrize("key", sorted(QUADRATIC))
def test_converges_on_quadratic(key):
    opt, n_steps = QUADRATIC[key]
    x = minimize(opt, lambda p: QUAD_A * (p - QUAD_C), np.zeros(10), n_steps)
    err = np.abs(x - QUAD_C).max()
    assert err < 1e-4, f"{key}: max |x - x*| = {err:.2e} after {n_steps} steps"


@pytest.mark.parametrize("key", sorted(ROSENBROCK))
def test_converges_on_rosenbrock(key):
    opt, n_steps = ROSENBROCK[key]
    x = minimize(opt, rosenbrock_grad, [-1.2, 1.0], n_steps)
    err = np.abs(x - 1.0).max()
    assert err < 1e-3, f"{key}: max |x - (1, 1)| = {err:.2e} after {n_steps} steps"
