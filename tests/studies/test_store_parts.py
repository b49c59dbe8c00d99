"""Parts and the older per-run layout: the same payloads written both ways load to the same
tables; old stores load and resume; a run held by two intact parts is taken once, from the newer;
a sweep SIGKILLed while it writes a part, then rerun, stores every run exactly once, with the
numbers of a clean sweep."""
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import pandas as pd
import pyarrow.compute as pc
import pytest

import studies
from studies.run.runner import plan, run_study
from studies.spec import load_spec, parse_spec
from studies.store import (PART_PREFIX, RECORD, TABLES, Store, check_run, load, read_folder)

ROOT = Path(__file__).resolve().parents[2]
_script = importlib.util.spec_from_file_location("compare_stores",
                                                 ROOT / "scripts" / "compare_stores.py")
compare_stores = importlib.util.module_from_spec(_script)
_script.loader.exec_module(compare_stores)
FIXED = {"dataset": "spirals", "n_samples": 200, "width": 8, "depth": 2, "steps": 12,
         "metrics_every": 4, "batch_size": 16, "eval_rows": 64, "dtype": "float64",
         "optimizer": "sgd"}
SPEC = {"name": "parts", "seeds": [0, 1], "fixed": FIXED,
        "axes": {"activation": ["tanh", "relu", "elu"], "lr": [0.05, 50.0]}}
BAD = {"name": "parts", "seeds": [0], "fixed": {**FIXED, "dataset_options": {"noize": 0.1}},
       "axes": {"activation": ["tanh"]}}


def write_old_run(runs_dir, run_id, run_row, history, layers, record=True):
    """A run folder as stores were written before parts: pandas tables, a format-1 record."""
    folder = Path(runs_dir) / run_id
    folder.mkdir(parents=True)
    files = {}
    for name, frame in {"run": pd.DataFrame([run_row]), "history": pd.DataFrame(history),
                        "layers": pd.DataFrame(layers)}.items():
        if "run_id" not in frame.columns:
            frame.insert(0, "run_id", run_id)
        frame.to_parquet(folder / f"{name}.parquet", index=False)
        data = (folder / f"{name}.parquet").read_bytes()
        files[f"{name}.parquet"] = {"size": len(data), "crc32": f"{zlib.crc32(data):08x}"}
    if record:
        (folder / RECORD).write_text(json.dumps({"format": 1, "run_id": run_id,
                                                 "status": run_row["status"], "files": files}))


def payloads(out):
    """[[(run_id, run_row, history, layers)] per part] of a store, rebuilt from its tables as
    the runner hands them over: a row dict, columns as lists (history) or arrays (layers)."""
    groups = []
    for folder in sorted((Path(out) / "runs").iterdir()):
        tables, record = read_folder(folder)
        group = []
        for run_id in record["run_ids"]:
            one = {n: t.filter(pc.equal(t.column("run_id"), run_id)) for n, t in tables.items()}
            row = one["run"].to_pylist()[0]
            history = {c: one["history"].column(c).to_pylist()
                       for c in one["history"].column_names if c != "run_id"}
            layers = {c: one["layers"].column(c).to_numpy()
                      for c in one["layers"].column_names if c != "run_id"}
            group.append((run_id, row, history, layers))
        groups.append(group)
    return groups


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """A store of the runner: three parts of four (tanh, relu, elu) and a failed run."""
    out = tmp_path_factory.mktemp("parts") / "store"
    run_study(parse_spec(SPEC, "parts.toml"), "quick", out=out, workers=0, show_progress=False)
    run_study(parse_spec(BAD, "bad.toml"), "quick", out=out, workers=0, show_progress=False)
    Store(out).release()
    return out


def same_results(a, b):
    for name in ("runs", "history", "layers"):
        x, y = getattr(a, name), getattr(b, name)
        assert list(x.columns) == list(y.columns), name
        assert x.dtypes.to_dict() == y.dtypes.to_dict(), name
        pd.testing.assert_frame_equal(x, y, check_exact=True)


def test_the_same_payloads_as_parts_or_run_folders_load_to_the_same_tables(swept, tmp_path):
    groups = payloads(swept)
    assert sorted(map(len, groups)) == [1, 4, 4, 4]
    old, new = tmp_path / "old", tmp_path / "new"
    for group in groups:
        for entry in group:
            write_old_run(old / "runs", *entry)
        Store(new).write_part(group)
    shutil.copy(swept / "manifest.json", old)
    shutil.copy(swept / "manifest.json", new)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        same_results(load(new), load(old))
        same_results(load(new), load(swept))
        same_results(load(new, thresholds={"dead_fraction": 0.01}),
                     load(old, thresholds={"dead_fraction": 0.01}))
    assert load(new, thresholds={"dead_fraction": 0.01}).runs["labels"].ne(
        load(new).runs["labels"]).any()  # relabelled, the same way in both layouts


def test_old_stores_load_and_a_rerun_skips_their_finished_runs(swept, tmp_path):
    out = tmp_path / "old"
    groups = payloads(swept)
    for i, entry in enumerate(e for group in groups for e in group):
        write_old_run(out / "runs", *entry, record=i % 2 == 0)  # half from before records
    shutil.copy(swept / "manifest.json", out)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        same_results(load(out), load(swept))
    spec = parse_spec(SPEC, "parts.toml")
    summary = run_study(spec, "quick", out=out, workers=0, show_progress=False)
    Store(out).release()
    assert summary.skipped == 12 and summary.counts == {}
    folders = sorted((out / "runs").iterdir())
    assert not any(f.name.startswith(PART_PREFIX) for f in folders)  # nothing rewritten
    assert all(check_run(f) is None for f in folders)  # the sweep adopted the recordless
    same_results(load(out), load(swept))
    summary = run_study(parse_spec(BAD, "bad.toml"), "quick", out=out, workers=0,
                        show_progress=False)  # the old failed run is redone into a part
    Store(out).release()
    assert summary.counts == {"failed": 1} and len(list((out / "runs").iterdir())) == 13
    assert len(load(out).runs) == 13


def test_a_run_in_two_intact_parts_is_taken_once_from_the_newer(swept, tmp_path):
    groups = sorted(payloads(swept), key=len)
    store = Store(tmp_path / "dup")
    first = store.write_part(groups[1])
    run_id, row, history, layers = groups[1][0]
    again = store.write_part([(run_id, {**row, "final_loss": -1.0}, history, layers)])
    assert check_run(first) is None and check_run(again) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        runs = load(store.root).runs
    assert runs["run_id"].is_unique and len(runs) == 4
    assert (runs.loc[runs["run_id"] == run_id, "final_loss"] == -1.0).all()
    assert (runs.loc[runs["run_id"] != run_id, "final_loss"] != -1.0).all()
    history_rows = load(store.root).history
    assert len(history_rows[history_rows["run_id"] == run_id]) == len(history["step"])
    with store.lock():
        assert store.drop_superseded() == []  # the first part still holds three runs
        store.write_part(groups[1][1:])
        assert store.drop_superseded() == [first.name]
    assert len(load(store.root).runs) == 4


KILLER = """
import os, runpy, signal, sys
import pyarrow.parquet as pq
from studies.store import files
spec, out, nth, point = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
seen = {"rename": 0, "write_table": 0}
real_rename, real_write = os.rename, pq.write_table

def rename(src, dst):
    if os.path.basename(str(src)).startswith(".tmp-part-"):
        seen["rename"] += 1
        if point == "rename" and seen["rename"] == nth:  # every table flushed, not renamed
            os.kill(os.getpid(), signal.SIGKILL)
    return real_rename(src, dst)

def write_table(table, where, **kwargs):
    seen["write_table"] += 1
    if point == "write_table" and seen["write_table"] == 3 * (nth - 1) + 2:  # mid-part
        real_write(table.slice(0, max(1, table.num_rows // 2)), where, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)
    return real_write(table, where, **kwargs)

files.os.rename, files.pq.write_table = rename, write_table
sys.argv = ["gradlab", "run", spec, "--out", out, "--workers", "0", "--quiet"]
runpy.run_module("studies.cli", run_name="__main__")
"""


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """The spec's store from one uninterrupted sweep, and the spec file."""
    spec = tmp_path_factory.mktemp("clean") / "parts.toml"
    lines = ['name = "parts"', "seeds = [0, 1]", "[fixed]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in FIXED.items()]
    lines += ["[axes]", 'activation = ["tanh", "relu", "elu"]', "lr = [0.05, 50.0]"]
    spec.write_text("\n".join(lines) + "\n")
    out = spec.parent / "clean"
    run_study(load_spec(spec), "quick", out=out, workers=0, show_progress=False)
    Store(out).release()
    return spec, out


@pytest.mark.parametrize("point", ["write_table", "rename"])
def test_a_sweep_killed_while_writing_a_part_then_rerun_stores_every_run_once(clean, tmp_path,
                                                                              point):
    spec, reference = clean
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    killed = subprocess.run([sys.executable, "-c", KILLER, str(spec), str(out), "2", point],
                            cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert killed.returncode == -9, killed.stderr
    strays = [p for p in (out / "runs").iterdir() if p.name.startswith(".tmp-")]
    assert len(strays) == 1  # the part being written when it died
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        partial = studies.load(out)
    assert len(partial.runs) == 4 and partial.runs["run_id"].is_unique  # the first part only
    again = subprocess.run([sys.executable, "-m", "studies.cli", "run", str(spec), "--out",
                            str(out), "--workers", "0", "--quiet"], cwd=ROOT,
                           capture_output=True, text=True, timeout=600, env=env)
    assert again.returncode == 0, again.stderr
    assert "12 runs, 4 already done" in again.stdout
    assert not any(p.name.startswith(".tmp-") for p in (out / "runs").iterdir())
    final = studies.load(out)
    ids = [r for f in (out / "runs").iterdir()
           for r in json.loads((f / RECORD).read_text())["run_ids"]]
    assert sorted(ids) == sorted(set(ids)) == sorted(final.runs["run_id"])  # each run once
    assert set(ids) == {t.run_id for t in plan(load_spec(spec), "quick")}
    assert compare_stores.compare(out, reference) == {"runs": [], "history": [], "layers": []}
