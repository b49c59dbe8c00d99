"""The atomics of kernels.atomics, in compiled code: what each returns and writes, two threads
counting through compare-exchange without losing an increment, and typed views from
addresses."""
import threading

import numpy as np
from numba import carray

from kernels._jit import kernel
from kernels.atomics import compare_exchange, cycle_counter, load_acquire, nap, pointer, \
    spin_pause, store_release


@kernel
def _store_load_cas(flags):
    store_release(flags, 1, 7)
    seen = load_acquire(flags, 1)
    first = compare_exchange(flags, 1, 7, 9)
    second = compare_exchange(flags, 1, 7, 11)
    spin_pause()
    return seen, first, second, flags[1]


def test_store_load_and_compare_exchange():
    flags = np.zeros(4, np.int64)
    assert _store_load_cas(flags) == (7, True, False, 9)
    assert flags.tolist() == [0, 9, 0, 0]


@kernel
def _count(flags, n):
    """n increments of flags[0] by compare-exchange; returns the failed attempts."""
    failed = 0
    for _ in range(n):
        while True:
            old = load_acquire(flags, 0)
            if compare_exchange(flags, 0, old, old + 1):
                break
            failed += 1
    return failed


def test_two_threads_counting_lose_no_increment():
    flags = np.zeros(1, np.int64)
    _count(flags, 1)  # compiled before the threads start
    flags[0] = 0
    threads = [threading.Thread(target=_count, args=(flags, 200_000)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert flags[0] == 400_000


@kernel
def _view_sum(address, n):
    view = carray(pointer(address, np.float32), n)
    view[0] = 5.0
    return view.sum()


def test_pointer_views_the_array_at_an_address():
    a = np.arange(10, dtype=np.float32)
    assert _view_sum(a.ctypes.data, 10) == 5.0 + sum(range(1, 10))
    assert a[0] == 5.0


@kernel
def _napped_cycles(us):
    start = cycle_counter()
    nap(us)
    return cycle_counter() - start


def test_the_cycle_counter_advances_across_a_nap():
    assert _napped_cycles(1000) > 0
