"""The report's pipeline: sweeps on one shared worker pool with drawing in its own process give
the same stores, findings and figures as everything done in order in this process."""
import numpy as np
import pytest

from studies.report.pipeline import StudyReport, draw_part, report_studies
from studies.run.runner import run_study, worker_pool
from studies.spec import load_spec
from studies.store import load

SPEC = """name = "{name}"
section = "8"
figures = ["update_ratio_layers"]
seeds = [0, 1]
[fixed]
dataset = "blobs"
depth = 2
width = 8
steps = 12
metrics_every = 4
[axes]
lr = [0.05, {lr}]
"""
TIMING = ("train_time", "compile_time", "wall_time")


def _specs(root):
    paths = {}
    for name, lr in (("mini_a", 0.2), ("mini_b", 0.5)):
        paths[name] = root / f"{name}.toml"
        paths[name].write_text(SPEC.format(name=name, lr=lr))
    return paths


def _numbers(store):
    runs = load(store).runs.sort_values("run_id").reset_index(drop=True)
    return runs.drop(columns=[c for c in TIMING if c in runs])


@pytest.fixture(scope="module")
def both_ways(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    paths = _specs(root)
    out = {}
    for workers in (0, 1):
        where = root / f"w{workers}"
        out[workers] = where, report_studies(paths, "smoke", where / "report", where / "stores",
                                             workers=workers, show_progress=False)
    return out


def test_pooled_pipeline_matches_the_serial_one(both_ways):
    (serial_root, serial), (pooled_root, pooled) = both_ways[0], both_ways[1]
    assert [s.name for s in serial] == [s.name for s in pooled] == ["mini_a", "mini_b"]
    for a, b in zip(serial, pooled):
        assert not a.errors and not b.errors, (a.errors, b.errors)
        assert a.counts == b.counts and a.runs == 4 and a.new_runs == b.new_runs == 4
        assert a.findings == b.findings
        assert [f["stem"] for f in a.figures] == [f["stem"] for f in b.figures] == \
            ["update_ratio_layers"]
        assert a.figures[0]["caption"] == b.figures[0]["caption"]
        assert (pooled_root / "report" / b.figures[0]["png"]).stat().st_size > 5000
        left, right = _numbers(serial_root / "stores" / a.name), \
            _numbers(pooled_root / "stores" / b.name)
        assert left.equals(right)


def test_a_shared_pool_serves_several_sweeps_and_stays_open(tmp_path):
    paths = _specs(tmp_path)
    with worker_pool(1) as pool:
        for name, path in paths.items():
            summary = run_study(load_spec(path), scale="smoke", out=tmp_path / name, pool=pool,
                                show_progress=False)
            assert summary.total == 4 and summary.counts == {"completed": 4}
        workers = set(pool.pool._processes)
        assert len(workers) == 1 and not pool.broken  # one process did both studies
    serial = run_study(load_spec(paths["mini_a"]), scale="smoke", out=tmp_path / "serial",
                       workers=0, show_progress=False)
    assert serial.counts == {"completed": 4}
    assert _numbers(tmp_path / "mini_a").equals(_numbers(tmp_path / "serial"))
    assert load(tmp_path / "mini_b").manifest["executor"] == "processes:1 shared"


def test_drawing_a_missing_store_is_an_error_not_a_crash(tmp_path):
    study = draw_part(StudyReport(name="gone", figure_names=["update_ratio_layers"]),
                      tmp_path / "no_store", tmp_path / "report")
    assert study.errors and study.errors[0][0] == "store"
    assert study.figures == [] and np.isfinite(study.wall_time)
