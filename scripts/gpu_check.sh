#!/usr/bin/env bash
# GPU check of gradlab's CUDA path (kernels/cuda): runs tests/kernels/test_cuda.py on a real GPU (the
# numba-cuda simulator switched off), then a small benchmark (`gradlab bench --device cuda`,
# studies/bench_gpu.py: CudaMLP and
# CudaMultiMLP training steps against PyTorch CUDA, printed as a ratio table). No network needed;
# finishes in under 5 minutes (each part has its own timeout).
#
# Needs: an NVIDIA GPU and driver; Python >= 3.11 with numpy<2.5, scipy, pytest, numba (0.61-0.69),
# numba-cuda with the CUDA toolkit libraries it compiles with (NVVM, NVRTC, libdevice: e.g.
# `pip install "numba-cuda[cu12]"`, or a CUDA toolkit on the system), and torch built with CUDA
# (optional: without it only our timings are printed).
#
# Usage: scripts/gpu_check.sh [python]      (default: .venv/bin/python if present, else python3)
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${1:-}"
if [ -z "$PY" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
unset NUMBA_ENABLE_CUDASIM
export NUMBA_CACHE_DIR="${NUMBA_CACHE_DIR:-/tmp/gradlab_numba_cache}"

"$PY" -c "import numpy, numba; from kernels.cuda import _version as v
print('python', __import__('sys').version.split()[0], '| numpy', numpy.__version__, '| numba',
      numba.__version__, '| numba-cuda', v('numba-cuda'))"
# require() compiles and runs a probe kernel: a numba-cuda that cannot compile with this NumPy
# (seen on an H200 image with NumPy 2.5) is one line here, not 69 failing tests.
"$PY" -c "import kernels.cuda as kc, sys; kc.require(); print('GPU:', kc.device_name())" || {
    echo "gpu_check: no usable CUDA GPU (see the error above)"; exit 2; }

echo "== tests/kernels/test_cuda.py on the GPU"
timeout 200 "$PY" -m pytest tests/kernels/test_cuda.py -q -rs -p no:cacheprovider
tests=$?

echo "== benchmark"
timeout 90 "$PY" -m studies.cli bench --device cuda
bench=$?

echo "gpu_check: tests exit $tests, benchmark exit $bench"
[ "$tests" -eq 0 ] && [ "$bench" -eq 0 ]
