"""Atomic loads, stores and compare-exchange on int64 arrays, for compiled code that hands work
between two threads without the GIL (the helper thread of a split train step).

Plain loads in a compiled spin loop may be hoisted out of it by LLVM, and plain stores carry no
ordering: `load_acquire(flags, i)` and `store_release(flags, i, value)` are LLVM atomics with
acquire / release ordering (what one thread wrote before a release store is visible to the thread
whose acquire load reads that store), and `compare_exchange(flags, i, expected, new)` is a
sequentially consistent cmpxchg that returns True when it wrote. `spin_pause()` is the x86
`pause` hint (llvm.x86.sse2.pause) of a spin-wait loop (nothing elsewhere); `cycle_counter()`
reads the processor's cycle counter (`llvm.readcyclecounter`) for spin time limits; `nap(us)`
sleeps the thread (libc `usleep`) and `yield_thread()` gives the processor away
(sched_yield), both without returning to Python; `pointer(address, dtype)` makes a typed
pointer of an integer address (for `numba.carray`), so one compiled helper can work on
whichever arrays a caller hands it.
"""
import platform

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

_PAUSE = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


def _check(array, index):
    if not (isinstance(array, types.Array) and array.dtype == types.int64 and array.ndim == 1):
        raise TypeError("atomics operate on 1-D int64 arrays")
    if not isinstance(index, types.Integer):
        raise TypeError("atomics take an integer index")


def _pointer(context, builder, array_type, array, index):
    ary = context.make_array(array_type)(context, builder, array)
    return cgutils.get_item_pointer(context, builder, array_type, ary, [index])


@intrinsic
def load_acquire(typingctx, array, index):
    """array[index], an acquire load."""
    _check(array, index)

    def codegen(context, builder, sig, args):
        ptr = _pointer(context, builder, sig.args[0], args[0], args[1])
        return builder.load_atomic(ptr, "acquire", 8)
    return types.int64(array, index), codegen


@intrinsic
def store_release(typingctx, array, index, value):
    """array[index] = value, a release store."""
    _check(array, index)

    def codegen(context, builder, sig, args):
        ptr = _pointer(context, builder, sig.args[0], args[0], args[1])
        val = context.cast(builder, args[2], sig.args[2], types.int64)
        builder.store_atomic(val, ptr, "release", 8)
        return context.get_dummy_value()
    return types.void(array, index, value), codegen


@intrinsic
def compare_exchange(typingctx, array, index, expected, new):
    """Atomically: if array[index] == expected, array[index] = new and True; else False."""
    _check(array, index)

    def codegen(context, builder, sig, args):
        ptr = _pointer(context, builder, sig.args[0], args[0], args[1])
        old = context.cast(builder, args[2], sig.args[2], types.int64)
        val = context.cast(builder, args[3], sig.args[3], types.int64)
        pair = builder.cmpxchg(ptr, old, val, "seq_cst", "seq_cst")
        return builder.extract_value(pair, 1)
    return types.boolean(array, index, expected, new), codegen


@intrinsic
def spin_pause(typingctx):
    """The processor's spin-wait hint (x86 `pause`); an empty statement elsewhere."""
    def codegen(context, builder, sig, args):
        if _PAUSE:
            fn = cgutils.get_or_insert_function(builder.module,
                                                ir.FunctionType(ir.VoidType(), []),
                                                "llvm.x86.sse2.pause")
            builder.call(fn, [])
        return context.get_dummy_value()
    return types.void(), codegen


@intrinsic
def cycle_counter(typingctx):
    """The processor's cycle counter (llvm.readcyclecounter), as int64."""
    def codegen(context, builder, sig, args):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(64), []),
                                            "llvm.readcyclecounter")
        return builder.call(fn, [])
    return types.int64(), codegen


@intrinsic
def nap(typingctx, microseconds):
    """Sleeps the calling thread for about `microseconds` (libc usleep), without the GIL."""
    if not isinstance(microseconds, types.Integer):
        raise TypeError("nap takes an integer number of microseconds")

    def codegen(context, builder, sig, args):
        fn = cgutils.get_or_insert_function(builder.module,
                                            ir.FunctionType(ir.IntType(32), [ir.IntType(32)]),
                                            "usleep")
        builder.call(fn, [builder.trunc(args[0], ir.IntType(32))])
        return context.get_dummy_value()
    return types.void(microseconds), codegen


@intrinsic
def yield_thread(typingctx):
    """Gives the processor to another runnable thread, if any (libc sched_yield)."""
    def codegen(context, builder, sig, args):
        fn = cgutils.get_or_insert_function(builder.module,
                                            ir.FunctionType(ir.IntType(32), []), "sched_yield")
        builder.call(fn, [])
        return context.get_dummy_value()
    return types.void(), codegen


@intrinsic
def pointer(typingctx, address, dtype):
    """The integer `address` as a pointer to `dtype` (a NumPy scalar type such as np.float32),
    for numba.carray(pointer(a, dtype), n)."""
    if not isinstance(address, types.Integer) or not isinstance(dtype, types.NumberClass):
        raise TypeError("pointer takes an integer address and a NumPy scalar type")
    target = types.CPointer(dtype.instance_type)

    def codegen(context, builder, sig, args):
        return builder.inttoptr(args[0], context.get_value_type(target))
    return target(address, dtype), codegen
