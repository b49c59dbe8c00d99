"""Exact order statistics of a flat array without sorting it (what percentiles need).

`order_statistics(values, ranks)` returns sorted(values)[ranks] exactly, by radix selection on
the float64 bit pattern: key(v) = bits(v) with the sign bit set for v >= 0, all bits flipped
for v < 0, is an unsigned integer in the order of the values (infinities included), so the
k-th value is found digit by digit from the top, 11 bits at a time:
1. one pass counts the keys by their top digit (sign and exponent) and gathers the buckets that
   hold a wanted rank;
2. each rank then narrows its own bucket: the digit that ends at the highest bit on which the
   bucket's keys still differ is counted, and only the keys of the rank's digit are kept.
Every level costs three passes over what is left and removes at least one bit of difference,
whatever the distribution (values spread over decades, heavy ties, saturated ends); a bucket of
equal keys (ReLU zeros) ends at once. Any NaN gives NaN for every rank (a sort puts NaN last,
and percentiles of it are NaN).
Reference: `order_statistics_reference` (np.sort).
"""
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from ._jit import kernel, kernel_inline
from .vecmath import _float64_from_bits

DIGIT = 11
TOP_SHIFT = 64 - DIGIT      # the first digit: sign and exponent bits
SIGN = np.uint64(1 << 63)
SORT_BELOW = 32             # a segment this small is sorted instead


@intrinsic
def _float64_bits(typingctx, x):
    """The int64 bit pattern of the float64 x."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))
    return types.int64(types.float64), codegen


@kernel_inline
def _key(v):
    """The unsigned key of float64 v: keys order as the values do."""
    u = np.uint64(_float64_bits(v))
    return ~u if u & SIGN else u | SIGN


@kernel_inline
def _value(key):
    """The float64 whose key is `key`."""
    u = key & ~SIGN if key & SIGN else ~key
    return _float64_from_bits(np.int64(u))


@kernel
def order_statistics(values, ranks):
    """sorted(values)[ranks] (float64) for a 1-D array and int64 ranks in [0, n); NaN for every
    rank if any entry is NaN."""
    n = values.shape[0]
    out = np.empty(ranks.shape[0], np.float64)
    keys = np.empty(n, np.uint64)
    has_nan = False
    for i in range(n):
        v = float(values[i])
        has_nan |= v != v
        keys[i] = _key(v)
    if has_nan:
        out[:] = np.nan
        return out
    buckets = 1 << DIGIT
    counts = np.zeros(buckets, np.int64)
    for i in range(n):
        counts[keys[i] >> TOP_SHIFT] += 1
    start = np.zeros(buckets + 1, np.int64)
    for b in range(buckets):
        start[b + 1] = start[b] + counts[b]
    want = np.zeros(buckets, np.bool_)
    bucket = np.empty(ranks.shape[0], np.int64)
    for r in range(ranks.shape[0]):
        bucket[r] = np.searchsorted(start, ranks[r], side="right") - 1
        want[bucket[r]] = True
    gathered = np.empty(n + 1, np.uint64)  # slot n takes the keys of unwanted buckets
    fill = start.copy()
    for i in range(n):  # branch-free: a mispredicted branch per key would double the cost
        b = keys[i] >> TOP_SHIFT
        keep = want[b]
        gathered[fill[b] if keep else n] = keys[i]
        fill[b] += keep
    for r in range(ranks.shape[0]):
        b = bucket[r]
        key = _kth_key(gathered[start[b]:start[b + 1]], ranks[r] - start[b])
        out[r] = _value(key)
    return out


@kernel
def _kth_key(keys, k):
    """sorted(keys)[k]: find the highest bit on which the keys differ, count the DIGIT-bit digit
    ending there, keep the keys of rank k's digit, repeat until they all agree."""
    segment = keys
    while segment.shape[0] > SORT_BELOW:
        first = segment[0]
        differ = np.uint64(0)
        for i in range(segment.shape[0]):
            differ |= segment[i] ^ first
        if differ == 0:
            return first
        top = 63
        while (differ >> np.uint64(top)) == 0:
            top -= 1
        low = np.uint64(max(top - DIGIT + 1, 0))
        mask = np.uint64((1 << DIGIT) - 1)
        counts = np.zeros(1 << DIGIT, np.int64)
        for i in range(segment.shape[0]):
            counts[(segment[i] >> low) & mask] += 1
        digit = 0
        while k >= counts[digit]:
            k -= counts[digit]
            digit += 1
        inside = np.empty(counts[digit], np.uint64)
        m = 0
        for i in range(segment.shape[0]):
            if (segment[i] >> low) & mask == digit:
                inside[m] = segment[i]
                m += 1
        segment = inside
    return np.sort(segment)[k]


def order_statistics_reference(values, ranks):
    """sorted(values)[ranks] by a full NumPy sort (NaN last)."""
    ordered = np.sort(np.asarray(values).ravel())
    if ordered.size and np.isnan(ordered[-1]):
        return np.full(len(ranks), np.nan)
    return ordered[np.asarray(ranks)].astype(np.float64)
