"""Groups of runs trained together: the runs of a sweep that share an architecture and a
training schedule go through one `kernels.multirun.MultiMLP` (one compiled call per chunk for
the whole group) and are recorded exactly as `studies.run.execute.train_run` records each alone.

    groups = plan_groups(tasks, workers=2)       # lists of tasks with one group_key
    payloads = execute_group([t.config for t in group], labels)   # one payload per run

MultiMLP gives row r of its (R, n_params) buffers to the very step MLP compiles, so parameters,
records and therefore every stored number equal training each run alone, bitwise; only the
timings differ (a run's train_time is its share of each chunk: chunk time / active runs).
Each run keeps its own seeded data order, evaluation, layer statistics and divergence test
(studies.run.execute.RunLog); a run that diverges is frozen in the group and its history ends
where train_run's would, while the others go on.
"""
import json
import time

import numpy as np

from kernels.layout import allocate_record

from studies.config import build_optimizer
from studies.run.execute import RunLog, build_run, dataset_for, execute, payload_of, training_data
from studies.analysis.labels import Thresholds

MAX_GROUP = 16  # runs per group at most
# Keys a run of a group may hold on its own: they set the initial parameters (seed, init), the
# data order (seed), the optimizer and its schedule, and clipping, all of which MultiMLP takes
# per run. Every other key (any new one included) must be equal across the group.
PER_RUN = frozenset({
    "seed", "init", "gain", "init_scale", "sigma_w2", "sigma_b2",
    "optimizer", "lr", "momentum", "beta1", "beta2", "rho", "eps", "eps_inside_sqrt",
    "weight_decay", "schedule", "step_size", "gamma", "decay_k", "eta_min", "warmup",
    "clip", "clip_threshold"})


def group_key(config):
    """What runs must share to train in one group (JSON of every key not in PER_RUN: data,
    architecture, dtype, steps, metrics_every, batch_size, evaluation...); None for a run that
    trains alone (device "cuda")."""
    if config.get("device", "cpu") != "cpu":
        return None
    shared = {k: v for k, v in config.items() if k not in PER_RUN}
    return json.dumps(shared, sort_keys=True, default=str)


def plan_groups(tasks, workers, enabled=True, max_size=MAX_GROUP):
    """The tasks (objects with .config and .labels) as a list of groups (lists of tasks).
    Tasks group by group_key and labels; a key's tasks split into balanced groups of at most
    min(max_size, len(tasks) // workers), so that N workers get at least N groups whenever
    there are N tasks. Groups come largest estimated work first (ties in grid order), so a pool
    ends on small ones; enabled=False: every task alone, in grid order."""
    if not enabled:
        return [[task] for task in tasks]
    cap = max(1, min(max_size, len(tasks) // max(1, workers)))
    by_key, alone = {}, []
    for index, task in enumerate(tasks):
        key = group_key(task.config)
        if key is None:
            alone.append((index, [task]))
        else:
            by_key.setdefault((key, json.dumps(task.labels, sort_keys=True)), []).append(
                (index, task))
    groups = list(alone)
    for members in by_key.values():
        parts = -(-len(members) // cap)
        for chunk in np.array_split(np.arange(len(members)), parts):
            groups.append((members[chunk[0]][0], [members[i][1] for i in chunk]))
    return [group for _, group in sorted(groups, key=lambda g: (-_work(g[1]), g[0]))]


def _work(group):
    """A group's training work, roughly: runs x steps x weights of its hidden layers."""
    config = group[0].config
    return len(group) * config["steps"] * (config["depth"] + 1) * config["width"] ** 2


def _warm_up(net, x, y, batch, config, clip):
    """execute.warm_up for the multi-run kernel: one throwaway step of a one-run MultiMLP (a
    copy), so compilation (or the cache load) is timed apart from training; returns seconds."""
    from kernels.multirun import MultiMLP
    started = time.perf_counter()
    MultiMLP([net], threads=1).run_steps(
        x, y, np.arange(batch, dtype=np.int64)[None], batch, [build_optimizer(config)], [clip],
        [allocate_record(1, net.n_layers)])
    return time.perf_counter() - started


def train_group(configs, labels=None):
    """Trains configurations that share one group_key together, chunk by chunk as train_run
    trains each; returns one (run_row, history, layers) per configuration, equal to train_run's
    except for the timings."""
    from kernels.multirun import MultiMLP
    keys = {group_key(config) for config in configs}
    if len(keys) != 1 or None in keys:
        raise ValueError("configs: a group needs runs of one group_key on the cpu")
    data = dataset_for(configs[0])
    built = [build_run(config, data) for config in configs]
    thresholds = Thresholds.from_dict(labels or {})
    first = configs[0]
    x, y, y_eval, batch = training_data(built[0][0], data, first)
    logs = [RunLog(config, thresholds, data, x, y_eval, batch) for config in configs]
    opts, clips = [b[1] for b in built], [b[2] for b in built]
    multi = MultiMLP([b[0] for b in built], threads=1)
    nets = multi.run_views()
    compile_time = _warm_up(nets[0], x, y, batch, first, clips[0]) / len(configs)
    total, every, step = first["steps"], first["metrics_every"], 0
    active = list(range(len(configs)))
    while active and step <= total:
        measured = {r: logs[r].measure(nets[r]) for r in active}
        if step == total:
            for r in active:
                logs[r].record(step, measured[r], logs[r].final_record(nets[r]), 0, False, 0.0)
            break
        n_steps = min(every, total - step)
        rows = {r: logs[r].order(step, n_steps) for r in active}
        orders = np.stack([rows.get(r, rows[active[0]])  # frozen runs skip theirs
                           for r in range(len(configs))])
        recs = [allocate_record(n_steps, multi.template.n_layers) for _ in configs]
        started = time.perf_counter()
        multi.run_steps(x, y, orders, batch, opts, clips, recs)
        share = (time.perf_counter() - started) / len(active)
        for r in list(active):
            if logs[r].record(step, measured[r], recs[r], n_steps, bool(recs[r].status[0]),
                              share):
                multi.frozen[r] = True
                active.remove(r)
        step += n_steps
    return [log.summarize(net, compile_time) for log, net in zip(logs, nets)]


def execute_group(configs, labels=None):
    """Runs a group of configurations (one group_key) and never raises: one payload per
    configuration, as studies.run.execute.execute returns, with group_size and each run's share of
    the wall time. If the group fails as a whole (one run that cannot be built fails it), every
    run is redone alone through execute, so a failure stays one run's data."""
    from threadpoolctl import threadpool_limits
    if len(configs) == 1:
        return [execute(configs[0], labels)]
    started = time.perf_counter()
    try:
        with threadpool_limits(limits=1):
            payloads = [payload_of(*result) for result in train_group(configs, labels)]
    except Exception:  # the group's error: each run then speaks for itself, alone
        return [execute(config, labels) for config in configs]
    share = (time.perf_counter() - started) / len(configs)
    for payload in payloads:
        payload["run"].update({"wall_time": share, "group_size": len(configs)})
    return payloads

