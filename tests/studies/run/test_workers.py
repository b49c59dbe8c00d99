"""Executor robustness: spawned workers die with their parent however it dies; Ctrl-C ends a
sweep in one line with its finished runs stored; --workers is capped; an unreachable scheduler
fails fast in one line; dataset paths are absolute and files hashed by streaming, so Dask
workers started elsewhere read the same file as a serial sweep."""
import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest

import studies
from studies.cli.main import main
from studies.run.runner import CHUNK, absolute_dataset, dataset_fingerprint, plan, run_study
from studies.run.workers import worker_count
from studies.spec import parse_spec

ROOT = Path(__file__).resolve().parents[3]
DEADLINE_S = 20  # generous: worker processes must be gone well within this


def _spec_file(tmp_path, steps, name="slow"):
    path = tmp_path / f"{name}.toml"
    path.write_text(
        f'name = "{name}"\nseeds = [0]\n[fixed]\ndataset = "spirals"\nn_samples = 200\n'
        f'width = 8\ndepth = 1\nmetrics_every = 4\nbatch_size = 16\neval_rows = 32\n'
        f'dtype = "float64"\n[axes]\nsteps = {steps}\n')
    return path


def _start(spec_file, out, workers=2):
    command = [sys.executable, "-m", "studies.cli", "run", str(spec_file), "--workers",
               str(workers), "--out", str(out), "--quiet"]
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def _workers_of(proc, count, deadline_s=120):
    """The pool's worker processes, once `count` of them are training (spent CPU time)."""
    parent = psutil.Process(proc.pid)
    stop = time.time() + deadline_s
    while time.time() < stop:
        workers = []
        for child in parent.children(recursive=True):
            try:
                if "spawn_main" in " ".join(child.cmdline()) and sum(child.cpu_times()[:2]) > 1:
                    workers.append(child)
            except psutil.Error:
                pass
        if len(workers) >= count:
            return workers
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    raise AssertionError(f"{count} training workers did not appear")


def _gone(process):
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_gone(processes):
    stop = time.time() + DEADLINE_S
    while time.time() < stop and not all(_gone(p) for p in processes):
        time.sleep(0.1)
    return [p.pid for p in processes if not _gone(p)]


def test_workers_die_with_a_sigkilled_parent(tmp_path):
    proc = _start(_spec_file(tmp_path, [3000000, 3000001]), tmp_path / "out")
    workers = []
    try:
        workers = _workers_of(proc, 2)
        proc.kill()  # SIGKILL: no handler, no cleanup in the parent
        proc.wait()
        assert _wait_gone(workers) == []
    finally:
        proc.kill()
        for worker in workers:  # orphans of a failing check are not left running
            if not _gone(worker):
                worker.kill()


def test_ctrl_c_ends_the_sweep_in_one_line_with_finished_runs_stored(tmp_path):
    out = tmp_path / "out"
    proc = _start(_spec_file(tmp_path, [3000000, 12, 13]), out)
    stop = time.time() + 120
    while time.time() < stop and len(list((out / "runs").glob("[!.]*"))) < 2:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    workers = _workers_of(proc, 1)
    os.killpg(proc.pid, signal.SIGINT)  # as Ctrl-C in a terminal: the whole process group
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert stderr.strip().splitlines() == ["gradlab run: interrupted"], stderr
    assert _wait_gone(workers) == []
    runs = studies.load(out).runs
    assert len(runs) == 2 and (runs["status"] == "completed").all()
    assert sorted(runs["steps"]) == [12, 13]


def test_a_pool_killed_while_a_result_is_half_sent_lets_its_process_exit(tmp_path):
    """Workers stream large results back; the pool is killed mid-transfer. The process must
    still exit (the pool's manager thread, joined at exit, must not wait for the rest of a
    message no one will send)."""
    script = tmp_path / "kill_mid_transfer.py"
    script.write_text(
        "from _dying_worker import large_result\n"
        "from studies.run.workers import kill_pool, new_pool\n"
        "if __name__ == '__main__':\n"
        "    pool = new_pool(2)\n"
        "    futures = [pool.submit(large_result, 80_000_000) for _ in range(12)]\n"
        "    futures[1].result()  # results are streaming back through the pipe now\n"
        "    kill_pool(pool)\n"
        "    print('killed', flush=True)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    done = subprocess.run([sys.executable, str(script)], cwd=ROOT, env=env, text=True,
                          capture_output=True, timeout=120)
    assert (done.returncode, done.stdout) == (0, "killed\n"), done.stderr


def test_worker_count_is_capped_with_a_note(tmp_path, capsys):
    assert worker_count(None, 3, cpus=8) == (3, None)
    assert worker_count(None, 50, cpus=8) == (8, None)
    count, note = worker_count(100, 1000, cpus=2)
    assert count == 8 and note == "gradlab run: --workers 100: using 8 (4 per core on 2 cores)"
    count, note = worker_count(5, 3, cpus=8)
    assert count == 3 and note == "gradlab run: --workers 5: using 3 (3 groups of runs pending)"
    spec = parse_spec({"name": "two", "seeds": [0],
                       "fixed": {"dataset": "spirals", "n_samples": 100, "width": 4, "depth": 1,
                                 "steps": 4, "metrics_every": 2, "batch_size": 16,
                                 "eval_rows": 16},
                       "axes": {"activation": ["tanh", "relu"]}}, "two.toml")
    summary = run_study(spec, "quick", out=tmp_path, workers=50, show_progress=False)
    assert summary.counts == {"completed": 2}
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["gradlab run: --workers 50: using 2 (2 groups of runs pending)"]


def test_an_unreachable_scheduler_fails_in_one_line(tmp_path, capsys):
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    spec_file = _spec_file(tmp_path, [4])
    code = main(["run", str(spec_file), "--scheduler", address, "--out", str(tmp_path / "o"),
                 "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith(f"gradlab run: error: --scheduler: cannot reach a Dask scheduler "
                              f"at '{address}' within 5 s")
    assert not any("Traceback" in line for line in err)


def test_dataset_files_are_hashed_by_streaming_and_fifos_refused(tmp_path, monkeypatch):
    big = tmp_path / "big.npz"
    content = np.random.default_rng(0).bytes(3 * CHUNK + 17)
    big.write_bytes(content)
    monkeypatch.setattr(Path, "read_bytes", lambda self: pytest.fail("read whole"))
    assert dataset_fingerprint({"dataset": str(big)}) == \
        hashlib.sha256(content).hexdigest()[:16]
    folder = tmp_path / "idx"
    folder.mkdir()
    (folder / "a").write_bytes(b"1")
    (folder / "b").write_bytes(b"2")
    assert dataset_fingerprint({"dataset": str(folder)}) == \
        hashlib.sha256(b"a1b2").hexdigest()[:16]
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match=r"pipe.csv is not a regular file \(a FIFO"):
        dataset_fingerprint({"dataset": str(fifo)})
    os.mkfifo(folder / "c")
    with pytest.raises(ValueError, match="not a regular file"):
        dataset_fingerprint({"dataset": str(folder)})


def _csv_spec(path):
    return parse_spec({"name": "table", "seeds": [0, 1],
                       "fixed": {"dataset": path, "width": 6, "depth": 1, "steps": 6,
                                 "metrics_every": 3, "batch_size": 16, "eval_rows": 32},
                       "axes": {"lr": [0.05, 0.1]}}, "table.toml")


def _comparable(results):
    runs = results.runs.drop(columns=["train_time", "compile_time", "wall_time", "group_size"])
    return (runs.sort_values("run_id").reset_index(drop=True),
            results.history.drop(columns=["train_time"]).sort_values(
                ["run_id", "step"]).reset_index(drop=True),
            results.layers.sort_values(["run_id", "step", "layer"]).reset_index(drop=True))


def test_a_relative_dataset_path_reads_the_same_file_on_dask_workers_elsewhere(tmp_path,
                                                                              monkeypatch):
    from distributed import LocalCluster
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 3))
    table = np.column_stack([x, (x[:, 0] + x[:, 1] > 0).astype(int)])
    (tmp_path / "data").mkdir()
    np.savetxt(tmp_path / "data" / "points.csv", table, delimiter=",", fmt="%.6f")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(tmp_path)
    spec = _csv_spec("data/points.csv")
    assert {t.config["dataset"] for t in plan(spec, "quick")} == \
        {str(tmp_path / "data" / "points.csv")}
    assert absolute_dataset({"dataset": "digits"}) == {"dataset": "digits"}
    serial = run_study(spec, "quick", out=tmp_path / "serial", workers=0, show_progress=False)
    monkeypatch.chdir(elsewhere)  # the workers start here, where data/points.csv is not
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        monkeypatch.chdir(tmp_path)
        on_dask = run_study(spec, "quick", out=tmp_path / "dask", show_progress=False,
                            scheduler=cluster.scheduler_address)
    assert serial.counts == on_dask.counts == {"completed": 4}
    for ours, theirs in zip(_comparable(studies.load(tmp_path / "serial")),
                            _comparable(studies.load(tmp_path / "dask"))):
        pd.testing.assert_frame_equal(ours, theirs, check_exact=True)
