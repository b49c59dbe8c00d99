"""The CUDA tests in their own processes: tests/kernels/test_cuda.py under the numba-cuda simulator (it
must be enabled before numba is imported, so never in this process), and the behavior without
a GPU or simulator (a clean CudaUnavailableError, the CUDA tests skipped with a reason)."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(args, **env_changes):
    env = dict(os.environ)
    for key, value in env_changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=900)


def _summary(proc):
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    return lines[-1] if lines else proc.stderr[-2000:]


def test_cuda_tests_pass_under_the_simulator():
    proc = _run(["-m", "pytest", "tests/kernels/test_cuda.py", "tests/kernels/test_cuda_api.py",
                 "-q", "-p", "no:cacheprovider"], NUMBA_ENABLE_CUDASIM="1")
    summary = _summary(proc)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert re.search(r"\d+ passed", summary) and "skipped" not in summary, summary


def test_without_gpu_or_simulator_cuda_is_a_clean_error():
    code = (
        "import sys, kernels\n"
        "assert 'numba.cuda.cudadrv' not in sys.modules, 'import kernels loaded numba.cuda'\n"
        "import kernels.cuda as kc\n"
        "from kernels import MLP\n"
        "assert not kc.available()\n"
        "try:\n"
        "    kc.CudaMLP(MLP([3, 2]))\n"
        "except kc.CudaUnavailableError as exc:\n"
        "    assert isinstance(exc, ValueError) and '\\n' not in str(exc), str(exc)\n"
        "    print('ERROR:', exc)\n"
        "else:\n"
        "    raise AssertionError('no error')\n")
    proc = _run(["-c", code], NUMBA_ENABLE_CUDASIM=None, CUDA_VISIBLE_DEVICES="")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ERROR: CUDA is not available" in proc.stdout


def test_a_numba_cuda_that_cannot_load_its_compiler_is_one_line():
    """numba-cuda releases that call np.row_stack (gone in NumPy 2.5) failed on a real H200 at
    their first kernel with 69 tracebacks; the toolchain check names the cause in one line."""
    code = ("import numpy\n"
            "del numpy.row_stack  # as NumPy 2.5 removed it\n"
            "from kernels.cuda import toolchain_reason\n"
            "print('REASON:', toolchain_reason(launch=False))\n")
    proc = _run(["-c", code], NUMBA_ENABLE_CUDASIM=None, CUDA_VISIBLE_DEVICES="")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    line = proc.stdout.strip()
    assert line.count("\n") == 0 and "row_stack" in line and "numpy<2.5" in line, line
    healthy = _run(["-c", "from kernels.cuda import toolchain_reason\n"
                          "print('REASON:', toolchain_reason(launch=False))"],
                   NUMBA_ENABLE_CUDASIM=None, CUDA_VISIBLE_DEVICES="")
    assert healthy.stdout.strip() == "REASON: None", healthy.stdout + healthy.stderr


def test_cuda_tests_skip_cleanly_without_gpu_or_simulator():
    """Run by path without a GPU or simulator, the CUDA tests skip with the reason; in a plain
    `pytest` run they are not collected at all (tests/conftest.py)."""
    proc = _run(["-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "--noconftest",
                 "tests/kernels/test_cuda.py"], NUMBA_ENABLE_CUDASIM=None, CUDA_VISIBLE_DEVICES="")
    summary = _summary(proc)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "skipped" in summary and "failed" not in summary, summary
    assert "NUMBA_ENABLE_CUDASIM is not set" in proc.stdout
    listing = _run(["-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "tests"],
                   NUMBA_ENABLE_CUDASIM=None, CUDA_VISIBLE_DEVICES="")
    assert "test_cuda.py" not in listing.stdout and "test_cuda_sim.py" in listing.stdout


def test_kernels_compile_for_a_real_gpu():
    """Every kernel, with the argument types of a simulated run, compiles to sm_90 PTX (the
    simulator never runs Numba's CUDA compiler); skipped where libNVVM is missing."""
    proc = _run(["tests/kernels/cuda_sim/ptx_check.py"], NUMBA_ENABLE_CUDASIM=None)
    if proc.returncode == 77:
        pytest.skip(proc.stdout.strip().splitlines()[-1])
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert "FAIL" not in proc.stdout and proc.stdout.count("ok ") >= 20
