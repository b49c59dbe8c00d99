"""Compilation settings shared by every CPU kernel.

`kernel` is `numba.njit` with on-disk caching, no GIL, the NumPy error model (x/0 gives inf, as
in NumPy, instead of raising) and a fastmath flag set that keeps NaN and Inf semantics: without
`nnan`/`ninf`, `np.isfinite` checks survive, which divergence detection relies on.
"""
import numba

FASTMATH = frozenset({"nsz", "arcp", "contract", "afn", "reassoc"})

kernel = numba.njit(cache=True, nogil=True, error_model="numpy", fastmath=set(FASTMATH))


def kernel_inline(func):
    """A kernel that callers compile into themselves (for tiny scalar helpers)."""
    return numba.njit(cache=True, nogil=True, error_model="numpy", fastmath=set(FASTMATH),
                      inline="always")(func)
