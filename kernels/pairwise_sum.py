"""NumPy's pairwise float64 sums, bit for bit, compiled: the mean and std of np.mean(v,
dtype=float64) and np.std(v, dtype=float64).

`pairwise_sum(v, lo, n, centre, squared)` sums the terms t_i = float64(v_i), or with `squared`
t_i = (float64(v_i) - centre)^2 (the square rounded before it is added: no fused multiply-add),
for i in [lo, lo + n), as NumPy's pairwise summation does:
- a block of n <= BLOCK terms: below 8 in order; else 8 lanes (lane j adds terms j, j + 8, ...
  in order), combined as ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7)), then the last
  n mod 8 terms in order;
- longer: (sum of the first m) + (sum of the rest), m = n/2 rounded down to a multiple of 8.
The 8 lanes are one <8 x double> vector (`_lane_sums`, an LLVM intrinsic with plain IEEE adds:
each lane is summed in order, the bits of NumPy's eight scalar accumulators, which LLVM does
not vectorize when they are written out).
`moments_into(values, out, at)`: out[at], out[at + 1] = that mean and std.
Reference: NumPy itself (np.mean, np.std with dtype=float64).
"""
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from ._jit import kernel_exact_order, kernel_inline
from .vector_ir import I32, LaneLoader, contiguous_floats, splat

BUFFER = 8192            # NumPy's cast buffer (np.getbufsize()): a float32 sum in float64
BLOCK = 128              # NumPy's pairwise-sum block
LANES = 8                # NumPy's pairwise-sum accumulators


@intrinsic
def _lane_sums(typingctx, values, start, groups, centre, squared):
    """The 8 lanes of `groups` >= 1 groups of 8 terms from entry `start` of a contiguous 1-D
    float32/float64 array (lane j: terms start + j + 8g in order of g), combined as NumPy
    combines its accumulators."""
    if not contiguous_floats(values):
        return None
    sig = types.float64(values, types.intp, types.intp, types.float64, types.boolean)

    def codegen(context, builder, signature, args):
        array, first, count, mid, square = args
        entries = LaneLoader(context, builder, signature.args[0], array, first, LANES)
        lanes = ir.VectorType(ir.DoubleType(), LANES)
        centres = splat(builder, mid, lanes)

        def terms(group, squared_terms):
            x = entries.load(group)
            if entries.element != ir.DoubleType():
                x = builder.fpext(x, lanes)
            if squared_terms:
                d = builder.fsub(x, centres)
                x = builder.fmul(d, d)
            return x

        acc = cgutils.alloca_once(builder, lanes)
        with builder.if_else(square) as (then, otherwise):
            for branch, squared_terms in ((then, True), (otherwise, False)):
                with branch:
                    builder.store(terms(ir.Constant(first.type, 0), squared_terms), acc)
                    rest = builder.sub(count, ir.Constant(count.type, 1))
                    with cgutils.for_range(builder, rest) as loop:
                        group = builder.add(loop.index, ir.Constant(count.type, 1))
                        builder.store(builder.fadd(builder.load(acc),
                                                   terms(group, squared_terms)), acc)
        r = [builder.extract_element(builder.load(acc), I32(j)) for j in range(LANES)]
        add = builder.fadd
        return add(add(add(r[0], r[1]), add(r[2], r[3])), add(add(r[4], r[5]), add(r[6], r[7])))
    return sig, codegen


@kernel_inline
def _term(v, i, centre, squared):
    """Entry i of v in float64, or its squared deviation (v_i - centre)^2 with `squared`."""
    x = float(v[i])
    if squared:
        d = x - centre
        return d * d
    return x


@kernel_exact_order
def _block_sum(v, lo, n, centre, squared):
    """NumPy's sum of a block of n <= BLOCK terms: in order below 8, else 8 lanes and the
    last n mod 8 terms in order."""
    if n < LANES:
        res = 0.0
        for i in range(lo, lo + n):
            res += _term(v, i, centre, squared)
        return res
    res = _lane_sums(v, lo, n // LANES, centre, squared)
    for i in range(lo + n - n % LANES, lo + n):
        res += _term(v, i, centre, squared)
    return res


@kernel_exact_order
def pairwise_sum(v, lo, n, centre, squared):
    """NumPy's pairwise sum of the terms lo..lo + n of v (_term): blocks of up to BLOCK terms,
    and above that (left half, at a multiple of 8) + (right half), walked with an explicit
    stack (phase 0: split or sum a block; 1: left half summed; 2: both summed)."""
    if n <= BLOCK:
        return _block_sum(v, lo, n, centre, squared)
    starts = np.empty(64, np.int64)
    sizes = np.empty(64, np.int64)
    phase = np.zeros(64, np.int64)
    left = np.empty(64, np.float64)
    top, ret = 0, 0.0
    starts[0], sizes[0] = lo, n
    while top >= 0:
        m = sizes[top]
        half = m // 2
        half -= half % 8
        if phase[top] == 0 and m <= BLOCK:
            ret = _block_sum(v, starts[top], m, centre, squared)
            top -= 1
        elif phase[top] == 0:
            phase[top] = 1
            starts[top + 1], sizes[top + 1], phase[top + 1] = starts[top], half, 0
            top += 1
        elif phase[top] == 1:
            left[top] = ret
            phase[top] = 2
            starts[top + 1], sizes[top + 1] = starts[top] + half, m - half
            phase[top + 1] = 0
            top += 1
        else:
            ret = left[top] + ret
            top -= 1
    return ret


@kernel_exact_order
def moments_into(values, out, at):
    """out[at], out[at + 1] = mean and std of the entries of values, as NumPy's in float64:
    the mean sums float32 entries cast in buffers of BUFFER (NumPy's float64 sum of a float32
    array) and float64 ones in one pairwise sum; the variance sums the float64 squared
    deviations in one pairwise sum. Terms are cast as they are summed, so no copy is made."""
    n = values.shape[0]
    chunk = n if values.itemsize == 8 else BUFFER  # float64 entries are summed uncast
    total = 0.0
    for lo in range(0, n, chunk):
        total += pairwise_sum(values, lo, min(n, lo + chunk) - lo, 0.0, False)
    mean = total / n
    out[at] = mean
    out[at + 1] = np.sqrt(pairwise_sum(values, 0, n, mean, True) / n)
