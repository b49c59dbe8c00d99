"""The results store: results/<study>/ with one folder of Parquet files per run and a manifest.

    results/<study>/manifest.json
    results/<study>/runs/<run_id>/{run,history,layers}.parquet

Each run's files are written into a temporary folder, flushed, then renamed into place, so a
sweep killed at any moment leaves only complete runs (and stray temporary folders that loading
ignores and the next sweep removes). `load(path)` gathers the three tidy tables.
"""
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import uuid
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pandas as pd

TABLES = ("run", "history", "layers")
TMP_PREFIX = ".tmp-"
FINISHED = ("completed", "diverged")


@dataclass
class Results:
    """A study's tables: runs (one row per run), history (run_id, step, ...), layers
    (run_id, step, layer, ...), and the manifest dict."""
    runs: pd.DataFrame
    history: pd.DataFrame
    layers: pd.DataFrame
    manifest: dict
    path: str = ""


class Store:
    """Reads and writes one study's folder."""

    def __init__(self, root):
        self.root = Path(root)
        self.runs_dir = self.root / "runs"

    def prepare(self):
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        for stray in self.runs_dir.glob(TMP_PREFIX + "*"):
            shutil.rmtree(stray, ignore_errors=True)

    def status_of(self, run_id):
        """The stored status of a run, or None when it has no complete record."""
        path = self.runs_dir / run_id / "run.parquet"
        if not path.exists():
            return None
        try:
            return str(pd.read_parquet(path, columns=["status"])["status"].iloc[0])
        except Exception:  # an unreadable record counts as missing and is redone
            return None

    def finished(self, run_ids):
        """The subset of run_ids stored as completed or diverged (failed runs are redone)."""
        return {r for r in run_ids if self.status_of(r) in FINISHED}

    def write_run(self, run_id, run_row, history, layers):
        """Atomically stores one run's three tables."""
        tmp = self.runs_dir / f"{TMP_PREFIX}{run_id}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir(parents=True)
        frames = {"run": pd.DataFrame([run_row]), "history": pd.DataFrame(history),
                  "layers": pd.DataFrame(layers)}
        for name, frame in frames.items():
            if "run_id" not in frame.columns:
                frame.insert(0, "run_id", run_id)
            target = tmp / f"{name}.parquet"
            frame.to_parquet(target, index=False)
            with open(target, "rb") as handle:
                os.fsync(handle.fileno())
        final = self.runs_dir / run_id
        if final.exists():  # a failed run being redone
            old = self.runs_dir / f"{TMP_PREFIX}old-{run_id}-{uuid.uuid4().hex[:8]}"
            os.rename(final, old)
            os.rename(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, final)

    def write_manifest(self, manifest):
        tmp = self.root / f"{TMP_PREFIX}manifest-{uuid.uuid4().hex[:8]}.json"
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
        os.replace(tmp, self.root / "manifest.json")

    def read_manifest(self):
        path = self.root / "manifest.json"
        return json.loads(path.read_text()) if path.exists() else {}


def load(path):
    """A study's Results from its folder (the store is read only)."""
    root = Path(path)
    runs_dir = root / "runs"
    if not runs_dir.is_dir():
        raise FileNotFoundError(f"{path}: no results store here (expected {runs_dir})")
    frames = {name: [] for name in TABLES}
    for folder in sorted(runs_dir.iterdir()):
        if folder.name.startswith(TMP_PREFIX) or not folder.is_dir():
            continue
        for name in TABLES:
            file = folder / f"{name}.parquet"
            if file.exists():
                frame = pd.read_parquet(file)
                if len(frame):
                    frames[name].append(frame)
    tables = {name: pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
              for name, parts in frames.items()}
    manifest = Store(root).read_manifest()
    return Results(runs=tables["run"], history=tables["history"], layers=tables["layers"],
                   manifest=manifest, path=str(root))


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
