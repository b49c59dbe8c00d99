"""Shared test settings: a project-local Numba cache unless the caller chose one."""
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".numba_cache"))
for path in (ROOT, ROOT / "tests"):  # the packages, and the shared test helpers (_torch_helpers ...)
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))


def _cuda_usable():
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return True
    try:
        import kernels.cuda
        return kernels.cuda.available()
    except Exception:
        return False


# The CUDA kernel tests need a GPU or the simulator (which must be switched on before numba is
# imported): without either they are not collected here; tests/kernels/test_cuda_sim.py runs them in a
# subprocess under the simulator, and scripts/gpu_check.sh on a real GPU.
collect_ignore = [] if _cuda_usable() else ["kernels/test_cuda.py", "kernels/test_cuda_api.py"]
