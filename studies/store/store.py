"""Store: one study's folder. It writes a part per finished group, tells which runs are stored
intact (status_of, finished), drops folders whose runs all live on in newer ones, and keeps the
manifest."""
import json
import os
import shutil
import uuid
from pathlib import Path

import pyarrow.parquet as pq

from studies.store.files import (FINISHED, PART_FORMAT, PART_PREFIX, RECORD, RECORD_FORMAT,
                                 SEQUENCE_DIGITS, TABLES, TMP_PREFIX, _crc32, check_run,
                                 is_part, part_tables, rank, read_folder, read_record,
                                 record_runs, write_folder)
from studies.store.lock import StoreError, StoreLock


class Store(StoreLock):
    """Reads and writes one study's folder."""

    def __init__(self, root):
        self.root = Path(root)
        self.runs_dir = self.root / "runs"
        self.labels = None  # the label thresholds of the sweep writing runs (write_manifest)

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

    # ------------------------------------------------------------------ reading

    def folders(self):
        """[(folder, problem or None, {run_id: status} or None)] of every part and run folder,
        in rank order; a run folder without a record gets one first when the lock is held
        and its tables read."""
        if not self.runs_dir.is_dir():
            return []
        out = []
        for folder in sorted(self.runs_dir.iterdir(), key=rank):
            if folder.name.startswith(TMP_PREFIX) or not folder.is_dir():
                continue
            if not is_part(folder) and not (folder / RECORD).exists() and self.holds_lock():
                self._adopt(folder)
            problem = check_run(folder)
            out.append((folder, problem, known_runs(folder)))
        return out

    @staticmethod
    def winners(folders):
        """{run_id: (folder, status)} from the intact folders, the highest-ranked one for a
        run that several hold."""
        won = {}
        for folder, problem, runs in folders:  # rank order: later ones win
            if problem is None:
                won.update({run_id: (folder, status) for run_id, status in runs.items()})
        return won

    def status_of(self, run_id):
        """The stored status of a run, or None when no intact folder holds it (redone). A run
        stored before records existed gets one when its three tables read (lock held)."""
        won = self.winners(self.folders()).get(run_id)
        return None if won is None else won[1]

    def finished(self, run_ids):
        """The subset of run_ids stored intact as completed or diverged (failed, damaged or
        partial runs are redone)."""
        won = self.winners(self.folders())
        return {r for r in run_ids if r in won and won[r][1] in FINISHED}

    def _adopt(self, folder):
        """Writes the completion record of a run folder without one whose tables all read."""
        try:
            tables, _ = read_folder(folder)
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

    # ------------------------------------------------------------------ writing

    def _next_sequence(self):
        ranks = [rank(p)[0] for p in self.runs_dir.iterdir() if is_part(p)] \
            if self.runs_dir.is_dir() else []
        return max(ranks, default=-1) + 1

    def write_part(self, entries):
        """Atomically stores runs given as (run_id, run_row, history, layers) as one part:
        history and layers are dicts of column lists or arrays. Returns the part's folder."""
        entries = list(entries)
        if not entries:
            return None
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        name = (f"{PART_PREFIX}{self._next_sequence():0{SEQUENCE_DIGITS}d}-"
                f"{uuid.uuid4().hex[:8]}")
        record = {"format": PART_FORMAT, "run_ids": [e[0] for e in entries],
                  "statuses": [str(e[1].get("status", "")) for e in entries]}
        if self.labels is not None:
            record["labels"] = self.labels
        write_folder(self.runs_dir, name, part_tables(entries), record)
        return self.runs_dir / name

    def write_run(self, run_id, run_row, history, layers):
        """Stores one run as a part of one."""
        return self.write_part([(run_id, run_row, history, layers)])

    def drop_superseded(self):
        """Removes (lock held) the folders, intact or damaged, whose every run an intact
        higher-ranked folder holds: redone failed or damaged runs leave no second copy."""
        if not self.holds_lock():
            return []
        folders = self.folders()
        won = self.winners(folders)
        dropped = []
        for folder, _, runs in folders:
            if runs and all(r in won and won[r][0] != folder for r in runs):
                old = self.runs_dir / f"{TMP_PREFIX}old-{folder.name}-{uuid.uuid4().hex[:8]}"
                os.rename(folder, old)
                shutil.rmtree(old, ignore_errors=True)
                dropped.append(folder.name)
        return dropped

    # ------------------------------------------------------------------ manifest

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


def known_runs(folder):
    """{run_id: status} of a folder from its record; when that is missing or unreadable, a run
    folder's one run, a part's runs from its run table when that reads, else None."""
    runs = record_runs(folder, read_record(folder))
    if runs is not None:
        return runs
    if not is_part(folder):
        return {folder.name: None}
    try:
        ids = pq.read_table(folder / "run.parquet", columns=["run_id"]).column(0).to_pylist()
    except Exception:  # noqa: BLE001 - any unreadable table: its runs are unknown
        return None
    return {str(r): None for r in ids}
