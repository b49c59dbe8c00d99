"""The benchmark: every benchmarked kernel (and its NumPy, PyTorch and JAX peers) agrees with
its float64 NumPy reference in both dtypes; the multi-run sweep validates; the harness, fit and
labels behave; `gradlab bench --smoke` writes its table, files and figures. No timing
assertions: the machine decides the numbers."""
import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from studies.bench import runner as bench
from studies.bench.breakdown import PARTS, linear_fit, step_breakdown
from studies.bench.cases import HIDDEN_ACTIVATIONS, OPTIMIZERS, Impl
from studies.bench.peers import available_peers
from studies.bench.tables import net_label
from studies.bench.timing import time_group, validate
from studies.cli.main import main

# every kernel kind, every activation and optimizer, shapes small enough for seconds
PLAN = replace(bench.PLANS["smoke"], activations=HIDDEN_ACTIVATIONS, optimizers=list(OPTIMIZERS),
               dense=[(5, 7, 3), (16, 33, 17)], activation_sizes=[257], ce=[(6, 5)],
               bn=[(6, 9)], param_sizes=[301], nets=[([5, 9, 7, 3], 6), ([4, 6, 2], 5)])


@pytest.fixture(scope="module")
def peers():
    return available_peers(1)[0]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_every_benchmarked_kernel_matches_its_reference(dtype, peers):
    cases = bench.build_cases(PLAN, dtype, np.random.default_rng(1))
    groups = {c.group for c in cases}
    assert groups == {"dense_forward", "dense_backward", "activation_forward",
                      "activation_backward", "cross_entropy", "batchnorm", "optimizer",
                      "clipping", "train_step"}
    failures = []
    for case in cases:
        bench.add_peers(case, peers)
        assert {"gradlab", "numpy"} <= set(case.impls)
        for impl, report in validate(case).items():
            if report:
                failures.append(f"{impl}: {report}")
    assert not failures, "\n".join(failures)


def test_jax_peer_runs_float32_cases_without_64_bit_mode(peers):
    """64-bit mode is process-wide: the JAX peer turns it on for float64 cases only, so a
    float32 case built after a float64 one traces and runs in 32 bits."""
    assert "jax" in peers, "JAX is part of the test extra"
    jax = peers["jax"].jax
    modes = {}
    for dtype in ("float64", "float32"):
        case = bench.build_cases(replace(PLAN, nets=[([5, 9, 3], 6)]), dtype,
                                 np.random.default_rng(0))[-1]
        bench.add_peers(case, {"jax": peers["jax"]})
        modes[dtype] = bool(jax.config.jax_enable_x64)
        case.impls["jax"].run()
        assert case.impls["jax"].result()["grads"].dtype == np.dtype(dtype)
    assert modes == {"float64": True, "float32": False}


def test_a_timed_jax_train_step_call_is_a_loop_of_adam_steps(peers):
    """JAX dispatches asynchronously, so its train step is timed as a training loop: one call
    runs JAX_LOOP_STEPS steps back to back (per_call divides the time), the same Adam steps as
    the NumPy train step taken that many times."""
    from studies.bench.peers import JAX_LOOP_STEPS, numpy_train_step
    case = bench.build_cases(replace(PLAN, nets=[([5, 9, 3], 6)]), "float64",
                             np.random.default_rng(0))[-1]
    bench.add_peers(case, {"jax": peers["jax"]})
    jax_step, numpy_step = case.impls["jax"], numpy_train_step(case)
    assert jax_step.per_call == JAX_LOOP_STEPS > 1
    jax_step.setup()
    jax_step.run()
    numpy_step.setup()
    for _ in range(JAX_LOOP_STEPS):
        numpy_step.run()
    np.testing.assert_allclose(jax_step.result()["params"], numpy_step.result()["params"],
                               rtol=1e-9, atol=1e-12)
    numpy_step.run()  # one step more is told apart
    assert not np.allclose(jax_step.result()["params"], numpy_step.result()["params"],
                           rtol=1e-9, atol=1e-12)


def test_validation_reports_a_wrong_kernel():
    case = bench.build_cases(PLAN, "float64", np.random.default_rng(0))[0]
    z = np.zeros((5, 3))
    case.impls["broken"] = Impl(lambda: None, lambda: {"z": z})
    checks = validate(case)
    assert checks["gradlab"] is None and "outside atol" in checks["broken"]


def test_sweep_runs_validate_against_one_step_of_the_reference(peers):
    rows = bench.run_sweep(replace(PLAN, min_sample=1e-4, repeats=1), peers)
    by_impl = {r["impl"]: r for r in rows}
    assert {"gradlab_threads1", "gradlab_threads2"} <= set(by_impl)
    assert all(r["valid"] for r in rows), [r["error"] for r in rows if not r["valid"]]
    assert all(r["net_steps_per_s"] > 0 for r in rows)


def test_time_group_samples_every_implementation():
    calls = {"a": 0, "b": 0}

    def bump(key):
        calls[key] += 1
    impls = {k: Impl(lambda k=k: bump(k), lambda: {}) for k in calls}
    impls["b"].per_call = 4
    out = time_group(impls, 1e-4, 3)
    assert set(out) == {"a", "b"} and all(calls.values())
    for samples, first in out.values():
        assert len(samples) >= 3 and (samples > 0).all() and first >= 0


def test_linear_fit_and_breakdown_parts():
    fit = linear_fit([1, 2, 3, 4], [3.0, 5.0, 7.0, 9.0])
    assert fit["slope"] == pytest.approx(2) and fit["intercept"] == pytest.approx(1)
    assert fit["r2"] == pytest.approx(1)
    parts = step_breakdown([6, 8, 3], 4, "float32", min_time=1e-4, repeats=1)
    assert list(parts) == list(PARTS) and all(v > 0 for v in parts.values())


def test_net_label_shortens_repeated_widths():
    assert net_label([40] + [64] * 20 + [10], 64) == "[40, 64x20, 10] B=64"
    assert net_label([40, 64, 64, 10]) == "[40, 64, 64, 10]"


def check_curvature_files(out, printed):
    """What `gradlab bench --smoke` writes for the curvature rows (the real bench smoke run
    below): every implementation validated, in curvature.csv,
    curvature_cost.csv and curvature.md, at the smoke net."""
    rows = pd.read_csv(out / "curvature.csv")
    assert set(rows["impl"]) == {"gradlab", "torch_double_backward", "torch_func_jvp_grad",
                                 "torch_func_vmap_grad"}
    assert rows["valid"].all() and set(rows["dtype"]) == {"float32"}
    assert set(rows["shape"]) == {"[8, 16, 4] B=8"}
    cost = pd.read_csv(out / "curvature_cost.csv")
    assert (cost["hvp_in_grads"] > 0).all() and (cost["per_example_in_grads"] > 0).all()
    text = (out / "curvature.md").read_text()
    assert "| hvp | [8, 16, 4] B=8 | float32 |" in text and "torch.func vmap(grad)" in text
    assert "curvature (Hessian-vector products" in printed


def test_bench_smoke_writes_table_files_and_figures(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["bench", "--smoke", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "train_step" in printed and "targets (value from medians" in printed
    frame = pd.read_parquet(out / "bench.parquet")
    csv = pd.read_csv(out / "bench.csv")
    assert list(csv.columns) == list(frame.columns) and len(csv) == len(frame) > 0
    numbers = frame.select_dtypes("number").columns
    assert len(numbers) and "median_s" in numbers
    pd.testing.assert_frame_equal(csv[numbers], frame[numbers], check_dtype=False)
    for column in frame.columns.difference(numbers):
        assert (csv[column].astype(object).fillna("").astype(str)
                == frame[column].astype(str)).all(), column
    ours = frame[frame.impl == "gradlab"]
    assert ours.valid.all() and (ours.median_s > 0).all()
    assert {"numpy", "gradlab", "gradlab_kernel"} <= set(frame.impl)
    steps = pd.read_csv(out / "train_steps.csv")
    assert len(steps) == 1 and steps.ours_us.iloc[0] > 0 and steps.kernel_us.iloc[0] > 0
    assert "| net | dtype | ours (public call) us" in (out / "train_steps.md").read_text()
    for name in ("sweep", "breakdown", "backward", "targets"):
        assert len(pd.read_csv(out / f"{name}.csv"))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["scale"] == "smoke" and summary["peak_gflops"]["float32"] > 0
    assert 0 <= summary["backward_fit"]["r2"] <= 1
    for stem in ("time_vs_size", "step_breakdown", "backward_vs_params", "sweep_throughput"):
        assert (out / "figures" / f"{stem}.png").stat().st_size > 0
        assert (out / "figures" / f"{stem}.pdf").exists()
    check_curvature_files(out, printed)


def test_bench_without_curvature_rows_or_peers_writes_only_the_step_tables(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["bench", "--smoke", "--peers", "none", "--no-plots", "--no-curvature",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    frame = pd.read_csv(out / "bench.csv")
    assert "gradlab" in set(frame.impl) and not {"torch", "jax"} & set(frame.impl)
    assert (out / "train_steps.csv").exists() and not (out / "figures").exists()
    for name in ("curvature.csv", "curvature_cost.csv", "curvature.md"):
        assert not (out / name).exists()
    assert "curvature (Hessian-vector products" not in printed


def test_bench_rejects_unknown_peers(capsys):
    assert main(["bench", "--smoke", "--peers", "numpy,tensorflow"]) == 2
    assert "unknown peer" in capsys.readouterr().err


def test_bench_on_cuda_without_a_gpu_is_a_one_line_error():
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[3]
    env = {k: v for k, v in __import__("os").environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    result = subprocess.run([sys.executable, "-m", "studies.cli", "bench", "--device", "cuda"],
                            cwd=root, env={**env, "CUDA_VISIBLE_DEVICES": ""},
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "CUDA is not available" in lines[0]
