"""The study runner end to end: serial, spawn processes and a Dask LocalCluster give identical
tables; a sweep killed with SIGKILL resumes with every run exactly once; a worker that dies is
isolated, retried once and stored as failed while the other runs complete."""
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import psutil

import studies
from studies.run.runner import plan, run_study
from studies.spec import parse_spec

ROOT = Path(__file__).resolve().parents[3]
TIMING = ["train_time", "compile_time", "wall_time", "attempts"]

TINY = {"name": "tiny", "seeds": [0, 1],
        "fixed": {"dataset": "spirals", "n_samples": 200, "width": 8, "depth": 2, "steps": 12,
                  "metrics_every": 4, "batch_size": 16, "eval_rows": 64, "dtype": "float64"},
        "axes": {"activation": ["tanh", "relu"], "optimizer": ["sgd", "adam"]}}


def tiny_spec(**fixed):
    raw = {**TINY, "fixed": {**TINY["fixed"], **fixed}}
    return parse_spec(raw, "tiny.toml")


def comparable(results):
    runs = results.runs.drop(columns=[c for c in TIMING if c in results.runs]).sort_values(
        "run_id").reset_index(drop=True)
    hist = results.history.drop(columns=["train_time"]).sort_values(
        ["run_id", "step"]).reset_index(drop=True)
    layers = results.layers.sort_values(["run_id", "step", "layer"]).reset_index(drop=True)
    return runs, hist, layers


def test_serial_processes_and_dask_give_identical_tables(tmp_path):
    from distributed import LocalCluster
    spec = tiny_spec()
    serial = run_study(spec, "quick", out=tmp_path / "serial", workers=0, show_progress=False)
    assert serial.counts == {"completed": 8}
    pool = run_study(spec, "quick", out=tmp_path / "pool", workers=2, show_progress=False)
    assert pool.counts == {"completed": 8}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        dask = run_study(spec, "quick", out=tmp_path / "dask", show_progress=False,
                         scheduler=cluster.scheduler_address)
    assert dask.counts == {"completed": 8}
    tables = [comparable(studies.load(tmp_path / name)) for name in ("serial", "pool", "dask")]
    for other in tables[1:]:
        for ours, theirs in zip(tables[0], other):
            pd.testing.assert_frame_equal(ours, theirs, check_exact=True)
    executors = [studies.load(tmp_path / name).manifest["executor"]
                 for name in ("serial", "pool", "dask")]
    assert executors == ["serial", "processes:2", f"dask:{cluster.scheduler_address}"]
    runs, hist, layers = tables[0]
    assert len(runs) == 8 and runs["run_id"].is_unique
    assert sorted(hist["step"].unique()) == [0, 4, 8, 12]
    assert set(layers["layer"]) == {1, 2, 3}
    assert {"w_grad_norm", "delta_norm", "a_p98", "dead_fraction"} <= set(layers.columns)


def test_the_manifest_records_the_workers_actually_started(tmp_path, capsys):
    spec = parse_spec({**TINY, "axes": {}}, "tiny.toml")  # two runs: two groups at most
    summary = run_study(spec, "quick", out=tmp_path, workers=5, show_progress=False)
    assert summary.counts == {"completed": 2}
    assert "--workers 5: using 2 (2 groups of runs pending)" in capsys.readouterr().err
    assert studies.load(tmp_path).manifest["executor"] == "processes:2"


def test_rerun_skips_finished_runs(tmp_path):
    spec = tiny_spec()
    first = run_study(spec, "quick", out=tmp_path, workers=0, show_progress=False)
    again = run_study(spec, "quick", out=tmp_path, workers=0, show_progress=False)
    assert first.skipped == 0 and again.skipped == 8 and again.counts == {}
    assert len(studies.load(tmp_path).runs) == 8


def test_sigkill_mid_sweep_then_resume_keeps_every_run_once(tmp_path):
    spec_file = tmp_path / "killme.toml"
    spec_file.write_text(
        'name = "killme"\nseeds = [0, 1, 2, 3]\n[fixed]\ndataset = "spirals"\nn_samples = 300\n'
        'width = 32\ndepth = 3\nsteps = 400\nmetrics_every = 100\nbatch_size = 32\n'
        'dtype = "float64"\n[axes]\nactivation = ["tanh", "relu", "elu"]\n')
    out = tmp_path / "out"
    command = [sys.executable, "-m", "studies.cli", "run", str(spec_file), "--workers", "0",
               "--out", str(out)]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    runs_dir = out / "runs"
    while time.time() < deadline:  # one part per group of four (one activation)
        done = [p for p in runs_dir.glob("part-*")] if runs_dir.exists() else []
        if done:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    parts = [p for p in runs_dir.glob("*") if not p.name.startswith(".tmp")]
    killed_with = sum(len(json.loads((p / "complete.json").read_text())["run_ids"])
                      for p in parts)
    assert 1 <= len(parts) < 3 and killed_with == 4 * len(parts), \
        "the sweep should be killed part-way"
    partial = studies.load(out)  # loading a killed sweep works
    assert partial.runs["run_id"].is_unique
    result = subprocess.run(command + ["--quiet"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert f"{killed_with} already done" in result.stdout
    final = studies.load(out)
    assert len(final.runs) == 12 and final.runs["run_id"].is_unique
    assert set(final.runs["run_id"]) == {t.run_id for t in plan(
        __import__("studies.spec", fromlist=["load_spec"]).load_spec(spec_file), "quick")}
    assert (final.history.groupby("run_id")["step"].max() == 400).all()


def _kill_greedy_workers(stop, cpu_limit):
    """SIGKILLs any spawned worker that has used more than cpu_limit seconds of CPU."""
    me = psutil.Process()
    while not stop.is_set():
        for child in me.children(recursive=True):
            try:
                if "multiprocessing" in " ".join(child.cmdline()):
                    times = child.cpu_times()
                    if times.user + times.system > cpu_limit:
                        child.send_signal(signal.SIGKILL)
            except psutil.Error:
                pass
        time.sleep(0.05)


def test_dying_worker_is_isolated_retried_once_then_failed(tmp_path):
    warm = parse_spec({**TINY, "seeds": [0], "axes": {"activation": ["tanh"]}}, "warm.toml")
    run_study(warm, "quick", out=tmp_path / "warm", workers=0, show_progress=False)  # compile
    # Two short runs and one that would take minutes; a watchdog SIGKILLs any worker past
    # 6 s of CPU time, as an out-of-memory killer would: only the long run dies, every time.
    mixed = parse_spec({**TINY, "name": "mixed", "seeds": [0],
                        "fixed": {k: v for k, v in TINY["fixed"].items() if k != "steps"},
                        "axes": {"activation": ["tanh"], "steps": [12, 13, 3000000]}},
                       "mixed.toml")
    stop = threading.Event()
    killer = threading.Thread(target=_kill_greedy_workers, args=(stop, 6.0), daemon=True)
    killer.start()
    try:
        summary = run_study(mixed, "quick", out=tmp_path / "mixed", workers=2,
                            show_progress=False)
    finally:
        stop.set()
        killer.join()
    runs = studies.load(tmp_path / "mixed").runs
    long_runs = runs[runs["steps"] == 3000000]
    short_runs = runs[runs["steps"] < 100]
    assert (short_runs["status"] == "completed").all() and len(short_runs) == 2
    assert (long_runs["status"] == "failed").all() and len(long_runs) == 1
    assert long_runs["error"].str.contains("crashed again").all()
    assert summary.counts == {"completed": 2, "failed": 1}


def test_a_raising_run_is_stored_as_failed_and_the_sweep_goes_on(tmp_path):
    """A dataset option the builder does not know passes the spec (options belong to the
    builder) and raises when the run loads its data."""
    spec = parse_spec({**TINY, "seeds": [0], "fixed": {**TINY["fixed"],
                                                       "dataset_options": {"noize": 0.1}},
                       "axes": {"activation": ["tanh"]}}, "bad_option.toml")
    summary = run_study(spec, "quick", out=tmp_path, workers=0, show_progress=False)
    runs = studies.load(tmp_path).runs
    assert summary.counts == {"failed": 1}
    assert runs["error"].iloc[0].startswith("DatasetError: spirals: unknown option(s) noize")
    assert runs["attempts"].iloc[0] == 2


def test_diverging_run_is_data(tmp_path):
    spec = parse_spec({**TINY, "seeds": [0], "fixed": {**TINY["fixed"], "lr": 50.0,
                                                       "optimizer": "sgd", "steps": 40},
                       "axes": {"activation": ["relu"]}}, "div.toml")
    run_study(spec, "quick", out=tmp_path, workers=0, show_progress=False)
    results = studies.load(tmp_path)
    run = results.runs.iloc[0]
    assert run["status"] == "diverged" and "diverged@" in run["labels"]
    assert results.history["diverged"].iloc[-1]
    assert run["steps_done"] < 40
