"""The epoch loop over the fused kernel, one loop for one network and for many (`fit_runs`
over a multi-run engine: MLP.fit drives it on a SingleRun, MultiMLP.fit on itself).

Each epoch is ONE compiled call (`train_batches` over every mini-batch of a seeded shuffle).
batch_size=None is full-batch gradient descent, 1 is SGD, k is mini-batch; a last partial batch
is kept (as PyTorch's DataLoader), except a last batch of one row under batch norm, which has no
batch statistics and is dropped. A non-finite step stops training and is recorded, not raised.
"""
from dataclasses import dataclass, field

import numpy as np

from .layout import allocate_record, divergence_cause
from .validation import check_positive_int

class DivergenceError(FloatingPointError):
    """A training step produced a non-finite loss or gradient; the step was not applied."""

    def __init__(self, message, step):
        super().__init__(message)
        self.step = step


STEP_FIELDS = ("loss", "grad_norm", "grad_norm_clipped", "lr")
LAYER_FIELDS = ("w_grad_norm", "b_grad_norm", "delta_norm", "w_norm", "w_update_norm")


@dataclass
class History:
    """Per-step records (steps,) / (steps, layers) and per-epoch summaries."""
    steps: dict = field(default_factory=dict)
    epochs: list = field(default_factory=list)
    diverged: bool = False
    diverged_step: int = -1
    divergence_cause: str = ""  # why the step at diverged_step was refused (layout causes)

    @property
    def n_steps(self):
        return len(self.steps.get("loss", ()))


def epoch_order(n_rows, shuffle, rng):
    """Row order of one epoch: a seeded permutation, or 0..n-1."""
    return rng.permutation(n_rows).astype(np.int64) if shuffle else np.arange(n_rows,
                                                                              dtype=np.int64)


def n_batches(n_rows, batch_size, batchnorm, drop_last=False):
    """Mini-batches per epoch (a trailing batch of 1 row is dropped under batch norm)."""
    full, rest = divmod(n_rows, batch_size)
    if rest and not drop_last and not (batchnorm and rest == 1):
        return full + 1
    return full


class SingleRun:
    """One MLP seen as a multi-run engine of one run (the interface `fit_runs` drives):
    runs, template, frozen (R,), step_counts (R,), run_views() and run_steps(x, y, orders,
    batch_size, opts, clips, recs) -> (R,) steps done, a non-finite run frozen, not raised."""
    runs = 1

    def __init__(self, net):
        self.template, self.frozen, self._opt = net, np.zeros(1, bool), None

    @property
    def step_counts(self):
        return np.array([self._opt.step_count if self._opt is not None else 0], np.int64)

    def run_views(self):
        return [self.template]

    def run_steps(self, x, y, orders, batch_size, opts, clips, recs):
        self._opt = opts[0]
        try:
            done = self.template.run_steps(x, y, orders[0], batch_size, opts[0], clips[0],
                                           recs[0])
        except DivergenceError:
            done = int(recs[0].status[1])
            self.frozen[0] = True
        return np.array([done], np.int64)


def fit(net, x, y, opt, epochs=1, batch_size=None, shuffle=True, seed=0, clip=None,
        x_test=None, y_test=None, drop_last=False, evaluate=True, callback=None):
    """Trains `net` in place for `epochs` epochs; returns a History (fit_runs on one run).

    callback(epoch, summary) runs after each epoch; returning True stops training.
    """
    def each_epoch(epoch, summaries):
        return callback(epoch, summaries[0])

    return fit_runs(SingleRun(net), x, y, [opt], [clip], [seed], epochs, batch_size, shuffle,
                    x_test, y_test, drop_last, evaluate,
                    None if callback is None else each_epoch)[0]


def check_epochs(n_rows, epochs, batch_size, batchnorm, drop_last):
    """(epochs, batch_size, steps per epoch) validated for n_rows training rows."""
    epochs = check_positive_int("epochs", epochs)
    batch_size = n_rows if batch_size is None else check_positive_int("batch_size", batch_size)
    if batch_size > n_rows:
        raise ValueError(f"batch_size: expected at most the {n_rows} training rows, got "
                         f"{batch_size}")
    if batchnorm and batch_size < 2:
        raise ValueError("batch_size: batch norm needs at least 2 rows per batch, got 1")
    steps = n_batches(n_rows, batch_size, batchnorm, drop_last)
    if steps == 0:
        raise ValueError(f"batch_size: {batch_size} leaves no complete batch of {n_rows} rows")
    return epochs, batch_size, steps


def fit_runs(engine, x, y, opts, clips, seeds, epochs=1, batch_size=None, shuffle=True,
             x_test=None, y_test=None, drop_last=False, evaluate=True, callback=None):
    """The epoch loop of every engine (SingleRun for MLP.fit, MultiMLP, the CUDA engines): one
    engine call per epoch for all runs, run r over its own seeded shuffle seeds[r]. Returns R
    Histories; a run that turns non-finite stops there (recorded) while the others go on.

    opts, clips: as the engine takes them (one or R); callback(epoch, summaries) with one
    summary per run (None for a stopped run) after each epoch; returning True stops.
    """
    template = engine.template
    xk, yk = template.check_batch(x, y)
    labels = np.asarray(y)
    epochs, batch_size, steps = check_epochs(len(xk), epochs, batch_size, template.batchnorm,
                                             drop_last)
    if isinstance(seeds, (list, tuple)) and len(seeds) != engine.runs:
        raise ValueError(f"seeds: expected one or {engine.runs} values, got {len(seeds)}")
    seeds = list(seeds) if isinstance(seeds, (list, tuple)) else [seeds] * engine.runs
    rngs = [np.random.default_rng(s) for s in seeds]
    histories = [History() for _ in range(engine.runs)]
    chunks = [[] for _ in range(engine.runs)]
    for epoch in range(1, epochs + 1):
        was_frozen = engine.frozen.copy()
        orders = np.stack([epoch_order(len(xk), shuffle, rng) for rng in rngs])
        recs = [allocate_record(steps, template.n_layers) for _ in range(engine.runs)]
        done = engine.run_steps(xk, yk, orders, batch_size, opts, clips, recs)
        counts, nets = engine.step_counts, engine.run_views()
        summaries = [None] * engine.runs
        for r, history in enumerate(histories):
            if was_frozen[r]:
                continue
            if engine.frozen[r]:
                history.diverged, history.diverged_step = True, int(counts[r])
                history.divergence_cause = divergence_cause(recs[r].status[0])
                chunks[r].append((recs[r], int(done[r]) + 1))
                continue
            chunks[r].append((recs[r], int(done[r])))
            summary = {"epoch": epoch, "step": int(counts[r]),
                       "loss": float(np.mean(recs[r].loss[:done[r]]))}
            if evaluate:
                summary.update(evaluate_split(nets[r], xk, labels, "train"))
                if x_test is not None:
                    summary.update(evaluate_split(nets[r], x_test, y_test, "test"))
            history.epochs.append(summary)
            summaries[r] = summary
        if engine.frozen.all() or (callback is not None and callback(epoch, summaries)):
            break
    for history, parts in zip(histories, chunks):
        for name in STEP_FIELDS + LAYER_FIELDS:
            pieces = [getattr(rec, name)[:n] for rec, n in parts]
            history.steps[name] = np.concatenate(pieces) if pieces else np.zeros(0)
    return histories


def evaluate_split(net, x, y, prefix):
    """Loss (and accuracy for classification) in evaluation mode, keys prefixed."""
    out = {f"{prefix}_loss": net.loss(x, y)}
    if net.classification:
        out[f"{prefix}_accuracy"] = net.accuracy(x, y)
    return out
