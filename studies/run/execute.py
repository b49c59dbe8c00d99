"""The chunk driver: every run is trained here, a single run as a group of one. A group is the
runs of a sweep that share one architecture and training schedule (studies.run.group); they
train in one multi-run engine, kernels.multirun.MultiMLP on the CPU or the CUDA engine
(studies.run.device.DeviceEngine), in compiled chunks of `metrics_every` steps, each run with
its own seeded data order, metrics and divergence test (studies.run.record.RunLog).

    payloads = execute_group([t.config for t in group], labels)   # one payload per run
    run, history, layers = train_run(config)                       # train_group([config])[0]

MultiMLP gives row r of its (R, n_params) buffers to the very step MLP compiles, so every stored
number equals training each run alone, bitwise; only the timings differ (a run's train_time is
its share of each chunk: chunk time / active runs). A run that diverges is frozen in its group
and its history ends there, while the others go on.
"""
import functools
import json
import time

import numpy as np
import scipy.linalg  # noqa: F401  loads the BLAS the kernels call, so threadpool_limits sees it

from kernels.layout import allocate_record

from studies.config import PER_RUN_KEYS, build_clip, build_network, build_optimizer
from studies.data.datasets import load_dataset
from studies.analysis.labels import Thresholds
from studies.run.record import RunLog, chunk_order, evaluate, failed_payload, payload_of, \
    targets_of

__all__ = ["chunk_order", "evaluate", "dataset_for", "build_run", "training_data", "group_key",
           "build_engine", "warm_up", "measuring", "same_bits", "measure_runs",
           "train_group", "train_run", "execute_group",
           "execute", "config_json"]


def group_key(config):
    """What runs must share to train in one group (JSON of every key not in PER_RUN_KEYS, the
    `per_run` keys of studies.config.FIELDS, which MultiMLP takes per run: data,
    architecture, dtype, steps, metrics_every, batch_size, evaluation...); None for a run that
    trains alone (device "cuda")."""
    if config.get("device", "cpu") != "cpu":
        return None
    shared = {k: v for k, v in config.items() if k not in PER_RUN_KEYS}
    return json.dumps(shared, sort_keys=True, default=str)


@functools.lru_cache(maxsize=8)
def cached_dataset(name, data_seed, n_samples, options_json):
    """Datasets are built once per process."""
    return load_dataset(name, seed=data_seed, n_samples=n_samples, **json.loads(options_json))


def dataset_for(config):
    options = json.dumps(config.get("dataset_options") or {}, sort_keys=True)
    return cached_dataset(config["dataset"], config["data_seed"], config["n_samples"], options)


def build_run(config, data):
    """(net, optimizer, clip) of a configuration on its data."""
    net = build_network(config, data.n_features, data.n_outputs, data.task == "classification")
    return net, build_optimizer(config), build_clip(config)


def training_data(net, data, config):
    """(x, y) in kernel form, the evaluation targets and the batch size of a run's training."""
    x, y = net.check_batch(data.x_train, targets_of(net, data.y_train))
    n_rows = len(x)
    batch = n_rows if config["batch_size"] in (0, None) or config["batch_size"] > n_rows \
        else config["batch_size"]
    if net.batchnorm and batch < 2:
        raise ValueError("batch_size: batch norm needs at least 2 rows per batch")
    return x, y, targets_of(net, data.y_train), batch


def build_engine(nets, device, x, y):
    """The multi-run engine of a group's networks: MultiMLP (one thread: a worker trains one
    group at a time) or, for device "cuda", a DeviceEngine with x, y uploaded."""
    if device == "cuda":
        from studies.run.device import DeviceEngine
        return DeviceEngine(nets, x, y)
    from kernels.multirun import MultiMLP
    return MultiMLP(nets, threads=1)


def warm_up(net, device, x, y, batch, config, clip):
    """One throwaway step of a one-run engine of the same kind on a copy of `net`, so
    compilation (or the cache load) is timed apart from training; returns its seconds."""
    started = time.perf_counter()
    build_engine([net.copy()], device, x, y).run_steps(
        x, y, np.arange(batch, dtype=np.int64)[None], batch, [build_optimizer(config)], [clip],
        [allocate_record(1, net.n_layers)])
    return time.perf_counter() - started


def measuring(probe, net):
    """`probe` (a copy of one of the group's networks) pointed at the parameters, gradients and
    running statistics of `net`: every run of a group is measured through this one network in
    turn, so the evaluation workspace is allocated once per group and stays in cache."""
    probe.params, probe.grads, probe.running = net.params, net.grads, net.running
    return probe


def same_bits(a, b):
    """Whether two contiguous arrays hold the same bits (signed zeros and NaNs told apart); the
    first entries are compared first, so arrays that differ early cost little."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    a, b = a.reshape(-1).view(f"u{a.itemsize}"), b.reshape(-1).view(f"u{b.itemsize}")
    return np.array_equal(a[:64], b[:64]) and np.array_equal(a, b)


def measure_runs(logs, nets, active, probe):
    """{r: logs[r].measure(...)} for the active runs r, each measured through `probe`: a run
    whose parameters and running statistics are bitwise those of a run measured before it at
    this metric step (runs of a group that start from one initialization, at step 0) takes
    that run's evaluation and layer statistics instead of computing them again; only its
    curvature columns, seeded by the run, are measured for it."""
    measured, seen = {}, []
    for r in active:
        net = measuring(probe, nets[r])
        metrics = next((m for params, running, m in seen
                        if same_bits(params, net.params) and same_bits(running, net.running)),
                       None)
        if metrics is None:
            metrics = logs[r].metrics(net)
            seen.append((net.params, net.running, metrics))
        measured[r] = logs[r].measure(net, metrics)
    return measured


def _check_group(configs):
    keys = {group_key(config) for config in configs}
    if not configs or (len(configs) > 1 and (len(keys) != 1 or None in keys)):
        raise ValueError("configs: a group needs one configuration, or runs of one group_key "
                         "on the cpu")


def train_group(configs, labels=None):
    """Trains configurations that share one group_key (or a single one) together, chunk by
    chunk; returns one (run_row, history, layers) per configuration, the tables as dicts of
    NumPy columns. `labels` holds pathology
    threshold overrides (studies.analysis.labels.Thresholds)."""
    _check_group(configs)
    first = configs[0]
    data = dataset_for(first)
    built = [build_run(config, data) for config in configs]
    thresholds = Thresholds.from_dict(labels or {})
    x, y, y_eval, batch = training_data(built[0][0], data, first)
    logs = [RunLog(config, thresholds, data, x, y_eval, batch) for config in configs]
    opts, clips = [b[1] for b in built], [b[2] for b in built]
    device = first.get("device", "cpu")
    engine = build_engine([b[0] for b in built], device, x, y)
    compile_time = warm_up(built[0][0], device, x, y, batch, first, clips[0]) / len(configs)
    total, every, step = first["steps"], first["metrics_every"], 0
    active = list(range(len(configs)))
    probe = engine.run_views()[0].copy()
    while active and step <= total:
        nets = engine.run_views()
        measured = measure_runs(logs, nets, active, probe)
        if step == total:
            for r in active:
                rec = logs[r].final_record(measuring(probe, nets[r]))
                logs[r].record(step, measured[r], rec, 0, False, 0.0)
            break
        n_steps = min(every, total - step)
        rows = {r: logs[r].order(step, n_steps) for r in active}
        orders = np.stack([rows.get(r, rows[active[0]])  # frozen runs skip theirs
                           for r in range(len(configs))])
        recs = [allocate_record(n_steps, engine.template.n_layers) for _ in configs]
        started = time.perf_counter()
        engine.run_steps(x, y, orders, batch, opts, clips, recs)
        share = (time.perf_counter() - started) / len(active)
        for r in list(active):
            if logs[r].record(step, measured[r], recs[r], n_steps, int(recs[r].status[0]),
                              share):
                engine.frozen[r] = True
                active.remove(r)
        step += n_steps
    nets = engine.run_views()
    return [log.summarize(net, compile_time) for log, net in zip(logs, nets)]


def train_run(config, labels=None):
    """Trains one configuration (a group of one); returns (run_row, history DataFrame,
    layers DataFrame): train_group's columns as frames, for interactive use."""
    import pandas as pd
    run, history, layers = train_group([config], labels)[0]
    return run, pd.DataFrame(history), pd.DataFrame(layers)


def execute_group(configs, labels=None):
    """Runs a group of configurations and never raises: one payload per configuration (the
    'run' row with group_size and its share of the wall time, 'history' and 'layers' as
    records); a run that raises comes back 'failed' with its error text. If a group of several
    fails as a whole (one run that cannot be built fails it), each run is redone alone, so a
    failure stays one run's data."""
    from threadpoolctl import threadpool_limits
    started = time.perf_counter()
    try:
        with threadpool_limits(limits=1):
            payloads = [payload_of(*result) for result in train_group(configs, labels)]
    except Exception as err:  # a run's failure is data, never the sweep's end
        if len(configs) > 1:
            return [execute(config, labels) for config in configs]
        payloads = [failed_payload(err)]
    share = (time.perf_counter() - started) / len(configs)
    for payload in payloads:
        payload["run"].update({"wall_time": share, "group_size": len(configs)})
    return payloads


def execute(config, labels=None):
    """execute_group of one configuration: its payload."""
    return execute_group([config], labels)[0]


def config_json(config):
    """Canonical JSON of a configuration (what a run_id hashes)."""
    return json.dumps(config, sort_keys=True, default=str)
