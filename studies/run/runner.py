"""The study runner: expand a spec into runs, skip the finished ones, execute the rest serially,
on local spawn processes or on a Dask cluster, and store each run atomically as it finishes.

A run that raises is retried once, then stored as failed with its error. A worker that dies
(segfault, out-of-memory kill) breaks the process pool: the runs that were in flight are redone
one at a time in a fresh pool, so the culprit is found; it is retried once alone, then stored as
failed. Every executor limits BLAS to one thread per run, so all three give identical numbers.

Runs that share an architecture and a training schedule (studies.run.group.group_key) are
trained in groups, one MultiMLP per group, with the same stored numbers as alone (group_runs=
False trains each alone). A group whose worker dies is split into single runs, which then take
the path above; a group that raises inside falls back to its runs alone in the worker itself.
"""
import hashlib
import os
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import datetime, timezone
from multiprocessing import get_context
from pathlib import Path

from kernels._jit import _source_hash

from studies.run.execute import config_json, execute
from studies.run.group import execute_group, plan_groups
from studies.run.progress import Progress
from studies.store import Store, provenance

SINGLE_THREAD_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                     "NUMBA_NUM_THREADS": "1"}
CODE_VERSION = f"gradlab-0.1.0-kernels-{_source_hash()}"


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


def dataset_fingerprint(config):
    """What identifies the data of a run: the dataset spec, and a file's content hash."""
    name = config["dataset"]
    path = Path(name)
    if path.exists() and path.is_file():
        return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    if path.is_dir():
        digest = hashlib.sha256()
        for file in sorted(p for p in path.iterdir() if p.is_file()):
            digest.update(file.name.encode() + file.read_bytes())
        return digest.hexdigest()[:16]
    return name


def run_id_of(config):
    """Content hash of the resolved configuration, its data and the code version."""
    text = "\n".join([config_json(config), dataset_fingerprint(config), CODE_VERSION])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def plan(spec, scale, overrides=None):
    """The tasks of a spec at a scale, in grid order; `overrides` replace configuration keys
    of every run (e.g. {"device": "cuda"})."""
    from studies.config import check_value
    overrides = {k: check_value(k, v, "overrides") for k, v in (overrides or {}).items()}
    tasks, seen = [], set()
    for config in spec.grid(scale):
        config = {**config, **overrides}
        run_id = run_id_of(config)
        if run_id not in seen:
            seen.add(run_id)
            tasks.append(Task(run_id, config, dict(spec.labels)))
    return tasks


def default_out(spec):
    return Path("results") / spec.name


def run_study(spec, scale="quick", out=None, workers=None, scheduler=None, show_progress=True,
              stream=None, overrides=None, group_runs=True):
    """Runs every unfinished run of `spec` at `scale`; returns a SweepSummary.

    workers: 0 runs serially in this process; N >= 1 uses N spawned processes (default: one
    per core). scheduler: a Dask scheduler address ('tcp://host:port') or a distributed.Client.
    group_runs: train runs that share an architecture and schedule together (same numbers;
    False: every run alone).
    """
    started = time.perf_counter()
    store = Store(out or default_out(spec))
    store.prepare()
    tasks = plan(spec, scale, overrides)
    done = store.finished([t.run_id for t in tasks])
    pending = [t for t in tasks if t.run_id not in done]
    manifest = {"study": spec.name, "description": spec.description, "spec_path": spec.path,
                "spec": spec.raw, "scale": scale, "code_version": CODE_VERSION,
                "grid": [{"run_id": t.run_id, "config": t.config} for t in tasks],
                "started": datetime.now(timezone.utc).isoformat(), "finished": None,
                "executor": _executor_name(workers, scheduler),
                "group_runs": bool(group_runs), **provenance()}
    store.write_manifest(manifest)
    progress = Progress(len(tasks), len(tasks) - len(pending), show_progress, stream)
    counts = {}

    def record(task, payload):
        run = dict(payload["run"])
        run.setdefault("group_size", 1)  # a crashed run's payload is made here
        run.update({"run_id": task.run_id, "study": spec.name, "scale": scale,
                    "attempts": task.attempts + 1, **task.config})
        store.write_run(task.run_id, run, payload["history"], payload["layers"])
        counts[run["status"]] = counts.get(run["status"], 0) + 1
        progress.update(run["status"])

    if pending:
        if scheduler is not None:
            _run_dask(pending, scheduler, record, group_runs)
        elif workers == 0:
            _run_serial(plan_groups(pending, 1, group_runs), record)
        else:
            workers = workers or os.cpu_count() or 1
            _run_processes(plan_groups(pending, workers, group_runs), workers, record)
    progress.close()
    manifest["finished"] = datetime.now(timezone.utc).isoformat()
    manifest["counts"] = counts
    store.write_manifest(manifest)
    return SweepSummary(len(tasks), len(tasks) - len(pending), counts, str(store.root),
                        time.perf_counter() - started)


def _executor_name(workers, scheduler):
    if scheduler is not None:
        return f"dask:{scheduler if isinstance(scheduler, str) else 'client'}"
    return "serial" if workers == 0 else f"processes:{workers or os.cpu_count()}"


def _failed(error):
    return {"run": {"status": "failed", "error": error}, "history": {}, "layers": {}}


def _arguments(group):
    """execute_group's arguments for a group of tasks (they share their labels)."""
    return [task.config for task in group], group[0].labels


def _run_serial(groups, record):
    for group in groups:
        for task, payload in zip(group, execute_group(*_arguments(group))):
            if payload["run"]["status"] == "failed":
                task.attempts += 1
                payload = execute(task.config, task.labels)
            record(task, payload)


def _new_pool(workers):
    os.environ.update(SINGLE_THREAD_ENV)  # inherited by the spawned workers
    return ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"))


def _run_processes(groups, workers, record):
    queue = deque(groups)
    pool = _new_pool(workers)
    in_flight = {}
    try:
        while queue or in_flight:
            while queue and len(in_flight) < 2 * workers:
                if queue[0][0].isolate and in_flight:
                    break  # a suspect of a crash runs alone
                group = queue.popleft()
                in_flight[pool.submit(execute_group, *_arguments(group))] = group
                if group[0].isolate:
                    break
            finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            broken = False
            for future in finished:
                group = in_flight.pop(future)
                try:
                    payloads = future.result()
                except BrokenProcessPool:
                    broken = True
                    _crashed(group, queue, record, "worker process died (crash or killed)")
                    continue
                for task, payload in zip(group, payloads):
                    _finished(task, payload, queue, record)
            if broken:
                for future, group in list(in_flight.items()):
                    _crashed(group, queue, record, "worker process died (crash or killed)")
                in_flight.clear()
                pool.shutdown(wait=False, cancel_futures=True)
                pool = _new_pool(workers)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _crashed(group, queue, record, error):
    """A crash in a shared pool makes each run of the group a suspect, to run alone next; a
    crash alone counts as an attempt."""
    for task in reversed(group):
        if task.isolate:  # it ran alone (suspects never share a group)
            task.attempts += 1
            if task.attempts >= 2:
                record(task, _failed(f"{error}; retried once alone, crashed again"))
                continue
        task.isolate = True
        queue.appendleft([task])


def _finished(task, payload, queue, record):
    if payload["run"]["status"] == "failed" and task.attempts == 0:
        task.attempts += 1
        queue.append([task])
        return
    record(task, payload)


def _run_dask(tasks, scheduler, record, group_runs=True):
    from distributed import Client, as_completed
    client = scheduler if isinstance(scheduler, Client) else Client(scheduler, timeout="20s")
    try:
        futures = {}

        def submit(group):
            first = group[0]
            key = f"run-{first.run_id}-{first.attempts}" if len(group) == 1 else \
                f"group-{first.run_id}-{len(group)}"
            future = client.submit(execute_group, *_arguments(group), pure=False, key=key)
            futures[future] = group
            return future

        workers = sum(client.nthreads().values()) or 1
        for group in plan_groups(tasks, workers, group_runs):
            submit(group)
        pending = as_completed(list(futures))
        for future in pending:
            group = futures.pop(future)
            try:
                payloads = future.result()
            except Exception as err:  # KilledWorker and friends: the worker died
                if len(group) > 1:  # a group's runs go on alone, as single runs
                    for task in group:
                        pending.add(submit([task]))
                    continue
                payloads = [_failed(f"worker died: {type(err).__name__}: {err}")]
            for task, payload in zip(group, payloads):
                if payload["run"]["status"] == "failed" and task.attempts == 0:
                    task.attempts += 1
                    pending.add(submit([task]))
                    continue
                record(task, payload)
    finally:
        if not isinstance(scheduler, Client):
            client.close()
