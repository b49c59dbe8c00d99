"""The step's BLAS thread count: small steps run their GEMMs on one thread whatever the process
has set, so their bits do not depend on it; the caller's setting is restored."""
import numpy as np
import pytest

from kernels import MLP
from kernels.gemm_threads import ONE_THREAD_FLOPS, blas_threads, hold_one_thread, release, \
    set_blas_threads, step_flops
from kernels.optimizers import Adam
from kernels.training import DivergenceError


@pytest.fixture
def two_threads():
    before = blas_threads()
    assert before is not None, "SciPy's BLAS thread count is not readable (OpenBLAS expected)"
    set_blas_threads(2)
    yield
    set_blas_threads(before)


def test_hold_sets_one_thread_and_release_restores(two_threads):
    held = hold_one_thread(ONE_THREAD_FLOPS / 2)
    assert (held, blas_threads()) == (2, 1)
    release(held)
    assert blas_threads() == 2
    assert hold_one_thread(ONE_THREAD_FLOPS) == 0 and blas_threads() == 2  # large: untouched
    set_blas_threads(1)
    assert hold_one_thread(0.0) == 0 and blas_threads() == 1  # already one: nothing to undo


def test_step_flops_counts_forward_and_backward():
    assert step_flops([3, 4, 2], 5) == 6.0 * (3 * 4 + 4 * 2) * 5


def _trained(sizes, batch, dtype, threads, steps=2):
    """Parameters after `steps` Adam steps, the process's BLAS at `threads` threads."""
    set_blas_threads(threads)
    rng = np.random.default_rng(0)
    net = MLP(sizes, activation="tanh", dtype=dtype)
    x = rng.normal(size=(batch, sizes[0])).astype(dtype)
    y = rng.integers(0, sizes[-1], batch)
    opt = Adam(lr=1e-3)
    for _ in range(steps):
        net.train_step(x, y, opt)
    assert blas_threads() == threads  # the caller's setting survives the step
    grads = net.loss_and_grads(x, y)[1]
    return net.params.copy(), np.concatenate([g.ravel() for g in grads]), net.forward(x)


# Shapes whose GEMMs OpenBLAS 0.3.30 splits differently on 1 and 2 threads (K = 784).
@pytest.mark.parametrize("sizes,batch,dtype", [([784, 64, 10], 32, "float64"),
                                               ([784, 100, 10], 60, "float32")])
def test_small_step_bits_do_not_depend_on_blas_threads(two_threads, sizes, batch, dtype):
    assert step_flops(sizes, batch) < ONE_THREAD_FLOPS
    one, two = _trained(sizes, batch, dtype, 1), _trained(sizes, batch, dtype, 2)
    for a, b in zip(one, two):
        assert a.tobytes() == b.tobytes()


def test_threads_restored_when_the_step_diverges(two_threads):
    net = MLP([4, 3, 2], activation="tanh", loss="mse")
    net.params[:] = 1e300
    with pytest.raises(DivergenceError):
        net.train_step(np.ones((2, 4)), np.ones((2, 2)), Adam())
    assert blas_threads() == 2
