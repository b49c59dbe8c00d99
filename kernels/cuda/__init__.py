"""The GPU path: numba-cuda kernels and device-resident networks.

    from kernels import MLP
    from kernels.cuda import CudaMLP, CudaMultiMLP, available
    net = CudaMLP(MLP([40, 64, 64, 10], activation="tanh"))   # or CudaMLP(sizes, **MLP args)
    loss = net.train_step(x, y, Adam(lr=1e-3))                  # one step, loss copied back
    losses = net.train_epoch(x, y, Adam(lr=1e-3), batch_size=32) # no host round trip per step
    cpu_net = net.to_cpu()

Importing this package does not import numba.cuda; the kernels load on first use. Without a
GPU (and without NUMBA_ENABLE_CUDASIM=1 set before numba is imported) `available()` is False
and constructing a device network raises CudaUnavailableError.
"""

import functools

_PUBLIC_LAZY = {"CudaMLP": "mlp", "CudaMultiMLP": "multirun", "DeviceData": "step"}


class CudaUnavailableError(ValueError):
    """CUDA was requested but neither a usable GPU nor the CUDA simulator is present."""


def _reason():
    """None when CUDA (a GPU or the simulator) can be used, else why not (one line)."""
    try:
        from numba import config
        if config.ENABLE_CUDASIM:
            return None
        from numba import cuda
    except Exception as exc:  # numba-cuda missing or broken
        return f"numba-cuda could not be imported ({type(exc).__name__}: {exc})"
    try:
        if not cuda.is_available():
            return "no CUDA GPU or driver was found"
    except Exception as exc:
        return f"the CUDA driver failed to initialize ({type(exc).__name__}: {exc})"
    return toolchain_reason()


@functools.lru_cache(maxsize=2)
def toolchain_reason(launch=True):
    """None when numba-cuda's compiler loads here and (with `launch`, on a GPU) a probe kernel
    compiles, runs and gives the right answer; else why not, in one line.

    A GPU can be present while its compiler cannot work: a numba-cuda release that calls NumPy
    functions a newer NumPy removed (numba-cuda with NumPy 2.5: `np.row_stack`, seen on an
    H200) fails on its first kernel, and on every kernel after it, with a long traceback."""
    try:
        try:  # the lowering registries every compilation loads (numba-cuda >= 0.20 layout)
            import numba.cuda.cudaimpl  # noqa: F401
            import numba.cuda.np.arrayobj  # noqa: F401
        except ModuleNotFoundError:
            pass
        if launch:
            import numpy as np
            from numba import cuda

            @cuda.jit
            def probe(a):
                i = cuda.grid(1)
                if i < a.shape[0]:
                    a[i] = 2.0 * a[i] + 1.0

            data = cuda.to_device(np.arange(4, dtype=np.float32))
            probe[1, 32](data)
            if not np.array_equal(data.copy_to_host(), [1.0, 3.0, 5.0, 7.0]):
                return "a probe CUDA kernel ran but returned wrong values"
    except Exception as exc:
        import numpy
        versions = f"numpy {numpy.__version__}, numba-cuda {_version('numba-cuda')}"
        lines = str(exc).strip().splitlines()
        return (f"numba-cuda cannot compile a kernel here ({type(exc).__name__}: "
                f"{lines[-1] if lines else ''}; {versions}; gradlab needs numpy<2.5 and a CUDA "
                f"toolkit with NVVM and NVRTC)")
    return None


def _version(package):
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


def available():
    """True when kernels.cuda can run: a CUDA GPU with its driver, or the numba-cuda simulator."""
    return _reason() is None


def require():
    """Raises CudaUnavailableError (a ValueError, one line) when CUDA cannot be used."""
    reason = _reason()
    if reason is not None:
        raise CudaUnavailableError(
            f"CUDA is not available: {reason}; use device='cpu', or set NUMBA_ENABLE_CUDASIM=1 "
            f"before numba is imported to run the CUDA kernels in the simulator")


def device_name():
    """The GPU's name, or 'CUDA simulator'; raises CudaUnavailableError without either."""
    require()
    from numba import config
    if config.ENABLE_CUDASIM:
        return "CUDA simulator"
    from numba import cuda
    name = cuda.get_current_device().name
    return name.decode() if isinstance(name, bytes) else str(name)


def __getattr__(name):
    if name in _PUBLIC_LAZY:
        import importlib
        module = importlib.import_module(f".{_PUBLIC_LAZY[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["available", "require", "device_name", "CudaUnavailableError", "CudaMLP",
           "CudaMultiMLP", "DeviceData"]
