"""What one run records between its compiled chunks (`RunLog`): its seeded data order, the
evaluation and layer statistics at each metric step, the history and layer rows, the divergence
test, and the run's summary row and labels at the end.

Steps stream through epochs of floor(N/B) full batches of a seeded shuffle (a partial last batch
is dropped so every step has the same batch size). A run that turns non-finite, or whose loss (a
running mean over about SMOOTHING_ROWS rows) exceeds the divergence factor times its initial
loss, stops early and is summarized as diverged with its history.
"""
import math
import traceback

import numpy as np

from kernels.layout import divergence_cause
from kernels.validation import check_inputs, check_targets

from studies.analysis.labels import LABELS, Thresholds, diverged_now, format_labels, \
    label_columns, layer_label_text
from studies.analysis.metrics import EVALUATION_CHUNK, checked_evaluation_outputs, \
    layer_columns, new_active, output_scores, workspace_layer_columns
from studies.run.curvature_log import CurvatureLog


SMOOTHING_ROWS = 64  # divergence by loss factor is judged on a mean over about this many rows


def targets_of(net, y):
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


def evaluate(net, data, x_train, y_train, eval_rows, active=None):
    """Loss and accuracy on train and test (evaluation mode); the train pass also ORs into
    `active` (metrics.new_active) the units whose activation input is > 0 on some row of the
    whole training set. y_train: the training targets (labels or one-hot rows)."""
    out = {}
    for split, x, targets, labels, flags in _splits(net, data, x_train, y_train, active):
        out.update(split_scores(net, data, split, x, targets, labels, flags))
    return out


def _splits(net, data, x_train, y_train, active):
    """(split, x, float64 targets, labels, unit flags) of train and test; x as check_inputs
    returns it (validated once, evaluated at every metric step)."""
    y_test = targets_of(net, data.y_test)
    x_test = data.x_test
    return (("train", _inputs(net, x_train), _targets(net, x_train, y_train), data.y_train,
             active),
            ("test", _inputs(net, x_test), _targets(net, x_test, y_test), data.y_test, None))


def _inputs(net, x):
    return check_inputs(x, net.sizes[0], net.dtype)


def _targets(net, x, y):
    return check_targets(y, len(x), net.sizes[-1], net.classification, np.float64)


def split_scores(net, data, split, x, targets, labels, flags=None):
    """{split_loss, split_accuracy (classification tasks)} of one split in evaluation mode
    (x: rows check_inputs returned, as _splits gives them); flags (metrics.new_active or None)
    as in metrics.evaluation_outputs."""
    scores = checked_evaluation_outputs(net, x, net.classification, flags)
    loss, accuracy = output_scores(scores, targets, net.classification)
    out = {f"{split}_loss": loss}
    if data.task == "classification":
        out[f"{split}_accuracy"] = accuracy if accuracy is not None else \
            float(np.mean(np.argmax(scores, axis=1) == _class_labels(labels)))
    return out


def _class_labels(labels):
    labels = np.asarray(labels)
    return labels.argmax(axis=1) if labels.ndim == 2 else labels


class RunLog:
    """One run's records between its compiled chunks: its seeded data order, the evaluation and
    layer statistics at each metric step, history and layer rows, the divergence test and the
    final summary. studies.run.execute.train_group drives one per run of a group."""

    def __init__(self, config, thresholds, data, x, y_eval, batch):
        self.config, self.thresholds, self.data = config, thresholds, data
        self.n_rows, self.batch, self.y_eval = len(x), batch, y_eval
        self.x_train, self.x_eval = x, x[:min(config["eval_rows"], len(x))]
        self.rng_state = {"rng": np.random.default_rng(config["seed"]), "perms": []}
        self.per_epoch = max(1, self.n_rows // batch)
        self.smoothing = max(1, -(-SMOOTHING_ROWS // batch))
        self.history, self.layers, self.recent = [], [], []
        self.status, self.initial_loss, self.train_time = "completed", None, 0.0
        self.divergence_cause = ""
        self.curvature = CurvatureLog(config, x, y_eval)  # sharpness, trace, noise columns
        self.splits = None

    def order(self, step, n_steps):
        """Row order of the chunk of n_steps steps from `step`."""
        return chunk_order(self.rng_state, self.n_rows, self.batch, step, n_steps)[0]

    def metrics(self, net):
        """(evaluation, layer statistics) of the network before the chunk that follows: one
        evaluation pass over the whole training set (which also finds the units never active
        there: dead_fraction, inactive_fraction), the test set, and the other layer statistics
        of the evaluation rows in training mode. Without batch norm (and without gradient
        statistics) training mode is evaluation mode, so those come from the rows that the
        training-set pass left in the workspace; else from one more pass over them. They
        depend on the network's parameters and running statistics only (and on what the runs
        of a group share: data, architecture, evaluation rows)."""
        rows = len(self.x_eval)
        active = new_active(net)
        (train, x, targets, labels, _), test = self._splits_of(net)
        evals = split_scores(net, self.data, train, x, targets, labels, active)
        if not net.batchnorm and not self.config["gradient_stats"] \
                and len(x) <= EVALUATION_CHUNK:
            stats = workspace_layer_columns(net, rows, active=active)
        else:
            stats = layer_columns(net, self.x_eval, training=True, active=active,
                                  y=self.y_eval[:rows] if self.config["gradient_stats"] else None)
        evals.update(split_scores(net, self.data, *test[:4]))
        return evals, stats

    def measure(self, net, metrics=None):
        """metrics(net), or `metrics` (what metrics gave for a network with bitwise the same
        parameters and running statistics), in dicts of this run's own with its curvature
        columns added (their random starts are seeded by the run). Runs that share metrics
        share their arrays: columns are only ever replaced or concatenated, never written."""
        self._splits_of(net)  # summarize reads them, even where every measurement was shared
        evals, stats = self.metrics(net) if metrics is None else metrics
        evals, stats = dict(evals), dict(stats)
        self.curvature.add(net, evals, stats)
        return evals, stats

    def _splits_of(self, net):
        """The (split, x, float64 targets, labels, flags) of train and test, made once per run."""
        if self.splits is None:
            self.splits = _splits(net, self.data, self.x_train, self.y_eval, None)
        return self.splits

    def final_record(self, net):
        """The last row has no step to take: gradient statistics on the evaluation rows."""
        net.loss_and_grads(self.x_eval, self.y_eval[:len(self.x_eval)])
        return net._step_record

    def record(self, step, measured, rec, n_steps, nonfinite, seconds):
        """Rows of the metric step `step` (measured before the chunk; rec: the chunk's records,
        n_steps 0 for the final row) and the divergence test; `seconds` of training are added.
        Returns True when the run stops here (diverged)."""
        evals, stats = measured
        if nonfinite:  # the kernel's status code: which quantity of the step was not finite
            self.status = "diverged"
            self.divergence_cause = divergence_cause(nonfinite)
        if self.initial_loss is None:
            self.initial_loss = evals["train_loss"]  # the whole training set, before any update
        history = self.history  # the step's own row: record row 0, the chunk's first step
        history.append(_history_row(step, step / self.per_epoch, rec, 0, evals, n_steps,
                                    self.status))
        history[-1]["train_time"] = self.train_time
        self.train_time += seconds
        self.layers.append({**stats, "step": np.full(len(stats["layer"]), step, np.int64),
                            **_layer_grads(rec, 0, len(stats["layer"]))})
        bad = int(rec.status[1]) if self.status == "diverged" else _first_divergent(
            rec.loss[:n_steps], self.initial_loss, self.thresholds, self.recent, self.smoothing)
        if bad < 0:
            return False
        self.status = "diverged"
        self.divergence_cause = self.divergence_cause or "loss above the divergence factor"
        if bad > 0:
            history.append(_history_row(step + bad, (step + bad) / self.per_epoch, rec, bad, {},
                                        n_steps, self.status))
        history[-1]["diverged"] = True
        return True

    def summarize(self, net, compile_time):
        """(run_row, history columns, layers columns) of the finished run; the run row's
        divergence_cause says what stopped a diverged run (a non-finite loss, gradient or
        update, or the loss factor), so an exploding gradient is told from an invalid update."""
        n_classes = int(net.sizes[-1]) if self.data.task == "classification" else 0
        variance = target_variance(net, self.splits[0][2] if self.splits else None)
        run, hist, lay = _summarize(self.config, net, self.history, self.layers, self.status,
                                    self.thresholds, self.train_time, compile_time,
                                    (n_classes, variance))
        run["divergence_cause"] = self.divergence_cause
        return run, hist, lay


def _first_divergent(losses, initial_loss, thresholds, recent, window):
    """Index of the first step that counts as divergence, or -1: a non-finite loss at once, or
    a running mean over the last `window` steps (about SMOOTHING_ROWS rows, so single-sample
    SGD noise is not mistaken for divergence) above the factor times the initial loss.
    `recent` carries the window across chunks. A window of one step is tested as one vector;
    a short one (< 8 entries) sums in order, which is np.mean's sum there, bit for bit."""
    values = np.asarray(losses, np.float64)
    if window == 1 and len(values):
        bar = _divergence_bar(initial_loss, thresholds)
        with np.errstate(invalid="ignore"):
            bad = np.flatnonzero(~np.isfinite(values) | (values > bar))
        recent[:] = [float(values[bad[0] if bad.size else -1])]
        return int(bad[0]) if bad.size else -1
    for i, value in enumerate(values.tolist()):
        recent.append(value)
        del recent[:-window]
        if len(recent) < 8:
            total = 0.0
            for v in recent:
                total += v
            mean = total / len(recent)
        else:
            mean = float(np.mean(recent))
        if not math.isfinite(value) or diverged_now(mean, initial_loss, thresholds):
            return i
    return -1


def _divergence_bar(initial_loss, thresholds):
    """The loss above which diverged_now fires for a finite loss (inf: never)."""
    initial = float(initial_loss)
    if math.isfinite(initial) and initial > 0:
        return (thresholds or Thresholds()).divergence_factor * initial
    return math.inf


def _history_row(step, epoch, rec, row, evals, n_steps, status):
    out = {"step": int(step), "epoch": float(epoch), "loss": float(rec.loss[row]),
           "loss_avg": float(np.mean(rec.loss[:max(n_steps, 1)])),
           "grad_norm": float(rec.grad_norm[row]),
           "grad_norm_clipped": float(rec.grad_norm_clipped[row]) if n_steps else np.nan,
           "lr": float(rec.lr[row]) if n_steps else np.nan, "diverged": status == "diverged"}
    out.update(evals)
    return out


def _layer_grads(rec, row, n_layers):
    """The kernel's per-layer columns of record row `row` (layers 1..n_layers)."""
    w = rec.w_norm[row, :n_layers].astype(np.float64)
    upd = rec.w_update_norm[row, :n_layers].astype(np.float64)
    known = w > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(known, upd / np.where(known, w, 1.0), np.nan)
    return {"w_grad_norm": rec.w_grad_norm[row, :n_layers].astype(np.float64),
            "b_grad_norm": rec.b_grad_norm[row, :n_layers].astype(np.float64),
            "delta_norm": rec.delta_norm[row, :n_layers].astype(np.float64),
            "w_norm": np.where(known, w, np.nan), "update_ratio": ratio}


def history_columns(rows):
    """{column: array} of history rows (dicts; a key missing from a row is NaN there), the
    columns in order of first appearance."""
    names = list(dict.fromkeys(k for row in rows for k in row))
    out = {}
    for name in names:
        values = [row.get(name, np.nan) for row in rows]
        kinds = {type(v) for v in values}
        dtype = np.bool_ if kinds == {bool} else np.int64 if kinds == {int} else np.float64
        out[name] = np.array(values, dtype)
    return out


def layer_columns_of(blocks):
    """{column: array} of the per-metric-step layer column dicts, concatenated."""
    if not blocks:
        return {}
    return {name: np.concatenate([b[name] for b in blocks]) for name in blocks[0]}


def target_variance(net, targets):
    """sum_j Var(t_j) over the training targets of an MSE run: the train_loss of predicting
    their mean (MSE summed over outputs, averaged over rows, as split_scores), which bounds the
    bar of learning of a regression run; NaN for cross-entropy or without targets."""
    if net.loss_name != "mse" or targets is None or not len(targets):
        return np.nan
    t = np.asarray(targets, np.float64)
    return float(((t - t.mean(axis=0)) ** 2).sum() / len(t))


def _summarize(config, net, history, layers, status, thresholds, train_time, compile_time,
               task):
    """task: (K classes, one output unit each, 0 for regression; target_variance)."""
    n_classes, variance = task
    hist = history_columns(history)
    lay = layer_columns_of(layers)
    run_labels, layer_rows = label_columns(hist, lay, thresholds, n_classes, net.loss_name,
                                           variance)
    loss = hist["loss"]
    finite = loss[np.isfinite(loss)]

    def last(name):
        return float(hist[name][-1]) if name in hist else np.nan
    run = {"status": status, "error": "",
           "final_loss": last("train_loss") if status != "diverged" else last("loss"),
           "best_loss": float(finite.min()) if len(finite) else np.nan,
           "final_train_accuracy": last("train_accuracy"),
           "final_test_accuracy": last("test_accuracy"),
           "final_test_loss": last("test_loss"),
           "steps_done": int(hist["step"].max()), "labels": format_labels(run_labels),
           "train_time": float(train_time), "compile_time": float(compile_time),
           "n_params": int(net.n_params), "n_classes": n_classes,
           "loss_function": net.loss_name, "target_variance": variance}
    for label in LABELS:
        run[f"first_{label}"] = int(run_labels[label]) if label in run_labels else -1
    text = layer_label_text(layer_rows)
    if lay:
        lay["layer_labels"] = np.array([text.get(int(layer), np.nan) for layer in lay["layer"]],
                                       object)
    return run, hist, lay


def payload_of(run, hist, lay):
    """What a worker returns for one run: the run row and its tables as dicts of columns
    (NumPy arrays)."""
    return {"run": run, "history": hist, "layers": lay}


def failed_payload(err):
    """The payload of a run that raised `err` (call inside its except block)."""
    return {"run": {"status": "failed", "error": f"{type(err).__name__}: {err}",
                    "traceback": traceback.format_exc(limit=8)},
            "history": {}, "layers": {}}
