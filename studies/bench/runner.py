"""`gradlab bench`: validate every kernel against its NumPy reference, then time it and its peers
(NumPy, PyTorch eager, JAX jit) on a matrix of shapes in float32 and float64.

Timing: each implementation's first call (compilation or cache load) is timed apart; then the
number of calls per sample is calibrated to `min_sample` seconds and `repeats` samples are taken
in two rounds over the implementations of a case, each block after a warm-up sample, so slow
drifts of load on a shared machine hit every peer alike. Reported: median seconds per call (per step for multi-step calls), the
25th/75th percentiles, ratios peer median / our median (> 1: ours is faster), GFLOP/s and the
fraction of the matrix-multiply peak (NumPy n x n matmul, 2 n^3 FLOPs, the best of its rate
at the start and at the end of this run).
Extras: the 64-network sweep, the train-step breakdown, the backward-vs-parameters fit, and
cold/warm start of a fresh process. Files: bench.csv, bench.parquet, sweep.csv, breakdown.csv,
backward.csv, targets.csv, summary.json and figures/ under the output folder.
"""
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from studies.bench import cases as C
from studies.bench.breakdown import backward_scaling, step_breakdown
from studies.bench.peers import available_peers, matmul_rate, numpy_train_step
from studies.bench.sweep import run_sweep
from studies.bench.timing import timed_rows
from studies.bench.cases import ALL_NETS



@dataclass
class Plan:
    """What one scale of the benchmark measures."""
    dtypes: tuple
    dense: list
    activation_sizes: list
    activations: list
    ce: list
    bn: list
    optimizers: list
    param_sizes: list
    nets: list
    sweep: tuple          # (runs, sizes, batch)
    backward_widths: list
    backward_batch: int
    breakdown_nets: list
    matmul_n: int
    min_sample: float
    repeats: int
    startup: str          # "none", "warm" or "cold" (cold also measures the first compile)


PLANS = {
    "smoke": Plan(("float32",), [(8, 16, 16)], [256], ["tanh", "relu"], [(8, 4)], [(8, 16)],
                  ["adam"], [1000], [([8, 16, 4], 8)], (4, [8, 16, 4], 8), [8, 16, 32], 16,
                  [([8, 16, 4], 8)], 128, 0.001, 2, "none"),
    "quick": Plan(("float32", "float64"), [(32, 64, 64), (128, 256, 256), (256, 1024, 1024)],
                  [65536], C.HIDDEN_ACTIVATIONS, [(32, 10), (512, 100)], [(256, 1024)],
                  list(C.OPTIMIZERS), [1_000_000], ALL_NETS, (64, [40, 64, 64, 10], 32),
                  [32, 64, 128, 256, 512, 1024], 128, ALL_NETS, 2048, 0.005, 5, "warm"),
    "full": Plan(("float32", "float64"),
                 [(32, 64, 64), (64, 128, 128), (128, 256, 256), (256, 512, 512),
                  (256, 1024, 1024), (512, 2048, 2048)],
                 [1024, 16384, 262144, 1_048_576], C.HIDDEN_ACTIVATIONS,
                 [(32, 10), (256, 10), (1024, 1000)], [(64, 256), (256, 1024), (1024, 1024)],
                 list(C.OPTIMIZERS), [10_000, 100_000, 1_000_000, 4_000_000], ALL_NETS,
                 (64, [40, 64, 64, 10], 32), [32, 64, 96, 128, 192, 256, 384, 512, 768, 1024],
                 128, ALL_NETS, 4096, 0.02, 11, "cold"),
}


def build_cases(plan, dtype, rng):
    """Every Case of the plan in one dtype (our kernel and NumPy in each)."""
    cases = [C.dense_forward_case(*s, dtype, rng) for s in plan.dense]
    cases += [C.dense_backward_case(*s, dtype, rng) for s in plan.dense]
    for backward in (False, True):
        cases += [C.activation_case(a, n, dtype, rng, backward) for a in plan.activations
                  for n in plan.activation_sizes]
    cases += [C.cross_entropy_case(*s, dtype, rng) for s in plan.ce]
    cases += [C.batchnorm_case(*s, dtype, rng) for s in plan.bn]
    cases += [C.optimizer_case(o, n, dtype, rng) for o in plan.optimizers
              for n in plan.param_sizes]
    cases += [C.clip_case(n, dtype, rng) for n in plan.param_sizes]
    for sizes, batch in plan.nets:
        case = C.train_step_case(sizes, batch, dtype, rng)
        case.impls["numpy"] = numpy_train_step(case)
        cases.append(case)
    return cases


def add_peers(case, peers):
    for name, peer in peers.items():
        impl = peer.impl(case)
        if impl is not None:
            case.impls[name] = impl


def measure_case(case, plan, peak):
    """One row per implementation: statistics, validation, GFLOP/s, fraction of peak."""
    rows = timed_rows(case, plan.min_sample, plan.repeats)
    for row in rows:
        if "median_s" in row:
            median, impl = row["median_s"], case.impls[row["impl"]]
            row.update(compile_s=max(0.0, row["first_call_s"] - median * impl.per_call),
                       peak_fraction=row["gflops"] / peak[case.dtype],
                       gelem_per_s=case.elements / median / 1e9)
    return rows


def add_ratios(rows):
    """ratio_<impl> = median(impl) / median(gradlab) on our row of each case, and
    min_ratio_<impl> from the fastest samples (the least disturbed by other load)."""
    by_case = {}
    for row in rows:
        by_case.setdefault((row["group"], row["name"], row["shape"], row["dtype"]), []).append(row)
    for group in by_case.values():
        ours = next((r for r in group if r["impl"] == "gradlab" and "median_s" in r), None)
        if ours is None:
            continue
        for row in group:
            if "median_s" in row:
                ours[f"ratio_{row['impl']}"] = row["median_s"] / ours["median_s"]
                ours[f"min_ratio_{row['impl']}"] = row["min_s"] / ours["min_s"]
    return rows


# ---------------------------------------------------------------- extras
def startup_times(mode):
    """Seconds from process start to the end of the first train step with a warm kernel cache
    (import included), and with mode 'cold' the first-ever compile (an empty cache)."""
    if mode == "none":
        return {}
    code = ("import time; t0 = time.perf_counter()\n"
            "import numpy as np\nfrom kernels import MLP\nfrom kernels.optimizers import Adam\n"
            "t1 = time.perf_counter()\n"
            "net = MLP([40, 64, 64, 10], activation='tanh', dtype='float32')\n"
            "net.train_step(np.zeros((32, 40), np.float32), np.zeros(32, np.int64), Adam())\n"
            "print(t1 - t0, time.perf_counter() - t0)\n")
    root = str(Path(__file__).resolve().parents[1])

    def launch(env):
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, check=True,
                             capture_output=True, text=True).stdout.split()
        return float(out[0]), float(out[1]), time.perf_counter() - start
    result = {}
    env = dict(os.environ)
    launch(env)  # fills the cache if it is empty
    imp, first_step, wall = launch(env)
    result.update(warm_import_s=imp, warm_first_step_s=first_step, warm_process_wall_s=wall)
    if mode == "cold":
        with tempfile.TemporaryDirectory() as cache:
            imp, first_step, wall = launch({**env, "NUMBA_CACHE_DIR": cache})
        result.update(cold_first_step_s=first_step, cold_compile_s=first_step - imp)
    return result


# ---------------------------------------------------------------- the run
def run_bench(scale="quick", dtypes=None, out="results/bench", peers=("torch", "jax"),
              threads=None, plots=True, log=print):
    """Runs the plan; writes the files under `out`; returns the summary dict."""
    from threadpoolctl import threadpool_limits
    import scipy.linalg.cython_blas  # noqa: F401  (load numba's BLAS so the limit reaches it)
    plan = PLANS[scale]
    dtypes = tuple(dtypes or plan.dtypes)
    threads = threads or min(2, os.cpu_count() or 1)
    threadpool_limits(threads)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    # before the peers start their thread pools; the best of n/2 and n (large, cache-bound)
    peak = {dt: max(matmul_rate(n, dt) for n in (plan.matmul_n // 2, plan.matmul_n))
            for dt in dtypes}
    log("matmul peak (NumPy n x n, n = %d and %d): %s" % (
        plan.matmul_n // 2, plan.matmul_n, ", ".join(f"{dt} {g:.1f} GFLOP/s"
                                                      for dt, g in peak.items())))
    peer_objects, missing = available_peers(threads, tuple(p for p in peers if p != "numpy"))
    for name, why in missing.items():
        log(f"peer {name} skipped: {why}")
    rows = []
    for dtype in dtypes:
        for case in build_cases(plan, dtype, np.random.default_rng(0)):
            if "numpy" not in peers:
                case.impls.pop("numpy", None)
            add_peers(case, peer_objects)
            rows += measure_case(case, plan, peak)
        log(f"{dtype}: {len(rows)} measurements, {time.perf_counter() - started:.0f} s")
    add_ratios(rows)
    sweep = run_sweep(plan, peer_objects) if "float32" in dtypes else []
    breakdown = [{"sizes": str(s), "batch": b, "part": part, "seconds": sec}
                 for s, b in plan.breakdown_nets
                 for part, sec in step_breakdown(s, b, "float32", plan.min_sample,
                                                 plan.repeats).items()]
    backward, fit = backward_scaling(plan.backward_widths, plan.backward_batch, "float32",
                                     min_time=plan.min_sample, repeats=plan.repeats)
    startup = startup_times(plan.startup)
    for dt in dtypes:  # again at the end: the best of both is the machine's peak
        peak[dt] = max(peak[dt], matmul_rate(plan.matmul_n, dt))
    for row in rows:
        if "gflops" in row:
            row["peak_fraction"] = row["gflops"] / peak[row["dtype"]]
    from studies.bench.tables import evaluate_targets, print_report, write_files
    targets = evaluate_targets(rows, sweep, fit, startup, peak)
    summary = {"scale": scale, "threads": threads, "peak_gflops": peak, "backward_fit": fit,
               "startup": startup, "missing_peers": missing, "seconds": 0.0,
               "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                           "python": platform.python_version(), "load": _load()}}
    summary["seconds"] = time.perf_counter() - started
    write_files(out, rows, sweep, breakdown, backward, targets, summary)
    if plots:
        from studies.bench.plots import draw_all
        draw_all(out, rows, sweep, breakdown, backward, fit)
    print_report(rows, sweep, breakdown, fit, startup, targets, peak, log)
    log(f"wrote {out} in {summary['seconds']:.0f} s")
    return summary


def _load():
    try:
        return os.getloadavg()
    except OSError:
        return None
