"""Validate-then-time: each implementation is checked against the float64 reference, then timed
in interleaved blocks so that peers share the machine's state fairly."""
import time

import numpy as np

from kernels.tolerance import mismatch_report, tolerance


# ---------------------------------------------------------------- validation
def validate(case):
    """{impl: None or the mismatch report} of one run of each implementation from its setup
    state, against the float64 reference with the dtype's tolerance."""
    atol, rtol = tolerance(case.dtype)
    out = {}
    for name, impl in case.impls.items():
        for reset in (case.setup, impl.setup):
            if reset is not None:
                reset()
        (impl.validate_run or impl.run)()
        got = impl.result()
        reports = [mismatch_report(got[k], ref, atol, rtol, f"{case.group}/{case.name}/{k}")
                   for k, ref in case.reference.items()]
        out[name] = "\n".join(r for r in reports if r) or None
    return out


# ---------------------------------------------------------------- timing
SETTLE = 0.15  # seconds of sleep before each timed block: longer than the pools' spin-waits
def _calibrate(fn, min_sample):
    """(calls per sample, seconds of the first call)."""
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    calls = 1
    while True:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed >= min_sample or calls >= 1 << 20:
            return calls, first
        calls = max(calls * 2, int(calls * min_sample / max(elapsed, 1e-9)) + 1)


def time_group(impls, min_sample, repeats, rounds=2, single_call=20e-6, settle=SETTLE):
    """{name: (samples of seconds per call, first-call seconds)}.

    An implementation runs in blocks of `repeats` samples of `min_sample` seconds, in `rounds`
    rounds over the implementations (A A B B A A B B). Before each block the process sleeps
    `settle` seconds, so that the worker threads the previous implementation left spinning
    (OpenBLAS spins up to ~2^28 cycles, about 0.1 s, before it sleeps; OpenMP and Eigen pools
    spin too) are asleep before the next one is timed; then a warm-up sample. Calls of at least
    `single_call` seconds are timed one by one (each call a sample), so that the median drops
    the stalls a loaded machine inflicts on a few calls (PyTorch's autograd hand-offs wait for
    a time slice); shorter calls are timed in chunks."""
    plan = {name: _calibrate(impl.run, min_sample) for name, impl in impls.items()}
    samples = {name: [] for name in impls}
    per_round = [repeats // rounds + (i < repeats % rounds) for i in range(rounds)]
    for count in per_round:
        for name, impl in impls.items():
            calls, _ = plan[name]
            if settle:
                time.sleep(settle)
            one_by_one = min_sample / calls >= single_call
            for sample in range(count + 1):
                chunk = []
                start = time.perf_counter()
                for _ in range(calls):
                    impl.run()
                    if one_by_one:
                        now = time.perf_counter()
                        chunk.append(now - start)
                        start = now
                if not one_by_one:
                    chunk.append((time.perf_counter() - start) / calls)
                if sample:  # the first is the warm-up
                    samples[name] += [t / impl.per_call for t in chunk]
    return {name: (np.array(samples[name]), plan[name][1]) for name in impls}


def timed_rows(case, min_sample, repeats):
    """One row per implementation of a case: validation, then median, quartiles, minimum and
    first-call seconds, and GFLOP/s; implementations that failed validation are not timed."""
    checks = validate(case)
    timings = time_group({n: i for n, i in case.impls.items() if checks[n] is None}, min_sample,
                         repeats)
    rows = []
    for name in case.impls:
        row = {"group": case.group, "name": case.name, "shape": case.shape, "size": case.size,
               "dtype": case.dtype, "impl": name, "valid": checks[name] is None,
               "error": checks[name] or ""}
        if name in timings:
            samples, first = timings[name]
            median = float(np.median(samples))
            row.update(median_s=median, p25_s=float(np.percentile(samples, 25)),
                       p75_s=float(np.percentile(samples, 75)), min_s=float(samples.min()),
                       first_call_s=first, gflops=case.flops / median / 1e9)
        rows.append(row)
    return rows
