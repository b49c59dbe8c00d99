"""Compiles every CUDA kernel to PTX for a real GPU (sm_90) without needing one.

The simulator runs kernels as plain Python, so it misses what only Numba's CUDA compiler sees
(typing errors, unsupported calls). This script records the argument types of every kernel
launch in a short simulated training run (a child process with NUMBA_ENABLE_CUDASIM=1), then
compiles each kernel for those types with `numba.cuda.compile_ptx` (needs libNVVM and
libdevice, not a GPU). Exit status: 0 all compiled, 1 a kernel failed, 77 no usable toolkit.

    python tests/kernels/cuda_sim/ptx_check.py            # record + compile
"""
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
TOOLKIT_MISSING = 77
KERNEL_MODULES = ("kernels.cuda.step", "kernels.cuda.elementwise")


def _arg_type(value):
    value = getattr(value, "_ary", value)  # simulator device arrays wrap a NumPy array
    import numpy as np
    if isinstance(value, np.ndarray):
        return ["array", value.dtype.name, value.ndim]
    if isinstance(value, (bool, np.bool_)):
        return ["bool"]
    if isinstance(value, (int, np.integer)):
        return ["int64"]
    if isinstance(value, (float, np.floating)):
        return ["float64"]
    raise TypeError(f"unexpected kernel argument {type(value)}")


def record(path):
    """Simulator child: trains tiny networks, writing [module, kernel, arg types] per launch."""
    import importlib

    import numpy as np
    seen = set()

    class Recorder:
        def __init__(self, kernel, name):
            self.kernel, self.name = kernel, name

        def __getitem__(self, config):
            launch = self.kernel[config]

            def run(*args):
                seen.add((self.kernel.fn.__module__, self.name,
                          json.dumps([_arg_type(a) for a in args])))
                launch(*args)
            return run

    for module_name in KERNEL_MODULES:
        module = importlib.import_module(module_name)
        for name in dir(module):
            obj = getattr(module, name)
            if type(obj).__name__ == "FakeCUDAKernel" and not obj._device:
                setattr(module, name, Recorder(obj, name))
    from kernels import MLP
    from kernels.activations import TANH
    from kernels.cuda import CudaMLP, elementwise
    from kernels.optimizers import Adam
    rng = np.random.default_rng(0)
    for dtype in ("float64", "float32"):
        net = MLP([3, 4, 2], activation="tanh", batchnorm=True, dtype=dtype)
        x, y = rng.normal(size=(4, 3)), rng.integers(0, 2, 4)
        gpu = CudaMLP(net)
        gpu.train_step(x, y, Adam())
        gpu.train_epoch(x, y, Adam(), batch_size=2)
        gpu.forward(x)
        from numba import cuda
        h = cuda.to_device(np.zeros(3, dtype))
        elementwise.activation_forward[1, 4](h, h, TANH, 0.0)
        elementwise.activation_backward[1, 4](h, h, h, h, TANH, 0.0)
    Path(path).write_text(json.dumps(sorted(seen)))


def _patch_toolkit_lookup():
    """Lets compile_ptx run on a machine without a GPU or NVRTC (it only needs NVVM)."""
    from types import SimpleNamespace

    from numba.cuda import cuda_paths, dispatcher
    try:
        cuda_paths.get_cuda_paths()["nvrtc"]
    except Exception:
        cuda_paths._get_nvrtc_path = lambda: cuda_paths._env_path_tuple("none", None)
    dispatcher.get_current_device = lambda: SimpleNamespace(compute_capability=(9, 0))


def compile_all(path):
    os.environ.setdefault("NUMBA_FORCE_CUDA_CC", "9.0")
    import importlib

    from numba import cuda, types
    try:
        _patch_toolkit_lookup()
        cuda.compile_ptx(lambda a: None, (types.float32[::1],), cc=(9, 0))
    except Exception as exc:
        print(f"SKIP: NVVM/libdevice unusable here: {type(exc).__name__}: {exc}".splitlines()[0])
        return TOOLKIT_MISSING
    failures = 0
    for module_name, name, signature in json.loads(Path(path).read_text()):
        func = getattr(importlib.import_module(module_name), name).py_func
        argtypes = tuple(types.Array(getattr(types, t[1]), t[2], "C") if t[0] == "array"
                         else {"bool": types.boolean, "int64": types.int64,
                               "float64": types.float64}[t[0]] for t in json.loads(signature))
        try:
            cuda.compile_ptx(func, argtypes, cc=(9, 0))
            print(f"ok   {name} {argtypes[0]}")
        except Exception as exc:
            failures += 1
            print(f"FAIL {name} {argtypes}: {type(exc).__name__}: {exc}")
    return 1 if failures else 0


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--record":
        record(sys.argv[2])
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "launches.json")
        env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
        child = subprocess.run([sys.executable, __file__, "--record", path], env=env, cwd=ROOT,
                               capture_output=True, text=True)
        if child.returncode != 0:
            print(child.stdout + child.stderr)
            return 1
        if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
            print("SKIP: run without NUMBA_ENABLE_CUDASIM=1 to compile")
            return TOOLKIT_MISSING
        return compile_all(path)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
