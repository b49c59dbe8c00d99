"""Compilation settings and launch geometry shared by every CUDA kernel (numba-cuda).

Block and tile sizes are module constants, so shared and local arrays have compile-time shapes.
Under the simulator (NUMBA_ENABLE_CUDASIM=1, one Python thread per CUDA thread) they are tiny,
so that simulated tests stay fast and tiny shapes still span several tiles.

`kernel` is `numba.cuda.jit` with on-disk caching in `$NUMBA_CACHE_DIR/cuda-<hash>-<hash>`, the
hashes taken over every source file of kernels/ and of this package (Numba keys a cache on the
kernel's own file only, which would miss an edited device function of another module).
"""
from pathlib import Path

from numba import config as numba_config
from numba import cuda

from .._jit import _source_hash, cache_dir_for

SIMULATOR = bool(numba_config.ENABLE_CUDASIM)

if not SIMULATOR:
    # Small grids are intended here (a step of a small network is a few blocks per kernel);
    # numba-cuda would warn on every such launch.
    from numba.cuda.core import config as _cuda_config
    _cuda_config.CUDA_LOW_OCCUPANCY_WARNINGS = 0

if SIMULATOR:
    TILE, TILE_K, THREADS_2D = 8, 4, 2
    BLOCK, REDUCE, CHUNK = 8, 4, 16
else:
    TILE, TILE_K, THREADS_2D = 64, 16, 16  # 64x64 output tiles, 4x4 per thread
    BLOCK, REDUCE, CHUNK = 256, 256, 4096
MICRO = TILE // THREADS_2D          # outputs per thread along each tile axis
MAX_LAYERS = 512                     # layers a network may have on the device


# once, not per kernel; keyed on kernels/*.py too (the device code compiles kernels.schedules'
# lr_at and reads the codes of kernels.activations, optimizers and clipping)
_KERNELS_HASH = _source_hash(Path(__file__).parents[1])
CACHE_DIR = cache_dir_for(Path(__file__).parent, f"cuda-{_KERNELS_HASH}")


def kernel(func):
    """A cached CUDA kernel."""
    if SIMULATOR:
        return cuda.jit(func)
    from numba.cuda.core import config as cuda_config
    previous = cuda_config.CACHE_DIR
    cuda_config.CACHE_DIR = CACHE_DIR
    try:
        return cuda.jit(cache=True)(func)
    finally:
        cuda_config.CACHE_DIR = previous


def device(func):
    """A device function (compiled into the kernels that call it)."""
    return cuda.jit(device=True)(func)


def blocks(n, per_block):
    """ceil(n / per_block), at least 1."""
    return max(1, -(-int(n) // int(per_block)))
