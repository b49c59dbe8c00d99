"""One settle-or-retry policy on every executor: a real dying worker (os._exit inside it) on the
process pool and on a Dask LocalCluster gives the same stored outcomes: its group split into
single runs, the culprit retried once alone then stored failed, a raising run retried once then
stored failed with its error, every other run completed once."""
import dask
import pytest

import studies
from _dying_worker import DOOMED_SEED, RAISING_MOMENTUM, execute_or_die
from studies.run import runner
from studies.run.policy import Settlement
from studies.run.runner import Task, run_study
from studies.spec import parse_spec

# 6 runs of one group key (two groups of 3 on two workers); a run of momentum RAISING_MOMENTUM
# raises in its worker, seed DOOMED_SEED kills its worker whenever it runs.
RAW = {"name": "faults", "seeds": [0, DOOMED_SEED, 3],
       "fixed": {"dataset": "spirals", "n_samples": 120, "width": 6, "depth": 1, "steps": 6,
                 "metrics_every": 3, "batch_size": 16, "eval_rows": 32, "dtype": "float64",
                 "optimizer": "momentum"},
       "axes": {"momentum": [0.5, RAISING_MOMENTUM]}}


def outcomes(path):
    """(momentum, seed) -> (status, error's start, attempts) of every stored run."""
    runs = studies.load(path).runs
    return {(r.momentum, r.seed): (r.status, r.error.split(":")[0], int(r.attempts))
            for r in runs.itertuples()}


def expected():
    out = {}
    for momentum in (0.5, RAISING_MOMENTUM):
        for seed in RAW["seeds"]:
            if seed == DOOMED_SEED:
                out[momentum, seed] = ("failed", "worker died (crash or killed); retried once "
                                                 "alone, crashed again", 3)
            elif momentum == RAISING_MOMENTUM:
                out[momentum, seed] = ("failed", "ValueError", 2)
            else:
                out[momentum, seed] = ("completed", "", 1)
    return out


@pytest.fixture
def dying_work(monkeypatch):
    monkeypatch.setattr(runner, "execute_group", execute_or_die)


def test_a_dying_worker_settles_alike_on_processes_and_dask(tmp_path, dying_work):
    from distributed import LocalCluster
    spec = parse_spec(RAW, "faults.toml")
    pool = run_study(spec, "quick", out=tmp_path / "pool", workers=2, show_progress=False)
    # a dead worker's tasks go straight to this policy (no Dask-side retry first)
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                         dashboard_address=None) as cluster:
        on_dask = run_study(spec, "quick", out=tmp_path / "dask", show_progress=False,
                            scheduler=cluster.scheduler_address)
    assert pool.counts == on_dask.counts == {"completed": 2, "failed": 4}
    want = expected()
    assert outcomes(tmp_path / "pool") == want
    assert outcomes(tmp_path / "dask") == want
    runs = studies.load(tmp_path / "pool").runs.set_index(["momentum", "seed"])
    assert runs.loc[(RAISING_MOMENTUM, 0), "error"].startswith("ValueError: momentum: expected")


class _Outcomes:
    """Drives a Settlement by hand: which groups it submits, what it stores."""

    def __init__(self, groups):
        self.stored = {}
        self.settlement = Settlement(groups, self.store)

    def store(self, task, payload):
        assert task.run_id not in self.stored, "a run is stored once"
        self.stored[task.run_id] = (payload["run"]["status"], task.attempts + 1)


def _tasks(*ids):
    return [Task(i, {"seed": n}, {}) for n, i in enumerate(ids)]


def _ok(status="completed"):
    return {"run": {"status": status, "error": ""}, "history": {}, "layers": {}}


def test_settlement_splits_isolates_and_retries_once():
    group = _tasks("a", "b", "c")
    run = _Outcomes([group])
    s = run.settlement
    assert s.next_group(0, 4) is group
    s.crashed(group)  # the shared worker died: three suspects, no attempt counted
    assert [t.attempts for t in group] == [0, 0, 0] and all(t.isolate for t in group)
    first = s.next_group(0, 4)
    assert [t.run_id for t in first] == ["a"] and s.next_group(1, 4) is None  # alone
    s.finished(first, [_ok()])
    second = s.next_group(0, 4)
    s.crashed(second)  # b died alone: one more try alone
    assert second[0].attempts == 1 and s.next_group(0, 4)[0].run_id == "b"
    s.crashed(second)  # and again: stored failed
    third = s.next_group(0, 4)
    s.finished(third, [_ok("failed")])  # c raised: retried once
    again = s.next_group(0, 4)
    assert again == third
    s.finished(again, [_ok("failed")])
    assert not s and run.stored == {"a": ("completed", 1), "b": ("failed", 3),
                                    "c": ("failed", 2)}
