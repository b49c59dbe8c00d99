"""kernels/vector_ir.py: the intrinsics' shared IR pieces: the array types they accept, a
splat puts its value in every lane, and a lane load reads exactly its group's entries from any
start (unaligned)."""
import numba
import numpy as np
import pytest
from numba import types
from numba.extending import intrinsic

from kernels.vector_ir import I32, LaneLoader, contiguous_floats, splat

WIDTH = 8


@intrinsic
def _shifted_group(typingctx, values, start, group, shift, out):
    """out[:WIDTH] = the entries of group `group` from `start` (one vector load) + shift (a
    splat)."""
    sig = types.void(values, types.intp, types.intp, values.dtype, out)

    def codegen(context, builder, signature, args):
        array, first, index, by, target = args
        entries = LaneLoader(context, builder, signature.args[0], array, first, WIDTH)
        shifted = builder.fadd(entries.load(index), splat(builder, by, entries.vector))
        dest = context.make_array(signature.args[4])(context, builder, target).data
        for j in range(WIDTH):
            builder.store(builder.extract_element(shifted, I32(j)),
                          builder.gep(dest, [I32(j)]))
        return context.get_dummy_value()
    return sig, codegen


@numba.njit
def shifted_group(values, start, group, shift, out):
    _shifted_group(values, start, group, shift, out)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_lane_load_reads_its_group_and_a_splat_fills_every_lane(dtype):
    values = np.arange(100, dtype=dtype) * dtype(1.5)
    out = np.empty(WIDTH, dtype)
    for start in (0, 1, 3, 7):
        for group in (0, 1, 5):
            shifted_group(values, start, group, dtype(0.25), out)
            lo = start + WIDTH * group
            np.testing.assert_array_equal(out, values[lo:lo + WIDTH] + dtype(0.25))


def test_only_contiguous_1d_float_arrays_are_accepted():
    assert contiguous_floats(types.float32[::1]) and contiguous_floats(types.float64[::1])
    assert not contiguous_floats(types.float32[:])         # any layout
    assert not contiguous_floats(types.float64[:, ::1])    # 2-D
    assert not contiguous_floats(types.int64[::1])         # integers
    assert not contiguous_floats(types.float64)            # a scalar
