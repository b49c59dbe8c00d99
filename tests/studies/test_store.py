"""The results store with real files: completion records, damaged runs skipped by load with one
warning and redone by the next sweep, loading equal to the per-file pandas reader, labels
recomputed from stored data, and the per-store lock."""
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pandas as pd
import pytest

import studies
from _plot_store import make_store
from studies.run.runner import plan, run_study
from studies.spec import parse_spec
from studies.analysis.labels import Thresholds
from studies.store import (RECORD, TABLES, TMP_PREFIX, DamagedRunWarning, Store, StoreLocked,
                           _read_run, check_run, load, relabel_run)

ROOT = Path(__file__).resolve().parents[2]
FIXED = {"dataset": "spirals", "n_samples": 200, "width": 8, "depth": 2, "steps": 12,
         "metrics_every": 4, "batch_size": 16, "eval_rows": 64, "dtype": "float64",
         "optimizer": "sgd"}
# tanh and relu at a sane rate complete; lr 50 diverges; asking spirals for more rows than
# its generator makes fails (the dataset raises in the worker)
GOOD = {"name": "tiny", "seeds": [0], "fixed": FIXED,
        "axes": {"activation": ["tanh", "relu"], "lr": [0.05, 50.0]}}
BAD = {"name": "tiny", "seeds": [0], "fixed": {**FIXED, "dataset_options": {"noize": 0.1}},
       "axes": {"activation": ["tanh"]}}


def old_load(path):
    """The reader before pyarrow: three pandas reads per run, concatenated."""
    frames = {name: [] for name in TABLES}
    for folder in sorted((Path(path) / "runs").iterdir()):
        if folder.name.startswith(TMP_PREFIX) or not folder.is_dir():
            continue
        for name in TABLES:
            file = folder / f"{name}.parquet"
            if file.exists():
                frame = pd.read_parquet(file)
                if len(frame):
                    frames[name].append(frame)
    return [pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
            for parts in frames.values()]


def sweep(out):
    """Both specs into one store; returns the SweepSummary of each."""
    specs = [parse_spec(GOOD, "good.toml"), parse_spec(BAD, "bad.toml")]
    return [run_study(s, "quick", out=out, workers=0, show_progress=False) for s in specs]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    out = tmp_path_factory.mktemp("store") / "tiny"
    good, bad = sweep(out)
    assert good.counts == {"completed": 2, "diverged": 2} and bad.counts == {"failed": 1}
    Store(out).release()  # run_study's prepare() took the lock for this process
    return out


def same_tables(ours, theirs):
    for a, b in zip(ours, theirs):
        assert list(a.columns) == list(b.columns)
        assert a.dtypes.to_dict() == b.dtypes.to_dict()
        pd.testing.assert_frame_equal(a, b, check_exact=True)


def tables(results):
    return [results.runs, results.history, results.layers]


def test_every_run_has_a_completion_record_listing_its_files(store):
    folders = sorted((store / "runs").iterdir())
    assert len(folders) == 5
    for folder in folders:
        record = json.loads((folder / RECORD).read_text())
        assert set(record["files"]) == {f"{t}.parquet" for t in TABLES}
        for name, entry in record["files"].items():
            assert (folder / name).stat().st_size == entry["size"]
        assert check_run(folder) is None
    statuses = sorted(json.loads((f / RECORD).read_text())["status"] for f in folders)
    assert statuses == ["completed", "completed", "diverged", "diverged", "failed"]


def test_load_equals_the_per_file_pandas_reader(store, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        same_tables(tables(load(store)), old_load(store))
        hand_built = make_store(tmp_path / "hand")  # another schema mix, no records
        same_tables(tables(load(hand_built)), old_load(hand_built))


def test_relabelling_reproduces_the_runners_labels(store):
    for folder in sorted((store / "runs").iterdir()):
        stored, record = _read_run(folder)
        assert record["labels"] == {}  # the spec's [labels]: the defaults
        again = relabel_run(stored, Thresholds(dead_fraction=0.5))  # the same, recomputed
        for name in TABLES:
            assert again[name].equals(stored[name]), (folder.name, name)
    same_tables(tables(load(store, thresholds={})), tables(load(store)))


def test_relabel_follows_the_thresholds(store):
    results = load(store, thresholds={"vanishing_ratio": 1e-12, "exploding_ratio": 1e-11})
    finished = results.runs[results.runs["status"] != "failed"]
    assert finished["labels"].str.contains("exploding@0").all()
    assert (finished["first_exploding"] == 0).all()
    assert (results.runs.loc[results.runs["status"] == "failed", "labels"].isna()).all()
    assert results.layers["layer_labels"].str.startswith("exploding@0").all()
    before = load(store)
    assert not before.runs["labels"].fillna("").str.contains("exploding@0").any()


def _damage(out):
    """Truncates, empties and deletes one table each of three finished runs; their ids."""
    runs = load(out).runs
    ids = sorted(runs.loc[runs["status"] != "failed", "run_id"])[:3]
    history = out / "runs" / ids[0] / "history.parquet"
    history.write_bytes(history.read_bytes()[:len(history.read_bytes()) // 2])
    (out / "runs" / ids[1] / "layers.parquet").write_bytes(b"")
    (out / "runs" / ids[2] / "history.parquet").unlink()
    return ids


def test_damaged_runs_are_skipped_with_one_warning_then_redone(store, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(store, out)
    damaged = _damage(out)
    store_ = Store(out)
    all_ids = {t.run_id for t in plan(parse_spec(GOOD, "good.toml"), "quick")}
    assert store_.finished(all_ids) == all_ids - set(damaged)
    with pytest.warns(DamagedRunWarning) as caught:
        results = load(out)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert all(run_id in message for run_id in damaged) and "3 damaged run(s)" in message
    assert set(results.runs["run_id"]).isdisjoint(damaged) and len(results.runs) == 2
    assert set(results.history["run_id"]) == set(results.runs["run_id"]) - {
        r for r, s in zip(results.runs["run_id"], results.runs["status"]) if s == "failed"}
    good, bad = sweep(out)
    assert good.skipped == 1 and sum(good.counts.values()) == 3  # the three damaged ones
    assert bad.skipped == 0 and bad.counts == {"failed": 1}  # failed runs are always redone
    for folder in (out / "runs").iterdir():
        assert check_run(folder) is None, folder
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        healed = load(out)
    assert len(healed.runs) == 5
    fresh = load(store)  # redone runs give the same numbers
    timing = ["train_time", "compile_time", "wall_time", "group_size"]  # how, not what
    pd.testing.assert_frame_equal(healed.runs.drop(columns=timing),
                                  fresh.runs.drop(columns=timing), check_exact=True)
    pd.testing.assert_frame_equal(healed.history.drop(columns="train_time"),
                                  fresh.history.drop(columns="train_time"), check_exact=True)
    pd.testing.assert_frame_equal(healed.layers, fresh.layers, check_exact=True)


def test_a_flipped_byte_fails_the_checksum_and_a_missing_record_redoes_the_run(store,
                                                                               tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(store, out)
    ids = sorted(p.name for p in (out / "runs").iterdir())
    layers = out / "runs" / ids[0] / "layers.parquet"
    data = bytearray(layers.read_bytes())
    data[len(data) // 2] ^= 0xFF
    layers.write_bytes(bytes(data))
    assert check_run(layers.parent) == "layers.parquet fails its checksum"
    assert check_run(layers.parent, checksums=False) is None
    assert Store(out).status_of(ids[0]) is None
    with pytest.warns(DamagedRunWarning, match=f"{ids[0]} \\(layers.parquet fails its"):
        load(out)
    record = json.loads((out / "runs" / ids[1] / RECORD).read_text())
    (out / "runs" / ids[1] / RECORD).unlink()  # a run stored before records: it loads
    with pytest.warns(DamagedRunWarning) as caught:
        assert ids[1] in set(load(out).runs["run_id"])
    assert len(caught) == 1 and ids[1] not in str(caught[0].message)
    assert Store(out).status_of(ids[1]) is None  # without the lock: no record written
    with Store(out).lock() as locked:  # a sweep's check adopts it: the same record, unlabelled
        assert locked.status_of(ids[1]) == record["status"]
    adopted = json.loads((out / "runs" / ids[1] / RECORD).read_text())
    assert adopted == {k: v for k, v in record.items() if k != "labels"}
    (out / "runs" / ids[2] / RECORD).unlink()  # without a record and a table: redone
    (out / "runs" / ids[2] / "layers.parquet").write_bytes(b"PAR1")
    with Store(out).lock() as locked:
        assert locked.status_of(ids[2]) is None and not (out / "runs" / ids[2] / RECORD).exists()


HOLD = """
import sys, time
from studies.store import Store
store = Store(sys.argv[1])
store.acquire()
print("held", flush=True)
sys.stdin.readline()
store.release()
print("released", flush=True)
time.sleep(60)
"""


def holder(path):
    """A process holding the store's lock until a line arrives on its stdin."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], cwd=ROOT, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_lock_names_its_holder_and_prepare_keeps_its_temporary_folders(tmp_path):
    out = tmp_path / "store"
    proc = holder(out)
    try:
        live = out / "runs" / f"{TMP_PREFIX}inflight-1234"
        live.mkdir(parents=True)
        store = Store(out)
        with pytest.raises(StoreLocked, match=f"pid {proc.pid} on .* since 20"):
            store.prepare()
        assert live.is_dir()  # another sweep's run in flight is left alone
        with pytest.raises(StoreLocked, match=r"waited 0.5 s"):
            store.acquire(wait=0.5)
        assert not store.holds_lock()
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "released"
        store.prepare()  # free now: taken, and the strays of a finished sweep go
        assert not live.exists() and store.holder()["pid"] == os.getpid()
        store.release()
    finally:
        proc.kill()
        proc.wait()


def test_a_dead_holders_lock_is_taken_over(tmp_path):
    out = tmp_path / "store"
    proc = holder(out)
    proc.kill()  # dies holding it: the kernel drops the flock, the file still names it
    proc.wait()
    assert Store(out).holder()["pid"] == proc.pid
    stale = tmp_path / "stale"
    stale.mkdir()
    (stale / ".lock").write_text(json.dumps({"pid": 2 ** 22 + 7, "host": "elsewhere",
                                             "since": "2020-01-01T00:00:00+00:00"}))
    for path in (out, stale):
        store = Store(path)
        with store.lock():
            assert store.holds_lock() and store.holder()["pid"] == os.getpid()
        assert not store.holds_lock()


def test_the_lock_is_reentrant_within_a_process(tmp_path):
    store = Store(tmp_path / "store")
    with store.lock():
        with Store(tmp_path / "store").lock():  # the runner's prepare() inside the CLI's hold
            pass
        assert store.holds_lock()
    assert not store.holds_lock()
    proc = holder(tmp_path / "store")  # released: another process takes it
    proc.kill()
    proc.wait()


def test_studies_load_is_the_store_loader(store):
    same_tables(tables(studies.load(store)), tables(load(store)))
