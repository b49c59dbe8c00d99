"""Two real `gradlab run` processes on one store, and labels that follow a spec's thresholds
without retraining."""
import os
import re
import subprocess
import sys
from pathlib import Path

import studies
from studies.store import Store

ROOT = Path(__file__).resolve().parents[3]
SPEC = ('name = "pair"\nseeds = [0, 1]\n[fixed]\ndataset = "spirals"\nn_samples = 200\n'
        'width = 16\ndepth = 2\nsteps = 300\nmetrics_every = 100\nbatch_size = 16\n'
        'dtype = "float64"\n[axes]\nactivation = ["tanh", "relu"]\n')
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def command(*args):
    return [sys.executable, "-m", "studies.cli", *args]


def gradlab(*args):
    return subprocess.run(command(*args), cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env=ENV)


def counts(stdout):
    """(total, already done, fresh) of a run's summary line."""
    total, skipped = map(int, re.search(r"(\d+) runs, (\d+) already done", stdout).groups())
    return total, skipped, total - skipped


def stored_files(out):
    return {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("*") if p.is_file()}


def test_two_sweeps_on_one_store_run_each_run_once(tmp_path):
    spec = tmp_path / "pair.toml"
    spec.write_text(SPEC)
    out = tmp_path / "out"
    args = ["run", str(spec), "--out", str(out), "--workers", "0", "--quiet", "--wait", "600"]
    procs = [subprocess.Popen(command(*args), cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=ENV) for _ in range(2)]
    results = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in results]
    fresh = sorted(counts(stdout)[2] for stdout, _ in results)
    assert fresh == [0, 4]  # one sweep ran all four; the other waited and found them done
    assert len(studies.load(out).runs) == 4 and studies.load(out).runs["run_id"].is_unique
    assert len(list((out / "runs").iterdir())) == 2  # one part per activation's group
    assert not any(p.name.startswith(".tmp") for p in (out / "runs").iterdir())


def test_a_second_sweep_exits_2_naming_the_holder(tmp_path):
    spec = tmp_path / "pair.toml"
    spec.write_text(SPEC.replace("steps = 300", "steps = 4000000"))  # minutes: killed below
    out = tmp_path / "out"
    first = subprocess.Popen(command("run", str(spec), "--out", str(out), "--workers", "0",
                                     "--quiet"), cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        import time
        deadline = time.time() + 300
        while Store(out).holder().get("pid") != first.pid:
            assert first.poll() is None and time.time() < deadline, first.communicate()
            time.sleep(0.1)
        second = gradlab("run", str(spec), "--out", str(out), "--workers", "0", "--quiet",
                         "--wait", "1")
        lines = [line for line in second.stderr.splitlines() if line.strip()]
        assert second.returncode == 2 and len(lines) == 1, second.stderr
        assert f"another sweep is writing this store (pid {first.pid} on " in lines[0]
        assert "since 20" in lines[0] and "(waited 1 s)" in lines[0]
        assert first.poll() is None  # the running sweep was left alone
    finally:
        first.kill()
        first.communicate()


def test_labels_follow_the_spec_thresholds_without_retraining(tmp_path):
    spec = tmp_path / "pair.toml"
    spec.write_text(SPEC.replace("seeds = [0, 1]", "seeds = [0]").replace("steps = 300",
                                                                           "steps = 20")
                    .replace("metrics_every = 100", "metrics_every = 10"))
    out = tmp_path / "out"
    first = gradlab("run", str(spec), "--out", str(out), "--workers", "0", "--quiet")
    assert first.returncode == 0 and "exploding" not in first.stdout, first.stderr
    before = stored_files(out)
    # exploding_norm only labels (the divergence factor also stops training)
    spec.write_text(spec.read_text() + "[labels]\nexploding_norm = 1e-9\n")
    shown = gradlab("show", str(out))
    assert shown.returncode == 0, shown.stderr
    assert "labels: exploding 2" in shown.stdout and shown.stdout.count("exploding@0") == 2
    again = gradlab("run", str(spec), "--out", str(out), "--workers", "0", "--quiet")
    assert again.returncode == 0 and counts(again.stdout) == (2, 2, 0)
    assert "labels: exploding 2" in again.stdout
    assert stored_files(out) == before  # nothing was recomputed or rewritten
    from studies.plots import load_current
    results = load_current(out)
    assert (results.runs["first_exploding"] == 0).all()
    assert results.manifest["spec"]["labels"] == {"exploding_norm": 1e-9}
    other = tmp_path / "other.toml"  # show --spec: another spec's thresholds
    other.write_text(spec.read_text().replace("exploding_norm = 1e-9", "exploding_norm = 1e9"))
    shown = gradlab("show", str(out), "--spec", str(other))
    assert shown.returncode == 0 and "exploding" not in shown.stdout, shown.stdout
