"""One run: build the data and network a configuration describes, train it in compiled chunks of
`metrics_every` steps, record metrics at step 0 and every interval, and label it.

Steps stream through epochs of floor(N/B) full batches of a seeded shuffle (a partial last batch
is dropped so every step has the same batch size; batch_size 0 is full-batch GD). A run that
turns non-finite, or whose loss (a running mean over about 64 rows) exceeds the divergence
factor times its initial loss, stops early and is returned as diverged with its history.

The per-run bookkeeping between chunks (data order, evaluation, history and layer rows, the
divergence test, the summary) lives in `RunLog`, which studies.run.group shares: a group of
runs trained in one MultiMLP records exactly what each would record alone.
"""
import functools
import json
import time
import traceback

import numpy as np
import scipy.linalg  # noqa: F401  loads the BLAS the kernels call, so threadpool_limits sees it

from kernels import DivergenceError
from kernels.layout import allocate_record

from studies.config import build_clip, build_network, build_optimizer
from studies.data.datasets import load_dataset
from studies.analysis.labels import Thresholds, diverged_now, format_labels, label_run
from studies.analysis.metrics import layer_statistics



SMOOTHING_ROWS = 64  # divergence by loss factor is judged on a mean over about this many rows


@functools.lru_cache(maxsize=8)
def cached_dataset(name, data_seed, n_samples, options_json):
    """Datasets are built once per process."""
    return load_dataset(name, seed=data_seed, n_samples=n_samples, **json.loads(options_json))


def dataset_for(config):
    options = json.dumps(config.get("dataset_options") or {}, sort_keys=True)
    return cached_dataset(config["dataset"], config["data_seed"], config["n_samples"], options)


def _targets(net, y):
    """Class labels stay labels for cross-entropy; become one-hot rows for MSE on classes."""
    if net.loss_name == "mse" and y.ndim == 1:
        return np.eye(net.sizes[-1])[y]
    return y


def chunk_order(rng_state, n_rows, batch, first_step, n_steps):
    """Row order of steps [first_step, first_step + n_steps): batches of consecutive epochs."""
    per_epoch = n_rows // batch
    rows = []
    for s in range(first_step, first_step + n_steps):
        epoch, position = divmod(s, per_epoch)
        while len(rng_state["perms"]) <= epoch:
            rng_state["perms"].append(rng_state["rng"].permutation(n_rows))
        rows.append(rng_state["perms"][epoch][position * batch:(position + 1) * batch])
        if position == per_epoch - 1 and epoch > 0:
            rng_state["perms"][epoch - 1] = None  # keep memory bounded
    return np.concatenate(rows).astype(np.int64), per_epoch


def evaluate(net, data, x_train, y_train, eval_rows):
    """Loss and accuracy on train and test (evaluation mode)."""
    out = {}
    for split, x, y, labels in (("train", x_train, y_train, data.y_train),
                                ("test", data.x_test, _targets(net, data.y_test), data.y_test)):
        out[f"{split}_loss"], accuracy = net.evaluate(x, y)
        if data.task == "classification":
            out[f"{split}_accuracy"] = accuracy if accuracy is not None else net.accuracy(x, labels)
    return out


def build_run(config, data):
    """(net, optimizer, clip) of a configuration on its data."""
    net = build_network(config, data.n_features, data.n_outputs, data.task == "classification")
    return net, build_optimizer(config), build_clip(config)


def training_data(net, data, config):
    """(x, y) in kernel form, the evaluation targets and the batch size of a run's training."""
    x, y = net.check_batch(data.x_train, _targets(net, data.y_train))
    n_rows = len(x)
    batch = n_rows if config["batch_size"] in (0, None) or config["batch_size"] > n_rows \
        else config["batch_size"]
    if net.batchnorm and batch < 2:
        raise ValueError("batch_size: batch norm needs at least 2 rows per batch")
    return x, y, _targets(net, data.y_train), batch


class RunLog:
    """One run's records between its compiled chunks: its seeded data order, the evaluation and
    layer statistics at each metric step, history and layer rows, the divergence test and the
    final summary. train_run drives one; studies.run.group drives one per run of a group."""

    def __init__(self, config, thresholds, data, x, y_eval, batch):
        self.config, self.thresholds, self.data = config, thresholds, data
        self.n_rows, self.batch, self.y_eval = len(x), batch, y_eval
        self.x_eval = x[:min(config["eval_rows"], len(x))]
        self.rng_state = {"rng": np.random.default_rng(config["seed"]), "perms": []}
        self.per_epoch = max(1, self.n_rows // batch)
        self.smoothing = max(1, -(-SMOOTHING_ROWS // batch))
        self.history, self.layers, self.recent = [], [], []
        self.status, self.initial_loss, self.train_time = "completed", None, 0.0

    def order(self, step, n_steps):
        """Row order of the chunk of n_steps steps from `step`."""
        return chunk_order(self.rng_state, self.n_rows, self.batch, step, n_steps)[0]

    def measure(self, net):
        """(evaluation, layer statistics) of the network before the chunk that follows."""
        rows = len(self.x_eval)
        evals = evaluate(net, self.data, self.data.x_train, self.y_eval, self.config["eval_rows"])
        stats = layer_statistics(net, self.x_eval, training=True,
                                 y=self.y_eval[:rows] if self.config["gradient_stats"] else None)
        return evals, stats

    def final_record(self, net):
        """The last row has no step to take: gradient statistics on the evaluation rows."""
        net.loss_and_grads(self.x_eval, self.y_eval[:len(self.x_eval)])
        return net._step_record

    def record(self, step, measured, rec, n_steps, nonfinite, seconds):
        """Rows of the metric step `step` (measured before the chunk; rec: the chunk's records,
        n_steps 0 for the final row) and the divergence test; `seconds` of training are added.
        Returns True when the run stops here (diverged)."""
        evals, stats = measured
        if nonfinite:
            self.status = "diverged"
        if self.initial_loss is None:
            self.initial_loss = evals["train_loss"]  # the whole training set, before any update
        history = self.history  # the step's own row: record row 0, the chunk's first step
        history.append(_history_row(step, step / self.per_epoch, rec, 0, evals, n_steps,
                                    self.status))
        history[-1]["train_time"] = self.train_time
        self.train_time += seconds
        for s in stats:
            self.layers.append({**s, "step": step, **_layer_grads(rec, 0, s["layer"] - 1)})
        bad = int(rec.status[1]) if self.status == "diverged" else _first_divergent(
            rec.loss[:n_steps], self.initial_loss, self.thresholds, self.recent, self.smoothing)
        if bad < 0:
            return False
        self.status = "diverged"
        if bad > 0:
            history.append(_history_row(step + bad, (step + bad) / self.per_epoch, rec, bad, {},
                                        n_steps, self.status))
        history[-1]["diverged"] = True
        return True

    def summarize(self, net, compile_time):
        """(run_row, history DataFrame, layers DataFrame) of the finished run."""
        return _summarize(self.config, net, self.history, self.layers, self.status,
                          self.thresholds, self.train_time, compile_time)


def train_run(config, labels=None):
    """Trains one configuration; returns (run_row, history_rows, layer_rows). `labels` holds
    pathology threshold overrides (studies.analysis.labels.Thresholds)."""
    data = dataset_for(config)
    net, opt, clip = build_run(config, data)
    thresholds = Thresholds.from_dict(labels or {})
    x, y, y_eval, batch = training_data(net, data, config)
    log = RunLog(config, thresholds, data, x, y_eval, batch)
    trainer = net
    if config["device"] == "cuda":
        from studies.run.device import DeviceTrainer
        trainer = DeviceTrainer(net, x, y)
    compile_time = warm_up(trainer, x, y, batch, config, clip)
    total, every, step = config["steps"], config["metrics_every"], 0
    while step <= total:
        if trainer is not net:
            net = trainer.host_net()
        measured = log.measure(net)
        nonfinite, seconds, n_steps = False, 0.0, 0
        if step == total:
            rec = log.final_record(net)
        else:
            n_steps = min(every, total - step)
            order = log.order(step, n_steps)
            rec = allocate_record(n_steps, net.n_layers)
            started = time.perf_counter()
            try:
                trainer.run_steps(x, y, order, batch, opt, clip, rec)
            except DivergenceError:
                nonfinite = True
            seconds = time.perf_counter() - started
        if log.record(step, measured, rec, n_steps, nonfinite, seconds):
            break
        step += n_steps if n_steps else 1
    if trainer is not net:
        net = trainer.host_net()
    return log.summarize(net, compile_time)
def _first_divergent(losses, initial_loss, thresholds, recent, window):
    """Index of the first step that counts as divergence, or -1: a non-finite loss at once, or
    a running mean over the last `window` steps (about SMOOTHING_ROWS rows, so single-sample
    SGD noise is not mistaken for divergence) above the factor times the initial loss.
    `recent` carries the window across chunks."""
    for i, value in enumerate(losses):
        value = float(value)
        recent.append(value)
        del recent[:-window]
        if not np.isfinite(value) or diverged_now(float(np.mean(recent)), initial_loss,
                                                  thresholds):
            return i
    return -1


def _history_row(step, epoch, rec, row, evals, n_steps, status):
    out = {"step": int(step), "epoch": float(epoch), "loss": float(rec.loss[row]),
           "loss_avg": float(np.mean(rec.loss[:max(n_steps, 1)])),
           "grad_norm": float(rec.grad_norm[row]),
           "grad_norm_clipped": float(rec.grad_norm_clipped[row]) if n_steps else np.nan,
           "lr": float(rec.lr[row]) if n_steps else np.nan, "diverged": status == "diverged"}
    out.update(evals)
    return out


def _layer_grads(rec, row, layer):
    w = float(rec.w_norm[row, layer])
    upd = float(rec.w_update_norm[row, layer])
    return {"w_grad_norm": float(rec.w_grad_norm[row, layer]),
            "b_grad_norm": float(rec.b_grad_norm[row, layer]),
            "delta_norm": float(rec.delta_norm[row, layer]),
            "w_norm": w if w > 0 else np.nan,
            "update_ratio": upd / w if w > 0 else np.nan}


def warm_up(net, x, y, batch, config, clip):
    """One throwaway step on a copy, so compilation (or the cache load) is timed apart from
    training; returns its seconds."""
    started = time.perf_counter()
    try:
        net.copy().run_steps(x, y, np.arange(batch, dtype=np.int64), batch,
                             build_optimizer(config), clip, allocate_record(1, net.n_layers))
    except DivergenceError:
        pass
    return time.perf_counter() - started


def _summarize(config, net, history, layers, status, thresholds, train_time, compile_time):
    import pandas as pd
    hist = pd.DataFrame(history)
    lay = pd.DataFrame(layers)
    run_labels, layer_labels = label_run(hist, lay, thresholds)
    finite = hist["loss"][np.isfinite(hist["loss"])]
    last = hist.iloc[-1]
    run = {"status": status, "error": "",
           "final_loss": float(last.get("train_loss", np.nan)) if status != "diverged"
           else float(last["loss"]),
           "best_loss": float(finite.min()) if len(finite) else np.nan,
           "final_train_accuracy": float(last.get("train_accuracy", np.nan)),
           "final_test_accuracy": float(last.get("test_accuracy", np.nan)),
           "final_test_loss": float(last.get("test_loss", np.nan)),
           "steps_done": int(hist["step"].max()), "labels": format_labels(run_labels),
           "train_time": float(train_time), "compile_time": float(compile_time),
           "n_params": int(net.n_params)}
    for label in ("vanishing", "exploding", "dead", "saturated", "diverged"):
        run[f"first_{label}"] = int(run_labels[label]) if label in run_labels else -1
    lay = lay.merge(_layer_label_columns(layer_labels), on="layer", how="left")
    return run, hist, lay


def _layer_label_columns(layer_labels):
    import pandas as pd
    if layer_labels is None or len(layer_labels) == 0:
        return pd.DataFrame({"layer": pd.Series(dtype=int), "layer_labels": pd.Series(dtype=str)})
    grouped = layer_labels.groupby("layer").apply(
        lambda g: ",".join(f"{r.label}@{int(r.first_step)}" for r in g.itertuples()),
        include_groups=False)
    return pd.DataFrame({"layer": grouped.index, "layer_labels": grouped.values})


def payload_of(run, hist, lay):
    """What a worker returns for one run: the run row and its tables as records."""
    return {"run": run, "history": hist.to_dict("list"), "layers": lay.to_dict("list")}


def failed_payload(err):
    """The payload of a run that raised `err` (call inside its except block)."""
    return {"run": {"status": "failed", "error": f"{type(err).__name__}: {err}",
                    "traceback": traceback.format_exc(limit=8)},
            "history": {}, "layers": {}}


def execute(config, labels=None):
    """Runs one configuration and never raises: a failure comes back as a 'failed' run with its
    error text. Returns a payload dict with 'run', 'history', 'layers' (DataFrames as records)."""
    from threadpoolctl import threadpool_limits
    started = time.perf_counter()
    try:
        with threadpool_limits(limits=1):
            payload = payload_of(*train_run(config, labels))
    except Exception as err:  # a run's failure is data, never the sweep's end
        payload = failed_payload(err)
    payload["run"]["wall_time"] = time.perf_counter() - started
    payload["run"]["group_size"] = 1
    return payload


def config_json(config):
    """Canonical JSON of a configuration (what a run_id hashes)."""
    return json.dumps(config, sort_keys=True, default=str)
