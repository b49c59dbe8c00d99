"""The BLAS thread count of a step's GEMMs (the `np.dot` calls of the compiled kernels).

Compiled kernels reach SciPy's BLAS (`scipy.linalg.cython_blas`). With OpenBLAS, the number of
threads changes how a GEMM's work is split, and with it the last bits of some products (a
[784, 100] layer at batch 60 differs between 1 and 2 threads); and a small GEMM gains little
from a second thread while it can stall for milliseconds waiting for one on a busy machine.
So a step whose GEMM work, 6 x weights x batch FLOPs, is below `ONE_THREAD_FLOPS` runs its
GEMMs on one thread whatever the process has set: its bits do not depend on the caller's
thread count, and it never waits for a worker. Larger steps use the process's setting
(studies hold it to one thread for all runs).

The thread count is read and set through OpenBLAS's own `openblas_get/set_num_threads`
(about 0.1-0.3 us a call, cheap next to a 40 us step), found through the library SciPy's
`cython_blas` links; with another BLAS (MKL, Accelerate) nothing is changed.
"""
import ctypes

ONE_THREAD_FLOPS = 1e9  # steps below this many GEMM FLOPs run their GEMMs on one thread
_AFFIXES = [(p, s) for p in ("scipy_", "") for s in ("", "64_", "_64")]
_controls = []  # [(get, set)] once resolved; [None] when the BLAS offers no control


def _resolve():
    """(get, set) ctypes functions of SciPy's OpenBLAS thread count, or None."""
    import scipy.linalg.cython_blas as cython_blas
    try:
        lib = ctypes.CDLL(cython_blas.__file__)  # dlsym searches its dependencies too
    except OSError:
        return None
    for prefix, suffix in _AFFIXES:
        name = f"{prefix}openblas_get_num_threads{suffix}"
        if hasattr(lib, name):
            get = getattr(lib, name)
            put = getattr(lib, f"{prefix}openblas_set_num_threads{suffix}")
            get.restype, get.argtypes = ctypes.c_int, []
            put.restype, put.argtypes = None, [ctypes.c_int]
            return get, put
    return None


def _control():
    if not _controls:
        _controls.append(_resolve())
    return _controls[0]


def blas_threads():
    """The thread count SciPy's BLAS uses now (None when it cannot be read)."""
    control = _control()
    return None if control is None else int(control[0]())


def set_blas_threads(n):
    """Sets SciPy's BLAS thread count (no effect without OpenBLAS)."""
    control = _control()
    if control is not None:
        control[1](int(n))


def hold_one_thread(flops):
    """Before a step of `flops` GEMM FLOPs: holds SciPy's BLAS to one thread when the step is
    small (below ONE_THREAD_FLOPS) and more are set. Returns the count `release` restores, or
    0 when nothing was changed."""
    if flops >= ONE_THREAD_FLOPS:
        return 0
    control = _controls[0] if _controls else _control()
    if control is None:
        return 0
    previous = control[0]()
    if previous <= 1:
        return 0
    control[1](1)
    return previous


def release(previous):
    """Undoes hold_one_thread (its return value)."""
    if previous:
        _controls[0][1](previous)


def step_flops(sizes, batch):
    """GEMM FLOPs of one train step: 6 x weights x batch (forward 2, backward 4)."""
    return 6.0 * sum(a * b for a, b in zip(sizes[:-1], sizes[1:])) * batch
