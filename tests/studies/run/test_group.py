"""Grouped runs (studies.run.group): a sweep trained in groups of one MultiMLP stores exactly the
numbers of the same sweep trained run by run, through every executor; group_key joins what may
share a compiled call and separates what may not; a group that fails or whose worker dies falls
back to single runs; a finished sweep is skipped whichever way it ran."""
import json
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool

import numpy as np
import pandas as pd
import pytest

import studies
from studies.run import runner
from studies.cli.main import main
from studies.config import PER_RUN_KEYS as PER_RUN, resolve
from studies.run.execute import train_run
from studies.run.group import execute_group, group_key, plan_groups, train_group
from studies.run.runner import Task, run_study
from studies.spec import parse_spec

TIMING = ["train_time", "compile_time", "wall_time", "group_size"]

# 48 runs of one architecture: lr 30 diverges by loss factor part-way (sgd, unclipped), lr 1e38
# turns non-finite (adam) or diverges at once; clipping keeps some lr-30 runs alive.
GROUPED = {"name": "grouped", "seeds": [0, 1],
           "fixed": {"dataset": "digits", "n_samples": 200, "depth": 2, "width": 8,
                     "activation": "tanh", "steps": 20, "metrics_every": 5, "batch_size": 16,
                     "eval_rows": 64, "dtype": "float32"},
           "axes": {"init": ["xavier_normal", "he_normal"], "lr": [0.1, 30.0, 1e38],
                    "optimizer": ["sgd", "adam"], "clip": ["none", "global_norm"]}}
BASE = resolve(GROUPED["fixed"])


def spec_of(raw=GROUPED, **changes):
    return parse_spec({**raw, **changes}, f"{raw['name']}.toml")


def comparable(results):
    """The three tables of a study's Results without timing columns, in a fixed order."""
    runs = results.runs.drop(columns=[c for c in TIMING if c in results.runs])
    return (runs.sort_values("run_id").reset_index(drop=True),
            results.history.drop(columns=["train_time"]).sort_values(
                ["run_id", "step"]).reset_index(drop=True),
            results.layers.sort_values(["run_id", "step", "layer"]).reset_index(drop=True))


def assert_same_tables(a, b):
    """Results a and b hold the same numbers, exactly (NaN equal to NaN)."""
    for ours, theirs in zip(comparable(a), comparable(b)):
        pd.testing.assert_frame_equal(ours, theirs, check_exact=True)  # NaN equals NaN


@pytest.fixture(scope="module")
def serial_stores(tmp_path_factory):
    """The GROUPED sweep run serially, grouped and alone."""
    root = tmp_path_factory.mktemp("grouped")
    spec = spec_of()
    grouped = run_study(spec, "quick", out=root / "grouped", workers=0, show_progress=False)
    alone = run_study(spec, "quick", out=root / "alone", workers=0, show_progress=False,
                      group_runs=False)
    return root, grouped, alone


def test_grouped_and_alone_store_identical_tables(serial_stores):
    root, grouped, alone = serial_stores
    assert grouped.counts == alone.counts and sum(grouped.counts.values()) == 48
    together, apart = studies.load(root / "grouped"), studies.load(root / "alone")
    assert_same_tables(together, apart)
    runs = together.runs
    assert (runs["group_size"] == 16).all()  # really grouped: 48 runs in three groups
    assert (apart.runs["group_size"] == 1).all()
    assert together.manifest["group_runs"] is True and apart.manifest["group_runs"] is False
    # the sweep holds what grouping must get right: runs that stop part-way at different steps
    # next to runs that go on, non-finite steps, and clipped runs
    steps = runs.loc[runs["status"] == "diverged", "steps_done"]
    assert steps.nunique() >= 3 and steps.min() <= 1 and steps.max() > 5  # 0: the first update
    assert (runs["status"] == "completed").sum() >= 16
    assert (together.history["loss"] > 1e30).any()  # steps that blow up (a non-finite one is
    # refused before it is applied, so the stored losses stay finite)
    clipped = runs[(runs["clip"] == "global_norm") & (runs["lr"] == 30.0)]
    assert (clipped["status"] == "completed").any()


def test_per_run_keys_train_in_a_group_as_alone():
    """Every kind of per-run key in one group: the same rows as train_run, timing aside."""
    variants = [{}, {"seed": 3, "init": "orthogonal", "gain": 1.5},
                {"sigma_w2": 2.0, "sigma_b2": 0.1}, {"init": "naive_normal", "init_scale": 0.3},
                {"optimizer": "nesterov", "momentum": 0.8, "weight_decay": 1e-3},
                {"optimizer": "rmsprop", "lr": 1e-3, "eps_inside_sqrt": False, "rho": 0.9},
                {"optimizer": "adam", "lr": 0.01, "schedule": "cosine", "warmup": 3},
                {"schedule": "step", "step_size": 4, "gamma": 0.5, "lr": 0.5},
                {"clip": "value", "clip_threshold": 0.01}, {"clip": "layer_norm", "lr": 30.0},
                {"lr": 30.0}, {"lr": 1e38, "optimizer": "adam"}]
    for fixed in ({}, {"batchnorm": True, "gradient_stats": True},
                  {"objective": "mse+sigmoid", "batch_size": 0, "dtype": "float64"}):
        configs = [resolve({**GROUPED["fixed"], **fixed, **v}) for v in variants]
        assert len({group_key(c) for c in configs}) == 1
        alone = [train_run(c) for c in configs]
        together = [(run, pd.DataFrame(hist), pd.DataFrame(lay))
                    for run, hist, lay in train_group(configs)]
        if "objective" not in fixed:  # (bounded sigmoid outputs do not diverge)
            assert len({a[0]["steps_done"] for a in alone}) > 1, "some runs must stop early"
        for (run_a, hist_a, lay_a), (run_b, hist_b, lay_b) in zip(alone, together):
            for key in run_a:
                if key not in TIMING:
                    assert run_a[key] == run_b[key] or (run_a[key] != run_a[key] and
                                                        run_b[key] != run_b[key]), key
            pd.testing.assert_frame_equal(hist_a.drop(columns="train_time"),
                                          hist_b.drop(columns="train_time"), check_exact=True)
            pd.testing.assert_frame_equal(lay_a, lay_b, check_exact=True)


def test_group_key_joins_per_run_keys_and_separates_the_rest():
    key = group_key(BASE)
    for change in ({"seed": 5}, {"lr": 3.0}, {"optimizer": "adam"}, {"init": "he_uniform"},
                   {"clip": "global_norm", "clip_threshold": 0.5}, {"sigma_w2": 2.0},
                   {"schedule": "cosine", "warmup": 2}, {"weight_decay": 0.1}):
        assert group_key(resolve({**GROUPED["fixed"], **change})) == key, change
    changes = ({"depth": 3}, {"width": 9}, {"activation": "relu"}, {"dataset": "spirals"},
               {"n_samples": 201}, {"data_seed": 1}, {"dataset_options": {"noise": 0.1}},
               {"steps": 21}, {"metrics_every": 4}, {"batch_size": 8}, {"eval_rows": 32},
               {"gradient_stats": True}, {"dtype": "float64"}, {"batchnorm": True},
               {"loss": "mse"}, {"output_activation": "softmax"}, {"objective": "mse+sigmoid"})
    keys = {key}
    for change in changes:
        other = group_key(resolve({**GROUPED["fixed"], **change}))
        assert other != key, change
        keys.add(other)
    assert len(keys) == len(changes) + 1
    assert group_key(resolve({**GROUPED["fixed"], "device": "cuda"})) is None
    assert PER_RUN <= set(BASE), "per-run keys are configuration keys"


def test_plan_groups_caps_and_balances():
    def tasks(n, **config):
        return [Task(f"r{i}", {**BASE, "seed": i, **config}, {}) for i in range(n)]

    def sizes(groups):
        return [len(g) for g in groups]

    assert sizes(plan_groups(tasks(48), workers=1)) == [16, 16, 16]
    assert sizes(plan_groups(tasks(17), workers=1)) == [9, 8]
    assert sizes(plan_groups(tasks(10), workers=4)) == [2, 2, 2, 2, 2]
    assert sizes(plan_groups(tasks(3), workers=4)) == [1, 1, 1]
    assert sizes(plan_groups(tasks(8), workers=1, enabled=False)) == [1] * 8
    assert sizes(plan_groups(tasks(4, device="cuda"), workers=1)) == [1] * 4
    mixed = tasks(3) + tasks(2, depth=3) + tasks(2)
    for task in mixed[-2:]:
        task.labels = {"divergence_factor": 5.0}  # other thresholds: another group
    groups = plan_groups(mixed, workers=1)  # the most work first, then in grid order
    assert [[t.run_id for t in g] for g in groups] == [["r0", "r1", "r2"], ["r0", "r1"],
                                                       ["r0", "r1"]]
    assert [g[0].config["depth"] for g in groups] == [2, 3, 2]
    assert [g[-1].labels for g in groups] == [{}, {}, {"divergence_factor": 5.0}]
    groups = plan_groups(tasks(2) + tasks(2, depth=5) + tasks(2, steps=10), workers=1)
    assert [(g[0].config["depth"], g[0].config["steps"]) for g in groups] == [(5, 20), (2, 20),
                                                                               (2, 10)]
    for workers in (1, 2, 3, 5, 8):
        groups = plan_groups(tasks(40) + tasks(7, depth=3), workers)
        assert len(groups) >= workers and max(sizes(groups)) <= 16
        assert sorted(t.config["seed"] for g in groups for t in g) == sorted(
            list(range(40)) + list(range(7)))


def test_processes_and_dask_group_as_serial(serial_stores, tmp_path):
    from distributed import LocalCluster
    root, grouped, _ = serial_stores
    spec = spec_of()
    pool = run_study(spec, "quick", out=tmp_path / "pool", workers=2, show_progress=False)
    assert pool.counts == grouped.counts
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        dask = run_study(spec, "quick", out=tmp_path / "dask", show_progress=False,
                         scheduler=cluster.scheduler_address)
    assert dask.counts == grouped.counts
    serial = studies.load(root / "grouped")
    for name in ("pool", "dask"):
        results = studies.load(tmp_path / name)
        assert_same_tables(serial, results)
        assert (results.runs["group_size"] > 1).all()


def test_a_run_that_fails_in_a_group_fails_alone(tmp_path, monkeypatch):
    """A run whose optimizer refuses its values when they are used (here an extra check on
    Momentum that passes 0.5 and refuses 0.7, which the spec accepts): the group falls back to
    single runs, and only that run's seeds fail."""
    from kernels.optimizers import Momentum

    def at_most_0_6(argument, value):
        if value > 0.6:
            raise ValueError(f"{argument}: expected at most 0.6, got {value!r}")
    monkeypatch.setattr(Momentum, "checked", (("momentum", "momentum", at_most_0_6),))
    raw = {**GROUPED, "name": "badmomentum", "fixed": {**GROUPED["fixed"],
                                                       "optimizer": "momentum"},
           "axes": {"momentum": [0.5, 0.7]}}
    spec = spec_of(raw)
    assert len({group_key(c) for c in spec.grid("quick")}) == 1
    payloads = execute_group(spec.grid("quick"))
    assert [p["run"]["status"] for p in payloads] == ["completed"] * 2 + ["failed"] * 2
    assert all(p["run"]["group_size"] == 1 for p in payloads)
    summary = run_study(spec, "quick", out=tmp_path, workers=0, show_progress=False)
    assert summary.counts == {"completed": 2, "failed": 2}
    runs = studies.load(tmp_path).runs.set_index("momentum")
    assert (runs.loc[0.5, "status"] == "completed").all()
    assert runs.loc[0.7, "error"].str.startswith("ValueError: momentum: expected").all()
    assert (runs.loc[0.7, "attempts"] == 2).all() and (runs.loc[0.5, "attempts"] == 1).all()


class _CrashingPool:
    """A stand-in process pool that runs work in this process, except that any group of more
    than one run, and run `doomed` alone, 'crash' the pool (BrokenProcessPool)."""
    doomed = None
    submitted = []

    def submit(self, fn, configs, labels):
        future = Future()
        _CrashingPool.submitted.append(len(configs))
        if len(configs) > 1 or configs[0]["seed"] == self.doomed:
            future.set_exception(BrokenProcessPool("killed"))
        else:
            future.set_result(fn(configs, labels))
        return future

    def shutdown(self, wait=True, cancel_futures=False):
        pass


def test_a_group_whose_worker_dies_is_split_into_isolated_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "_new_pool", lambda workers: _CrashingPool())
    monkeypatch.setattr(_CrashingPool, "doomed", 2)
    monkeypatch.setattr(_CrashingPool, "submitted", [])
    spec = spec_of(seeds=[0, 1, 2, 3], axes={"lr": [0.1]})
    summary = run_study(spec, "quick", out=tmp_path, workers=1, show_progress=False)
    assert _CrashingPool.submitted[0] == 4  # one group first, then its runs alone
    assert summary.counts == {"completed": 3, "failed": 1}
    runs = studies.load(tmp_path).runs.set_index("seed")
    assert runs.loc[2, "error"].endswith("retried once alone, crashed again")
    # as for a crash in a shared pool, the group's crash is not counted as an attempt: the
    # doomed run crashed alone twice (stored attempts = counted attempts + 1), the others never
    assert runs.loc[2, "attempts"] == 3 and runs.loc[2, "group_size"] == 1
    assert (runs.drop(index=2)["attempts"] == 1).all()


def test_resume_skips_every_finished_run_grouped_or_not(serial_stores, tmp_path, capsys):
    root, grouped, _ = serial_stores
    again = run_study(spec_of(), "quick", out=root / "grouped", workers=0, show_progress=False)
    assert again.skipped == 48 and again.counts == {}
    spec_file = tmp_path / "small.toml"
    spec_file.write_text(
        'name = "small"\nseeds = [0, 1, 2]\n[fixed]\ndataset = "digits"\nn_samples = 200\n'
        'depth = 1\nwidth = 8\nsteps = 10\nmetrics_every = 5\nbatch_size = 16\n'
        'eval_rows = 64\n[axes]\nlr = [0.05, 0.1]\n')
    out = tmp_path / "out"
    assert main(["run", str(spec_file), "--workers", "0", "--out", str(out), "--quiet"]) == 0
    first = studies.load(out)
    assert (first.runs["group_size"] == 6).all() and first.manifest["group_runs"] is True
    capsys.readouterr()
    assert main(["run", str(spec_file), "--workers", "0", "--out", str(out), "--quiet",
                 "--no-group"]) == 0
    assert "6 runs, 6 already done" in capsys.readouterr().out
    assert json.loads((out / "manifest.json").read_text())["group_runs"] is False
    assert len(studies.load(out).runs) == 6


@pytest.mark.parametrize("fixed", [{}, {"batchnorm": True, "gradient_stats": True},
                                   {"curvature": True, "gradient_noise": True,
                                    "curvature_rows": 32}])
def test_runs_that_start_alike_share_their_first_measurement(monkeypatch, fixed):
    """Runs of a group from one initialization (seed, init) hold the same bits at step 0: the
    evaluation and layer statistics are computed once for them, and every table is still the
    table the run gives alone (curvature, seeded by the run, measured for each)."""
    from studies.run.record import RunLog
    variants = [{"lr": 0.1}, {"lr": 0.5}, {"lr": 0.1, "optimizer": "adam"}, {"seed": 7},
                {"seed": 7, "lr": 0.02}, {"init": "he_normal"}]
    configs = [resolve({**GROUPED["fixed"], **fixed, **v}) for v in variants]
    assert len({group_key(c) for c in configs}) == 1
    alone = [train_run(c) for c in configs]
    calls = []
    original = RunLog.metrics
    monkeypatch.setattr(RunLog, "metrics", lambda log, net: calls.append(log) or
                        original(log, net))
    together = train_group(configs)
    n_metric_steps = configs[0]["steps"] // configs[0]["metrics_every"] + 1
    assert len(calls) == len(configs) * n_metric_steps - 3  # three starts reused, at step 0
    for (run_a, hist_a, lay_a), (run_b, hist_b, lay_b) in zip(alone, together):
        assert {k: v for k, v in run_a.items() if k not in TIMING} == \
            {k: v for k, v in run_b.items() if k not in TIMING}
        pd.testing.assert_frame_equal(hist_a.drop(columns="train_time"),
                                      pd.DataFrame(hist_b).drop(columns="train_time"),
                                      check_exact=True)
        pd.testing.assert_frame_equal(lay_a, pd.DataFrame(lay_b), check_exact=True)
    if fixed.get("curvature"):  # the curvature columns were measured, for every run
        assert all(np.isfinite(hist["sharpness"]).all() for _, hist, _ in alone)
