"""LLVM IR pieces shared by the kernels' vector intrinsics (kernels.pairwise_sum,
kernels.order_stats): loops written as explicit vectors where numba's own code would stay scalar
or widen its lanes.

- `contiguous_floats(values)`: whether a numba type is a C-contiguous 1-D float32/float64
  array (what the intrinsics accept; any other type is left untyped);
- `splat(builder, value, vector)`: `value` in every lane of a vector type;
- `LaneLoader(context, builder, array_type, array, start, width)`: `load(group)` reads the
  `width` entries start + width * group ... start + width * (group + 1) - 1 as one vector.
"""
from llvmlite import ir
from numba import types

I32 = ir.IntType(32)


def contiguous_floats(values):
    """values: a numba type; True for a C-contiguous 1-D float32 or float64 array."""
    return (isinstance(values, types.Array) and values.ndim == 1 and values.layout == "C"
            and values.dtype in (types.float32, types.float64))


def splat(builder, value, vector):
    """A vector of type `vector` with `value` in every lane."""
    one = builder.insert_element(ir.Constant(vector, ir.Undefined), value, I32(0))
    return builder.shuffle_vector(one, one, ir.Constant(ir.VectorType(I32, vector.count),
                                                        [0] * vector.count))


class LaneLoader:
    """Vector loads of consecutive groups of `width` entries of a 1-D array from entry
    `start` (unaligned: the entry's own alignment)."""

    def __init__(self, context, builder, array_type, array, start, width):
        self.builder, self.width = builder, width
        self.element = context.get_value_type(array_type.dtype)
        self.vector = ir.VectorType(self.element, width)
        data = context.make_array(array_type)(context, builder, array).data
        self.base = builder.gep(data, [start])
        self.align = context.get_abi_sizeof(self.element)

    def load(self, group):
        """Entries start + width * group onwards, as one vector of the array's dtype."""
        b = self.builder
        at = b.gep(self.base, [b.mul(group, ir.Constant(group.type, self.width))])
        return b.load(b.bitcast(at, self.vector.as_pointer()), align=self.align)
