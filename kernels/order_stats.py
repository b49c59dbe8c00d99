"""Exact order statistics of a flat array without sorting it (what percentiles need).

`order_statistics(values, ranks)` returns sorted(values)[ranks] exactly, by radix selection on
the float64 bit pattern: key(v) = bits(v) with the sign bit set for v >= 0, all bits flipped
for v < 0, is an unsigned integer in the order of the values (infinities included), so the
k-th value is found digit by digit from the top:
1. one pass sorts every entry into one of BUCKETS buckets by the top BUCKET_BITS bits of the
   same key of its float32 rounding (sign, exponent, top mantissa bits: rounding is monotone,
   so the buckets are in the order of the values, eighths of an octave for any dtype) and
   counts them (four interleaved tallies, so a run of one bucket, such as ReLU zeros, does not
   wait on itself);
2. one pass keeps the keys of the buckets that hold a wanted rank, bucket by bucket (a rank in
   a bucket of only +0.0 or only -0.0, as ReLU zeros, is answered from the counts of the first
   pass and keeps nothing); when those keys are many, the pass is branch-free and they are
   placed by bucket afterwards;
3. each rank narrows its own bucket (`_kth_key`): the DIGIT-bit digit that ends at the highest
   bit on which the bucket's keys still differ is counted, and only the keys of the rank's
   digit are kept; a rank right after the previous one in the same bucket is found from it by
   two vector passes (`_next_key`), as percentiles ask for neighbouring order statistics.
Every level removes at least one bit of difference, whatever the distribution (values spread
over decades, heavy ties, saturated ends); a bucket of equal keys (ReLU zeros) ends at once.
Any NaN gives NaN for every rank (a sort puts NaN last, and percentiles of it are NaN).
`proved_order_statistics(values, guesses, ranks)` checks a guess of each (such as f of the order
statistics of the input of a non-decreasing f) by counting, and selects only if one fails.
Reference: `order_statistics_reference` (np.sort).
"""
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from ._jit import kernel, kernel_inline
from .vecmath import _float64_from_bits
from .vector_ir import I32, LaneLoader, contiguous_floats, splat

DIGIT = 11
SIGN = np.uint64(1 << 63)
SORT_BELOW = 32             # a segment this small is sorted instead
BUCKET_BITS = 12            # first level: sign, 8 exponent and 3 mantissa bits of float32
BUCKETS = 1 << BUCKET_BITS
BUCKET_SHIFT = np.uint32(32 - BUCKET_BITS)
SIGN32 = np.uint32(1 << 31)
NO_KEY = np.uint64(0xFFFFFFFFFFFFFFFF)
POSITIVE_ZERO = SIGN                          # the keys of +0.0 and -0.0
NEGATIVE_ZERO = np.uint64(0x7FFFFFFFFFFFFFFF)
SPARSE_BELOW = 8            # kept keys under 1/8 of the entries: gathered by a branch


COUNT_LANES = 16            # entries compared per vector step of _lane_counts
MAX_GROUPS = 1 << 26        # groups per _lane_counts call: its int32 lane tallies cannot overflow


@intrinsic
def _lane_counts(typingctx, values, start, groups, bound):
    """(entries < bound, entries <= bound) among the groups x COUNT_LANES entries from `start`
    of a contiguous 1-D float array (bound of its dtype; NaN counts in neither), tallied in
    COUNT_LANES int32 lanes (numba would widen them to int64, a quarter of the lanes)."""
    if not contiguous_floats(values):
        return None
    sig = types.UniTuple(types.int64, 2)(values, types.intp, types.intp, values.dtype)

    def codegen(context, builder, signature, args):
        array, first, count, limit = args
        entries = LaneLoader(context, builder, signature.args[0], array, first, COUNT_LANES)
        limits = splat(builder, limit, entries.vector)
        tallies = ir.VectorType(I32, COUNT_LANES)
        below = cgutils.alloca_once_value(builder, ir.Constant(tallies, [0] * COUNT_LANES))
        at_most = cgutils.alloca_once_value(builder, ir.Constant(tallies, [0] * COUNT_LANES))
        with cgutils.for_range(builder, count) as loop:
            x = entries.load(loop.index)
            for tally, op in ((below, "<"), (at_most, "<=")):
                hits = builder.zext(builder.fcmp_ordered(op, x, limits), tallies)
                builder.store(builder.add(builder.load(tally), hits), tally)

        def total(tally):
            lanes, i64 = builder.load(tally), ir.IntType(64)
            out = i64(0)
            for j in range(COUNT_LANES):
                out = builder.add(out, builder.zext(builder.extract_element(lanes, I32(j)), i64))
            return out
        return context.make_tuple(builder, signature.return_type, [total(below), total(at_most)])
    return sig, codegen


@intrinsic
def _float64_bits(typingctx, x):
    """The int64 bit pattern of the float64 x."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))
    return types.int64(types.float64), codegen


@intrinsic
def _float32_bits(typingctx, x):
    """The int32 bit pattern of the float32 x."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))
    return types.int32(types.float32), codegen


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


@kernel_inline
def _bucket(v):
    """The first-level bucket of v: the top BUCKET_BITS bits of its float32 rounding's key
    (non-decreasing in v)."""
    u = np.uint32(_float32_bits(np.float32(v)))
    return (~u if u & SIGN32 else u | SIGN32) >> BUCKET_SHIFT


@kernel
def _histogram(values, bucket_of, counts):
    """bucket_of[i] = _bucket(values[i]); counts[b] = entries in bucket b; returns the number
    of NaN, +0.0 and -0.0 entries."""
    n = values.shape[0]
    n_nan, positive_zeros, negative_zeros = 0, 0, 0
    for i in range(n):
        v = values[i]
        n_nan += v != v
        key = _key(float(v))
        positive_zeros += key == POSITIVE_ZERO
        negative_zeros += key == NEGATIVE_ZERO
        bucket_of[i] = _bucket(v)
    tally = np.zeros(4 * BUCKETS, np.int32)
    end = n - n % 4
    for i in range(0, end, 4):
        tally[bucket_of[i]] += 1
        tally[BUCKETS + bucket_of[i + 1]] += 1
        tally[2 * BUCKETS + bucket_of[i + 2]] += 1
        tally[3 * BUCKETS + bucket_of[i + 3]] += 1
    for i in range(end, n):
        tally[bucket_of[i]] += 1
    for b in range(BUCKETS):
        counts[b] = tally[b] + tally[BUCKETS + b] + tally[2 * BUCKETS + b] \
            + tally[3 * BUCKETS + b]
    return n_nan, positive_zeros, negative_zeros


@kernel
def order_statistics(values, ranks):
    """sorted(values)[ranks] (float64) for a 1-D array and int64 ranks in [0, n); NaN for every
    rank if any entry is NaN."""
    n = values.shape[0]
    out = np.empty(ranks.shape[0], np.float64)
    counts = np.empty(BUCKETS, np.int64)
    bucket_of = np.empty(n, np.uint16)
    n_nan, positive_zeros, negative_zeros = _histogram(values, bucket_of, counts)
    if n_nan:
        out[:] = np.nan
        return out
    start = np.empty(BUCKETS + 1, np.int64)
    start[0] = 0
    for b in range(BUCKETS):
        start[b + 1] = start[b] + counts[b]
    want = np.zeros(BUCKETS, np.uint8)
    bucket = np.empty(ranks.shape[0], np.int64)
    solved = np.zeros(ranks.shape[0], np.bool_)
    for r in range(ranks.shape[0]):
        b = np.searchsorted(start, ranks[r], side="right") - 1
        bucket[r] = b
        if b == _bucket(0.0) and counts[b] == positive_zeros:  # only +0.0 there (ReLU)
            out[r], solved[r] = 0.0, True
        elif b == _bucket(-0.0) and counts[b] == negative_zeros:
            out[r], solved[r] = -0.0, True
        else:
            want[b] = 1
    end = np.zeros(BUCKETS, np.int64)  # where each wanted bucket's keys go, then end
    kept = 0
    for b in range(BUCKETS):
        if want[b]:
            end[b] = kept
            kept += counts[b]
    placed = np.empty(kept, np.uint64)
    if kept * SPARSE_BELOW < n:  # few kept: a rarely taken branch costs less than a copy
        for i in range(n):
            b = bucket_of[i]
            if want[b]:
                placed[end[b]] = _key(float(values[i]))
                end[b] += 1
    else:
        keys = np.empty(kept + 1, np.uint64)   # the kept keys in row order (slot kept: spill)
        of = np.empty(kept + 1, np.uint16)
        m = 0
        for i in range(n):  # branch-free: a mispredicted branch per key would double the cost
            b = bucket_of[i]
            keys[m] = _key(float(values[i]))
            of[m] = b
            m += want[b]
        for j in range(kept):
            b = of[j]
            placed[end[b]] = keys[j]
            end[b] += 1
    key = NO_KEY
    for r in range(ranks.shape[0]):
        if solved[r]:
            continue
        b = bucket[r]
        segment = placed[end[b] - counts[b]:end[b]]
        k = ranks[r] - start[b]
        if r > 0 and ranks[r] == ranks[r - 1] + 1 and bucket[r - 1] == b:
            key = _next_key(segment, key, k - 1)
        else:
            key = _kth_key(segment, k)
        out[r] = _value(key)
    return out


@kernel
def proved_order_statistics(values, candidates, ranks):
    """sorted(values)[ranks] given a guess of each (float64 candidates, such as f of the order
    statistics of f's input for an activation f that is non-decreasing): candidate c is the
    answer for rank r exactly when, in key order, fewer than r + 1 entries are below c and more
    than r are at most c, which one vector pass per distinct candidate counts (_lane_counts:
    16 entries a step). If any candidate fails (or an entry is NaN) the answer is
    order_statistics(values, ranks): the same bits in every case."""
    m = ranks.shape[0]
    n = np.uint64(values.shape[0])
    n_nan = 0
    for i in range(n):
        n_nan += values[i] != values[i]
    if n_nan:
        return order_statistics(values, ranks)
    out = np.empty(m, np.float64)
    counted, below, at_most = NO_KEY, 0, 0
    for r in range(m):
        c = values.dtype.type(candidates[r])  # the entry it must be (rounded to the dtype)
        key = _key(float(c))
        if key != counted:  # else the previous rank's candidate (ReLU zeros, saturated ends)
            if c == 0.0:  # +0.0 and -0.0 differ in key order: count keys
                below, at_most = _key_counts(values, key)
            else:  # elsewhere key order is the order of the values
                below, at_most = _value_counts(values, c)
            counted = key
        if not below <= ranks[r] < at_most:
            return order_statistics(values, ranks)
        out[r] = c
    return out


@kernel
def _value_counts(values, c):
    """(entries < c, entries <= c) of values without NaN: whole groups of COUNT_LANES by
    _lane_counts, the rest one by one."""
    n = values.shape[0]
    whole = n - n % COUNT_LANES
    below, at_most = 0, 0
    for lo in range(0, whole, MAX_GROUPS * COUNT_LANES):
        groups = min(whole - lo, MAX_GROUPS * COUNT_LANES) // COUNT_LANES
        lane_below, lane_at_most = _lane_counts(values, lo, groups, c)
        below += lane_below
        at_most += lane_at_most
    for i in range(whole, n):
        below += values[i] < c
        at_most += values[i] <= c
    return below, at_most


@kernel
def _key_counts(values, wanted):
    """(entries whose key is < wanted, <= wanted)."""
    below, at_most = 0, 0
    for i in range(np.uint64(values.shape[0])):
        key = _key(float(values[i]))
        below += key < wanted
        at_most += key <= wanted
    return below, at_most


@kernel
def _next_key(keys, key, k):
    """sorted(keys)[k + 1] given that sorted(keys)[k] is `key` (k + 1 < len(keys))."""
    at_most = 0
    for i in range(keys.shape[0]):
        at_most += keys[i] <= key
    if at_most > k + 1:
        return key
    above = NO_KEY
    for i in range(keys.shape[0]):
        above = min(above, keys[i] if keys[i] > key else NO_KEY)
    return above


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
