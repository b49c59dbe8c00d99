"""The study runner: expand a spec into runs, skip the finished ones, execute the rest serially,
on local spawn processes or on a Dask cluster, and store each run atomically as it finishes.

Every executor follows one settle-or-retry policy (studies.run.policy): a run that raises is
retried once alone, then stored failed with its error; a group whose worker dies (segfault,
out-of-memory kill) is split into single runs that run alone, so the culprit is found; it has
one more try alone, then is stored failed. Every executor limits BLAS to one thread per run, so
all three give identical numbers. Dask retries a task itself when its worker dies
(`distributed.scheduler.allowed-failures`, default 3) before this policy sees the death.

Runs that share an architecture and a training schedule (studies.run.execute.group_key) are
trained in groups, one multi-run engine per group, with the same stored numbers as alone
(group_runs=False trains each alone); a group that raises inside falls back to its runs alone
in the worker itself. The runs stored from one outcome (a group that came back) are written
together, as one part of the store. Ctrl-C ends a sweep with its finished runs stored; spawned
workers die with the runner, however it ends.
"""
import hashlib
import os
import stat
import sys
import time
from concurrent.futures import FIRST_COMPLETED, wait
from contextlib import contextmanager
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from studies.analysis.labels import Thresholds
from studies.data.datasets import DATASETS, FILE_SUFFIXES
from studies.run.execute import config_json, execute_group
from studies.run.group import plan_groups
from studies.run.policy import Settlement, drive, run_serial
from studies.run.progress import Progress
from studies.run.version import CODE_VERSION
from studies.run.workers import SINGLE_THREAD_ENV, connect, kill_pool, new_pool, worker_count
from studies.store import Store, provenance

__all__ = ["CODE_VERSION", "SINGLE_THREAD_ENV", "Task", "SweepSummary", "plan", "run_study",
           "run_id_of", "dataset_fingerprint", "absolute_dataset", "worker_pool"]
CHUNK = 1 << 20  # dataset files are hashed 1 MiB at a time


@dataclass
class Task:
    run_id: str
    config: dict
    labels: dict
    attempts: int = 0
    isolate: bool = False


@dataclass
class SweepSummary:
    total: int
    skipped: int
    counts: dict = field(default_factory=dict)
    out: str = ""
    wall_time: float = 0.0


def absolute_dataset(config):
    """The configuration with a dataset path made absolute (every executor, wherever its
    workers start, reads the same file); a registered dataset name is left as it is."""
    name = config.get("dataset")
    if not isinstance(name, str) or name in DATASETS:
        return config
    if any(sep in name for sep in {os.sep, os.altsep or os.sep, "/"}) \
            or name.lower().endswith(FILE_SUFFIXES) or os.path.exists(name):
        return {**config, "dataset": os.path.abspath(os.path.expanduser(name))}
    return config


def _file_digest(path, digest):
    """Feeds a regular file to `digest` CHUNK bytes at a time; ValueError for anything else
    (a FIFO or a device would block or never end)."""
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise ValueError(f"dataset: {path} is not a regular file (a FIFO, socket or device); "
                         f"expected a data file or a directory of them")
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)


def dataset_fingerprint(config):
    """What identifies the data of a run: the dataset spec, and a file's (or a directory's
    files') content hash, streamed."""
    name = config["dataset"]
    path = Path(name)
    if not path.exists():
        return name
    digest = hashlib.sha256()
    if path.is_dir():
        for file in sorted(p for p in path.iterdir() if not p.is_dir()):
            digest.update(file.name.encode())
            _file_digest(file, digest)
    else:
        _file_digest(path, digest)
    return digest.hexdigest()[:16]


def run_id_of(config, labels=None):
    """Content hash of the resolved configuration, its data, the code version and the
    divergence factor of `labels` (it stops training early, so it decides stored numbers; the
    other thresholds only relabel stored runs)."""
    factor = Thresholds.from_dict(labels or {}).divergence_factor
    text = "\n".join([config_json(config), dataset_fingerprint(config), CODE_VERSION,
                      f"divergence_factor={factor!r}"])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def plan(spec, scale, overrides=None):
    """The tasks of a spec at a scale, in grid order; `overrides` replace configuration keys
    of every run (e.g. {"device": "cuda"})."""
    from studies.config import check_value
    overrides = {k: check_value(k, v, "overrides") for k, v in (overrides or {}).items()}
    tasks, seen = [], set()
    for config in spec.grid(scale):
        config = absolute_dataset({**config, **overrides})
        run_id = run_id_of(config, spec.labels)
        if run_id not in seen:
            seen.add(run_id)
            tasks.append(Task(run_id, config, dict(spec.labels)))
    return tasks


def default_out(spec):
    return Path("results") / spec.name


def run_study(spec, scale="quick", out=None, workers=None, scheduler=None, show_progress=True,
              stream=None, overrides=None, group_runs=True, pool=None):
    """Runs every unfinished run of `spec` at `scale`; returns a SweepSummary.

    workers: 0 runs serially in this process; N >= 1 uses N spawned processes (default: one
    per core; at most 4 per core and one per pending group). scheduler: a Dask scheduler
    address ('tcp://host:port') or a distributed.Client. group_runs: train runs that share an
    architecture and schedule together (same numbers; False: every run alone). pool: a
    ProcessExecutor of `worker_pool` shared by several sweeps (it stays open; `workers` then
    only names the executor in the manifest).
    """
    started = time.perf_counter()
    store = Store(out or default_out(spec))
    store.acquire()  # one writer per store for the whole sweep
    try:
        return _sweep(spec, scale, store, started, workers, scheduler, show_progress, stream,
                      overrides, group_runs, pool)
    finally:
        store.release()


def _sweep(spec, scale, store, started, workers, scheduler, show_progress, stream, overrides,
           group_runs, pool=None):
    store.prepare()
    tasks = plan(spec, scale, overrides)
    done = store.finished([t.run_id for t in tasks])
    pending = [t for t in tasks if t.run_id not in done]
    client = connect(scheduler) if isinstance(scheduler, str) and pending else scheduler
    manifest = {"study": spec.name, "description": spec.description, "spec_path": spec.path,
                "spec": spec.raw, "scale": scale, "code_version": CODE_VERSION,
                "grid": [{"run_id": t.run_id, "config": t.config} for t in tasks],
                "started": datetime.now(timezone.utc).isoformat(), "finished": None,
                "executor": _executor_name(workers, scheduler, pool),
                "group_runs": bool(group_runs), **provenance()}
    store.write_manifest(manifest)
    progress = Progress(len(tasks), len(tasks) - len(pending), show_progress, stream)
    counts = {}

    def row(task, payload):
        run = dict(payload["run"])
        run.setdefault("group_size", 1)  # a crashed run's payload is made here
        run.update({"run_id": task.run_id, "study": spec.name, "scale": scale,
                    "attempts": task.attempts + 1, **task.config})
        return task.run_id, run, payload["history"], payload["layers"]

    def write(entries):
        store.write_part(entries)
        for _, run, _, _ in entries:
            counts[run["status"]] = counts.get(run["status"], 0) + 1
            progress.update(run["status"])

    batch = Batch(row, write)
    try:
        if pending:
            manifest["executor"] = _execute(pending, workers, client, batch, group_runs,
                                            pool) or manifest["executor"]
    finally:
        batch.flush()  # what an interrupted outcome had gathered
        progress.close()
        if client is not scheduler:
            client.close()
        store.drop_superseded()
    manifest["finished"] = datetime.now(timezone.utc).isoformat()
    manifest["counts"] = counts
    store.write_manifest(manifest)
    return SweepSummary(len(tasks), len(tasks) - len(pending), counts, str(store.root),
                        time.perf_counter() - started)


class Batch:
    """The runs a settlement stores from one outcome (a group that came back, a worker that
    died), gathered by record(task, payload) and written together as one part by flush()."""

    def __init__(self, row, write):
        self.row, self.write, self.entries = row, write, []

    def __call__(self, task, payload):
        self.entries.append(self.row(task, payload))

    def flush(self):
        entries, self.entries = self.entries, []
        if entries:
            self.write(entries)


class BatchSettlement(Settlement):
    """The settle-or-retry policy with each outcome's stored runs written as one part."""

    def finished(self, group, payloads):
        super().finished(group, payloads)
        self.record.flush()

    def crashed(self, group):
        super().crashed(group)
        self.record.flush()


def _execute(pending, workers, client, record, group_runs, pool=None):
    """Runs the pending tasks; returns the executor's name as the manifest records it (the
    worker count actually used), None on a Dask cluster (its name is the address)."""
    if pool is not None and client is None:  # a shared pool: its owner closes it
        drive(BatchSettlement(plan_groups(pending, pool.workers, group_runs), record), pool)
        return _executor_name(pool.workers, None, pool)
    if client is not None:
        executor = DaskExecutor(client)
        groups = plan_groups(pending, executor.capacity // 2, group_runs)
    elif workers == 0:
        run_serial(BatchSettlement(plan_groups(pending, 1, group_runs), record), _work)
        return _executor_name(0, None)
    else:
        count, _ = worker_count(workers, len(pending))
        groups = plan_groups(pending, count, group_runs)
        count, note = worker_count(workers, len(groups))
        if note:
            print(note, file=sys.stderr)
        executor = ProcessExecutor(count)
    interrupted = True
    try:
        drive(BatchSettlement(groups, record), executor)
        interrupted = False
    finally:
        executor.close(interrupted)
    return None if client is not None else _executor_name(executor.workers, None)


def _executor_name(workers, scheduler, pool=None):
    """'serial', 'processes:N' (N workers; 'processes:N shared' for a pool of several sweeps)
    or 'dask:ADDRESS'."""
    if scheduler is not None:
        return f"dask:{scheduler if isinstance(scheduler, str) else 'client'}"
    if pool is not None:
        return f"processes:{pool.workers} shared"
    return "serial" if workers == 0 else f"processes:{workers or os.cpu_count()}"


def _arguments(group):
    """execute_group's arguments for a group of tasks (they share their labels)."""
    return [task.config for task in group], group[0].labels


def _work(group):
    return execute_group(*_arguments(group))


def _new_pool(workers):
    return new_pool(workers)


@contextmanager
def worker_pool(workers=None):
    """A ProcessExecutor for several sweeps in a row (run_study(..., pool=...)), so worker
    processes start, import and load their compiled kernels once: `workers` spawned processes
    (default one per core, capped as worker_count caps them); killed if the block raises."""
    count, _ = worker_count(workers, sys.maxsize)
    executor = ProcessExecutor(count)
    interrupted = True
    try:
        yield executor
        interrupted = False
    finally:
        executor.close(interrupted)


class ProcessExecutor:
    """Groups on a pool of spawned worker processes; a pool broken by a dying worker is
    replaced before the next submission."""

    def __init__(self, workers):
        self.capacity = 2 * workers
        self.workers = workers
        self.pool, self.broken = _new_pool(workers), False

    def submit(self, group):
        if self.broken:
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool, self.broken = _new_pool(self.workers), False
        return self.pool.submit(execute_group, *_arguments(group))

    @staticmethod
    def wait(futures):
        return wait(futures, return_when=FIRST_COMPLETED)[0]

    def result(self, future):
        try:
            return future.result()
        except BrokenProcessPool:
            self.broken = True
            raise

    def close(self, interrupted):
        if interrupted:
            kill_pool(self.pool)
        else:
            self.pool.shutdown(wait=True, cancel_futures=True)


class DaskExecutor:
    """Groups as tasks of a distributed.Client (one key per submission)."""

    def __init__(self, client):
        self.client = client
        self.capacity = 2 * max(1, sum(client.nthreads().values()))
        self.submitted = 0

    def submit(self, group):
        self.submitted += 1
        key = f"gradlab-{group[0].run_id}-{len(group)}-{self.submitted}"
        return self.client.submit(execute_group, *_arguments(group), pure=False, key=key)

    @staticmethod
    def wait(futures):
        from distributed import wait as dask_wait
        return dask_wait(futures, return_when="FIRST_COMPLETED").done

    @staticmethod
    def result(future):
        return future.result()

    def close(self, interrupted):
        """Nothing to end: tasks whose futures are dropped are released by the scheduler."""
