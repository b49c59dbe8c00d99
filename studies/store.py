"""The results store: results/<study>/ with one folder of Parquet files per run and a manifest.

    results/<study>/manifest.json        the latest sweep: spec, grid, provenance, counts
    results/<study>/.lock                the sweep writing the store: {"pid", "host", "since"}
    results/<study>/runs/<run_id>/{run,history,layers}.parquet
    results/<study>/runs/<run_id>/complete.json   {"format": 1, "status": ..., "files":
                                         {"run.parquet": {"size": bytes, "crc32": "8 hex"}, ...}}

Each run's tables are written into a temporary folder and flushed, then its completion record
(complete.json, written last) lists every file's size and CRC-32; the folder is then renamed
into place. A run counts as stored only when its record is there and every file matches it, so
a truncated, emptied or deleted table makes the run unfinished (redone by the next sweep) and
`load` skips it with one warning. Folders without a record (written before records existed)
load when all three tables read, and a sweep gives them a record then (else redoes them).

One sweep writes a store at a time: `Store.lock()` holds an exclusive flock on `.lock` (the
kernel drops it when its process dies, so a stale lock is taken over), and `prepare()` takes it
before removing temporary folders.
"""
import errno
import fcntl
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
import uuid
import warnings
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from studies.analysis.labels import LABELS

TABLES = ("run", "history", "layers")
TMP_PREFIX = ".tmp-"
FINISHED = ("completed", "diverged")
RECORD = "complete.json"
LOCK = ".lock"
RECORD_FORMAT = 1
FIRST_LABELS = LABELS  # first_<label> columns, one per label
_HELD = {}  # lock path -> [fd, depth]: this process's locks (re-entrant)


class StoreError(ValueError):
    """A results store that cannot be used as asked; the message names the folder."""


class StoreLocked(StoreError):
    """Another live sweep holds the store's lock."""


class DamagedRunWarning(UserWarning):
    """Runs skipped by `load` because a table is missing, truncated or fails its checksum."""


@dataclass
class Results:
    """A study's tables: runs (one row per run), history (run_id, step, ...), layers
    (run_id, step, layer, ...), and the manifest dict."""
    runs: pd.DataFrame
    history: pd.DataFrame
    layers: pd.DataFrame
    manifest: dict
    path: str = ""


def _crc32(data):
    return f"{zlib.crc32(data) & 0xFFFFFFFF:08x}"


def _fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_record(folder):
    """A run folder's completion record (dict), or None when it has none or it is unreadable."""
    try:
        record = json.loads((Path(folder) / RECORD).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("files"), dict) \
        else None


def check_run(folder, checksums=True):
    """None when the run folder matches its completion record, else what is wrong (one
    phrase). checksums=False compares sizes only."""
    folder = Path(folder)
    if not (folder / RECORD).exists():
        return f"no {RECORD}"
    record = read_record(folder)
    if record is None:
        return f"{RECORD} is unreadable"
    for name in TABLES:
        entry = record["files"].get(f"{name}.parquet")
        file = folder / f"{name}.parquet"
        if not isinstance(entry, dict):
            return f"{RECORD} does not list {file.name}"
        try:
            size = file.stat().st_size
        except OSError:
            return f"{file.name} is missing"
        if size != entry.get("size"):
            return f"{file.name} has {size} bytes, expected {entry.get('size')}"
        if checksums and _crc32(file.read_bytes()) != entry.get("crc32"):
            return f"{file.name} fails its checksum"
    return None


class Store:
    """Reads and writes one study's folder."""

    def __init__(self, root):
        self.root = Path(root)
        self.runs_dir = self.root / "runs"
        self.labels = None  # the label thresholds of the sweep writing runs (write_manifest)

    # ------------------------------------------------------------------ lock

    @property
    def lock_path(self):
        return self.root / LOCK

    def _key(self):
        return os.path.realpath(self.lock_path)

    def holds_lock(self):
        """True when this process holds the store's lock (a hold on a lock file since
        deleted or replaced no longer counts)."""
        key = self._key()
        held = _HELD.get(key)
        if held is None:
            return False
        try:
            same = os.fstat(held[0]).st_ino == os.stat(key).st_ino
        except OSError:
            same = False
        if not same:
            del _HELD[key]
            os.close(held[0])
        return same

    def holder(self):
        """The lock file's {"pid", "host", "since"} (the last sweep that took it), or {}."""
        try:
            info = json.loads(self.lock_path.read_text() or "{}")
        except (OSError, ValueError):
            return {}
        return info if isinstance(info, dict) else {}

    def acquire(self, wait=0.0):
        """Takes the store's lock (re-entrant within a process), waiting up to `wait` seconds
        for another sweep to finish; raises StoreLocked naming the holder."""
        key = self._key()
        if self.holds_lock():
            _HELD[key][1] += 1
            return
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise StoreError(f"{self.root}: cannot write a results store here: "
                             f"{err.strerror or err}") from None
        deadline = time.monotonic() + max(0.0, float(wait))
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as err:
                if err.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    os.close(fd)
                    raise StoreError(f"{self.root}: cannot lock {LOCK}: {err.strerror}") \
                        from None
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise StoreLocked(self._locked_message(wait)) from None
                time.sleep(0.2)
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        _HELD[key] = [fd, 1]

    def _locked_message(self, wait):
        info = self.holder()
        who = (f"pid {info.get('pid', '?')} on {info.get('host', '?')} since "
               f"{info.get('since', '?')}")
        waited = f" (waited {float(wait):g} s)" if wait else ""
        return (f"{self.root}: another sweep is writing this store ({who}){waited}; let it "
                f"finish, or wait for it with --wait SECONDS")

    def release(self):
        """Gives back one hold of the lock; the last one unlocks it."""
        key = self._key()
        held = _HELD.get(key)
        if held is None:
            return
        held[1] -= 1
        if held[1] <= 0:
            del _HELD[key]
            fcntl.flock(held[0], fcntl.LOCK_UN)
            os.close(held[0])

    @contextmanager
    def lock(self, wait=0.0):
        """`with store.lock(): ...` holds the store's lock for the block."""
        self.acquire(wait)
        try:
            yield self
        finally:
            self.release()

    # ------------------------------------------------------------------ runs

    def prepare(self):
        """Takes the lock (kept until release() or this process ends, unless already held),
        then removes the temporary folders a killed sweep left."""
        if not self.holds_lock():
            self.acquire()
        try:
            self.runs_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise StoreError(f"{self.runs_dir}: cannot create the runs folder: "
                             f"{err.strerror or err}") from None
        for stray in self.runs_dir.glob(TMP_PREFIX + "*"):
            shutil.rmtree(stray, ignore_errors=True)

    def status_of(self, run_id):
        """The stored status of a run, or None when it has no intact record (redone). A run
        stored before records existed gets one when its three tables read (lock held)."""
        folder = self.runs_dir / run_id
        if not (folder / RECORD).exists() and folder.is_dir() and self.holds_lock():
            self._adopt(folder)
        if check_run(folder) is not None:
            return None
        status = read_record(folder).get("status")
        return str(status) if status is not None else None

    def _adopt(self, folder):
        """Writes the completion record of a run folder without one whose tables all read."""
        try:
            tables, _ = _read_run(folder)
            status = tables["run"].column("status")[0].as_py()
        except (ValueError, KeyError, IndexError):
            return  # damaged or partial: redone
        files = {}
        for name in TABLES:
            data = (folder / f"{name}.parquet").read_bytes()
            files[f"{name}.parquet"] = {"size": len(data), "crc32": _crc32(data)}
        tmp = folder / f"{TMP_PREFIX}{RECORD}"
        tmp.write_text(json.dumps({"format": RECORD_FORMAT, "run_id": folder.name,
                                   "status": str(status), "files": files}, indent=1))
        os.replace(tmp, folder / RECORD)

    def finished(self, run_ids):
        """The subset of run_ids stored intact as completed or diverged (failed, damaged or
        partial runs are redone)."""
        return {r for r in run_ids if self.status_of(r) in FINISHED}

    def write_run(self, run_id, run_row, history, layers):
        """Atomically stores one run's three tables and, last, their completion record."""
        tmp = self.runs_dir / f"{TMP_PREFIX}{run_id}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir(parents=True)
        frames = {"run": pd.DataFrame([run_row]), "history": pd.DataFrame(history),
                  "layers": pd.DataFrame(layers)}
        files = {}
        for name, frame in frames.items():
            if "run_id" not in frame.columns:
                frame.insert(0, "run_id", run_id)
            target = tmp / f"{name}.parquet"
            frame.to_parquet(target, index=False)
            with open(target, "rb") as handle:
                data = handle.read()
                os.fsync(handle.fileno())
            files[target.name] = {"size": len(data), "crc32": _crc32(data)}
        record = {"format": RECORD_FORMAT, "run_id": run_id,
                  "status": str(run_row.get("status", "")), "files": files}
        if self.labels is not None:
            record["labels"] = self.labels
        with open(tmp / RECORD, "w") as handle:
            handle.write(json.dumps(record, indent=1, sort_keys=True))
            handle.flush()
            os.fsync(handle.fileno())
        _fsync_dir(tmp)
        final = self.runs_dir / run_id
        if final.exists():  # a failed or damaged run being redone
            old = self.runs_dir / f"{TMP_PREFIX}old-{run_id}-{uuid.uuid4().hex[:8]}"
            os.rename(final, old)
            os.rename(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, final)
        _fsync_dir(self.runs_dir)

    def write_manifest(self, manifest):
        """Writes manifest.json. The sweep's runs are labelled under its spec's [labels]
        (manifest["spec"]["labels"]), so the runs written after it record those thresholds
        and `load` relabels only runs stored under other ones."""
        spec = manifest.get("spec")
        if isinstance(spec, dict) and isinstance(spec.get("labels", {}), dict):
            self.labels = dict(spec.get("labels") or {})
        tmp = self.root / f"{TMP_PREFIX}manifest-{uuid.uuid4().hex[:8]}.json"
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
        os.replace(tmp, self.root / "manifest.json")

    def read_manifest(self):
        path = self.root / "manifest.json"
        if not path.exists():
            return {}
        try:
            manifest = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise StoreError(f"{path}: unreadable manifest ({err}); rerun the study to "
                             f"rewrite it") from None
        return manifest if isinstance(manifest, dict) else {}


def _read_run(folder):
    """({table: pyarrow.Table}, record or None) of one run folder, verified against its record
    (a folder without one must read cleanly); raises ValueError naming what is wrong."""
    has_record = (folder / RECORD).exists()
    record = read_record(folder) if has_record else None
    if has_record and record is None:
        raise ValueError(f"{RECORD} is unreadable")
    tables = {}
    for name in TABLES:
        file = folder / f"{name}.parquet"
        try:
            data = file.read_bytes()
        except OSError:
            raise ValueError(f"{file.name} is missing") from None
        if record is not None:
            entry = record["files"].get(file.name) or {}
            if len(data) != entry.get("size"):
                raise ValueError(f"{file.name} has {len(data)} bytes, expected "
                                 f"{entry.get('size')}")
            if _crc32(data) != entry.get("crc32"):
                raise ValueError(f"{file.name} fails its checksum")
        try:
            tables[name] = pq.ParquetFile(pa.BufferReader(data)).read(use_threads=False)
        except (pa.ArrowException, OSError) as err:
            raise ValueError(f"{file.name} does not read: {err}") from None
    return tables, record


def _labelled_under(record, thresholds):
    """True when a run's record says it was labelled under these thresholds."""
    from studies.analysis.labels import Thresholds
    if record is None or not isinstance(record.get("labels"), dict):
        return False
    try:
        return Thresholds.from_dict(record["labels"]) == thresholds
    except (TypeError, ValueError):
        return False


def _set_column(table, name, values):
    """table with column `name` replaced by values (its stored type kept) or appended."""
    i = table.schema.get_field_index(name)
    if i < 0:
        return table.append_column(name, pa.array(values))
    field = table.schema.field(i)
    return table.set_column(i, field, pa.array(values).cast(field.type))


def relabel_run(tables, thresholds):
    """One run's {table: pyarrow.Table} with the labels the runner would store under
    `thresholds`: the run's labels and first_<label> from label_run(history, layers), and
    each layer row's layer_labels ('label@first_step,...'). Failed runs are left as they are."""
    from studies.analysis.labels import format_labels, label_run
    run, history = tables["run"], tables["history"]
    if run.num_rows != 1 or "status" not in run.column_names or not history.num_rows or \
            run.column("status")[0].as_py() not in FINISHED:
        return tables
    layers = tables["layers"]
    lay = layers.drop_columns([c for c in ("layer_labels",) if c in layers.column_names])
    run_labels, per_layer = label_run(history.to_pandas(), lay.to_pandas(), thresholds)
    run = _set_column(run, "labels", [format_labels(run_labels)])
    for label in FIRST_LABELS:
        run = _set_column(run, f"first_{label}", [int(run_labels.get(label, -1))])
    text = {}
    for row in per_layer.itertuples():
        text.setdefault(int(row.layer), []).append(f"{row.label}@{int(row.first_step)}")
    if "layer" in layers.column_names:
        values = [",".join(text[k]) if k in text else None
                  for k in layers.column("layer").to_pylist()]
        layers = _set_column(layers, "layer_labels", pa.array(values, pa.string()))
    return {**tables, "run": run, "layers": layers}


def _concat(tables):
    """One DataFrame of the non-empty tables in order, equal to concatenating their pandas
    frames (pd.concat, ignore_index): tables of one schema are joined in Arrow and converted
    once; several schemas are converted per schema, joined, and put back in order."""
    tables = [t for t in tables if t.num_rows]
    if not tables:
        return pd.DataFrame()
    groups = {}  # schema (without metadata) -> indices, in order of first appearance
    for i, table in enumerate(tables):
        groups.setdefault(table.schema.remove_metadata(), []).append(i)
    frames = [pa.concat_tables([tables[i] for i in members]).to_pandas()
              for members in groups.values()]
    if len(frames) == 1:
        return frames[0]
    starts = np.cumsum([0] + [t.num_rows for t in tables])
    positions = np.concatenate([np.arange(starts[i], starts[i + 1]) for members in
                                groups.values() for i in members])
    joined = pd.concat(frames, ignore_index=True)
    joined.index = positions
    return joined.sort_index().reset_index(drop=True)


def load(path, thresholds=None):
    """A study's Results from its folder (the store is read only). A damaged run (a table
    missing, truncated or failing its checksum) is left out with one DamagedRunWarning naming
    it. thresholds: label thresholds (a dict of studies.analysis.labels.Thresholds keys, or a
    Thresholds); given, the labels, first_* and layer_labels of each run stored under other
    thresholds are recomputed from its stored history and layers, as the runner computes
    them (relabel_run)."""
    root = Path(path)
    runs_dir = root / "runs"
    if not runs_dir.is_dir():
        raise FileNotFoundError(f"{path}: no results store here (expected {runs_dir})")
    parts = {name: [] for name in TABLES}
    damaged = []
    if thresholds is not None:
        from studies.analysis.labels import Thresholds
        if not isinstance(thresholds, Thresholds):
            thresholds = Thresholds.from_dict(thresholds)
    for folder in sorted(runs_dir.iterdir()):
        if folder.name.startswith(TMP_PREFIX) or not folder.is_dir():
            continue
        try:
            tables, record = _read_run(folder)
        except ValueError as err:
            damaged.append(f"{folder.name} ({err})")
            continue
        if thresholds is not None and not _labelled_under(record, thresholds):
            tables = relabel_run(tables, thresholds)
        for name in TABLES:
            parts[name].append(tables[name])
    if damaged:
        shown = "; ".join(damaged[:5]) + (f"; and {len(damaged) - 5} more"
                                          if len(damaged) > 5 else "")
        warnings.warn(f"{root}: skipped {len(damaged)} damaged run(s): {shown}; the next "
                      f"sweep of this store redoes them", DamagedRunWarning, stacklevel=2)
    frames = {name: _concat(tables) for name, tables in parts.items()}
    return Results(runs=frames["run"], history=frames["history"], layers=frames["layers"],
                   manifest=Store(root).read_manifest(), path=str(root))


def load_labelled(path, spec=None):
    """load(path) with labels under the thresholds of `spec` (a StudySpec), else of the spec
    the store was made from as its file reads now (studies.spec.store_thresholds); the
    manifest's spec then records those thresholds."""
    from studies.spec import store_thresholds
    manifest = Store(path).read_manifest()
    thresholds = dict(spec.labels) if spec is not None else store_thresholds(manifest)
    results = load(path, thresholds=thresholds)
    if isinstance(results.manifest.get("spec"), dict):
        results.manifest["spec"] = {**results.manifest["spec"], "labels": thresholds}
    return results


def provenance():
    """Versions, git commit and machine for a manifest."""
    versions = {}
    for package in ("numpy", "numba", "scipy", "pandas", "pyarrow", "mnist1d", "scikit-learn",
                    "dask", "distributed", "torch", "jax"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {"python": sys.version.split()[0], "versions": versions, "git_commit": commit,
            "machine": {"host": socket.gethostname(), "platform": platform.platform(),
                        "processor": platform.machine(), "cpus": os.cpu_count()}}
