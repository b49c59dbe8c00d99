"""Compilation settings shared by every CPU kernel.

`kernel` is `numba.njit` with on-disk caching, no GIL, the NumPy error model (x/0 gives inf, as
in NumPy, instead of raising) and a fastmath flag set that keeps NaN and Inf semantics: without
`nnan`/`ninf`, `np.isfinite` checks survive, which divergence detection relies on.

Numba's cache keys each function on its own source file only, so a change in a helper kernel
of another module would load a stale fused step. The cache therefore lives in a folder named
after a hash of every kernel source: `$NUMBA_CACHE_DIR/kernels-<hash>` (default base
`~/.cache/gradlab/numba`); a changed kernel gets a fresh folder.
"""
import hashlib
import os
from pathlib import Path

import numba
from numba.core import config as numba_config

FASTMATH = frozenset({"nsz", "arcp", "contract", "afn", "reassoc"})
LANES = 16  # partial sums of a kernel_ordered reduction: one AVX-512 register of float32


def _source_hash(folder=Path(__file__).parent):
    """A hash of every .py file directly in `folder` (names and contents)."""
    digest = hashlib.sha256()
    for path in sorted(Path(folder).glob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def cache_dir_for(folder, prefix):
    """$NUMBA_CACHE_DIR/<prefix>-<hash of folder's sources> (default base ~/.cache/gradlab)."""
    base = os.environ.get("NUMBA_CACHE_DIR") or str(Path.home() / ".cache" / "gradlab" / "numba")
    return str(Path(base) / f"{prefix}-{_source_hash(folder)}")


CACHE_DIR = cache_dir_for(Path(__file__).parent, "kernels")


def _cached(func, fastmath=FASTMATH, **options):
    previous = numba_config.CACHE_DIR
    numba_config.CACHE_DIR = CACHE_DIR
    try:
        return numba.njit(cache=True, nogil=True, error_model="numpy", fastmath=set(fastmath),
                          **options)(func)
    finally:
        numba_config.CACHE_DIR = previous


def kernel(func):
    """A cached, compiled CPU kernel."""
    return _cached(func)


def kernel_inline(func):
    """A kernel that callers compile into themselves (for tiny scalar helpers)."""
    return _cached(func, inline="always")


def kernel_ordered(func):
    """A kernel whose floating-point sums keep the order written: no `reassoc`, which lets
    LLVM regroup a reduction as the inlining context of each compilation suggests, so the same
    sum compiled in two processes (one fresh, one from the cache) could differ in its last
    bits. Such kernels accumulate in LANES explicit partial sums (a vector register's worth,
    each summed in order), combined in a fixed order at the end: vectorized and reproducible."""
    return _cached(func, fastmath=FASTMATH - {"reassoc"})


def kernel_exact_order(func):
    """A kernel compiled without `reassoc` and `contract`: each sum and product in the order
    written, no fused multiply-adds formed, so a fresh compilation and the cached one give the
    same bits whatever LLVM inlines where (the curvature kernels' tangent passes)."""
    return _cached(func, fastmath=FASTMATH - {"reassoc", "contract"})