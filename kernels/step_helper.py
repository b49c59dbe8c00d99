"""The process's helper thread for split train steps (`split_step`), and when a step splits.

Split steps are off unless switched on (`GRADLAB_SPLIT_STEPS=1` in the environment, or
`enable_split_steps()`): on the 2-core virtual machine they were measured on, they were
1.2-1.55x faster than the one-thread step in one half hour and 1.1-1.6x slower an hour later,
and up to 2.5x slower beside another busy process (README, Performance). Once on, a
step splits when the process allows two or more BLAS threads, the step is small enough that
its GEMMs run on one (gemm_threads.ONE_THREAD_FLOPS) and large enough that a second core pays
for the hand-offs (SPLIT_FLOPS), the network has no batch norm, and this machine lets the
process run on two cores. Studies hold the BLAS to one thread, so they never split. Whether a
step splits decides its bits; whether the helper took its second side does not.

The helper's state is ASLEEP whenever its thread is not in `serve` (before it first runs,
and while it blocks in Python): only the thread itself sets IDLE, just before serving, so a
caller that goes on without it (after WAKE_WAIT_S) computes both sides and never hands a step
to a thread that would not take it.

The helper spins in compiled code (`split_step.serve`, no GIL) while steps keep coming; after
SPIN_CYCLES processor cycles (about a millisecond) without one it naps in compiled code,
NAP_US at a time, until a step asks for it (steps meanwhile compute both sides themselves),
and after NAPS naps (about a second) it blocks on an Event in Python. Spinning rather than
blocking between steps is what makes the hand-off cheap: waking a blocked thread takes
0.1-0.3 ms on a virtual machine, and a thread woken in Python must then win the GIL from a
caller that holds it between steps; a spinning one sees a new step within a microsecond.

`GRADLAB_STEP_HELPER=0` in the environment, or `helper_disabled()`, keeps steps on the calling
thread (the same bits, since each side's code is the same). After os.fork the child starts
its own helper when it needs one.
"""
import atexit
import contextlib
import os
import threading
import time

import numpy as np

from .split_step import ASLEEP, IDLE, N_FLAGS, SERVED, STATE, STOP, WAKE, serve

SPLIT_FLOPS = 1e7  # GEMM FLOPs of a step from which it splits (with two threads allowed)
SPIN_CYCLES = 2_000_000
NAP_US, NAPS = 200, 5000
WAKE_WAIT_S, WAKE_POLL_S = 0.005, 2e-5
_SOLO = np.zeros(N_FLAGS, np.int64)
_SOLO[STATE] = ASLEEP  # no helper behind these flags: every step runs both sides itself
_helpers = []  # [the process's StepHelper] once started
_disabled = [os.environ.get("GRADLAB_STEP_HELPER", "1") == "0"]
_enabled = [os.environ.get("GRADLAB_SPLIT_STEPS", "0") == "1"]


def _cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class StepHelper:
    """The helper thread and its flags."""

    def __init__(self):
        self.flags = np.zeros(N_FLAGS, np.int64)
        self.flags[STATE] = ASLEEP  # no caller may claim it until its thread is about to serve
        self.closed = False
        self.blocked = True  # in Python, waiting for the Event (not spinning or napping)
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gradlab-step-helper",
                                        daemon=True)
        self._thread.start()

    def _run(self):
        while True:
            self._wake.wait()
            self._wake.clear()
            if self.closed:
                return
            self.flags[WAKE] = 0
            self.flags[STATE] = IDLE
            if self.closed:  # close() may have set STOP before the line above
                self.flags[STATE] = STOP
            self.blocked = False
            outcome = serve(self.flags, np.int64(SPIN_CYCLES), np.int64(NAP_US),
                            np.int64(NAPS))
            if outcome != ASLEEP or self.closed:
                return
            self.blocked = True

    def wake(self):
        """Wakes the thread if it blocks in Python (a napping one wakes from the step itself)
        and gives it the GIL until it is in compiled code (at most WAKE_WAIT_S)."""
        if not self.blocked or self.closed:
            return
        self._wake.set()
        deadline = time.perf_counter() + WAKE_WAIT_S
        while self.blocked and time.perf_counter() < deadline:
            time.sleep(WAKE_POLL_S)

    def close(self):
        """Ends the thread (at once when spinning or blocked; within a nap when napping)."""
        self.closed = True
        self.flags[STATE] = STOP
        self._wake.set()


def step_flags():
    """The flags a split step hands its second side through: the helper's (started, or woken
    from Python, when needed), or flags no thread serves when the helper is disabled or the
    process has one core."""
    if _disabled[0]:
        return _SOLO
    if not _helpers:
        if _cores() < 2:
            return _SOLO
        _helpers.append(StepHelper())
    helper = _helpers[0]
    if helper.blocked:
        helper.wake()
    return helper.flags


def enable_split_steps(on=True):
    """Switches split steps on (or off) for this process."""
    _enabled[0] = bool(on)


def splits(step_flops, blas_threads, batchnorm, batch):
    """True when a step of `step_flops` GEMM FLOPs splits: split steps are on, `blas_threads`,
    the process's BLAS thread count (gemm_threads.hold_one_thread's return: 0 when the step
    keeps it), is two or more, and the step is large enough, without batch norm, of two rows
    or more."""
    return _enabled[0] and blas_threads >= 2 and step_flops >= SPLIT_FLOPS and not batchnorm \
        and batch >= 2


@contextlib.contextmanager
def helper_disabled():
    """Within the block, split steps run both sides on the calling thread."""
    before = _disabled[0]
    _disabled[0] = True
    try:
        yield
    finally:
        _disabled[0] = before


def served_jobs():
    """How many calls the helper has taken a side of (0 before it starts)."""
    return int(_helpers[0].flags[SERVED]) if _helpers else 0


def _forget_after_fork():
    _helpers.clear()  # the thread did not survive the fork; a child starts its own


def _close():
    for helper in _helpers:
        helper.close()


os.register_at_fork(after_in_child=_forget_after_fork)
atexit.register(_close)  # no thread left spinning while the interpreter shuts down
