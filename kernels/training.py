"""Epoch loop over the fused kernel: batch GD, SGD or mini-batch GD through the batch size.

Each epoch is ONE compiled call (`train_batches` over every mini-batch of a seeded shuffle).
batch_size=None is full-batch gradient descent, 1 is SGD, k is mini-batch; a last partial batch
is kept (as PyTorch's DataLoader), except a last batch of one row under batch norm, which has no
batch statistics and is dropped. A non-finite step stops training and is recorded, not raised.
"""
from dataclasses import dataclass, field

import numpy as np

from .layout import allocate_record
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


def fit(net, x, y, opt, epochs=1, batch_size=None, shuffle=True, seed=0, clip=None,
        x_test=None, y_test=None, drop_last=False, evaluate=True, callback=None):
    """Trains `net` in place for `epochs` epochs; returns a History.

    callback(epoch, summary) runs after each epoch; returning True stops training.
    """
    x, y_kernel = net.check_batch(x, y)
    labels = np.asarray(y)
    epochs = check_positive_int("epochs", epochs)
    batch_size = len(x) if batch_size is None else check_positive_int("batch_size", batch_size)
    if batch_size > len(x):
        raise ValueError(f"batch_size: expected at most the {len(x)} training rows, got "
                         f"{batch_size}")
    if net.batchnorm and batch_size < 2:
        raise ValueError("batch_size: batch norm needs at least 2 rows per batch, got 1")
    steps_per_epoch = n_batches(len(x), batch_size, net.batchnorm, drop_last)
    if steps_per_epoch == 0:
        raise ValueError(f"batch_size: {batch_size} leaves no complete batch of {len(x)} rows")
    rng = np.random.default_rng(seed)
    history = History()
    chunks = []
    for epoch in range(1, epochs + 1):
        order = epoch_order(len(x), shuffle, rng)
        rec = allocate_record(steps_per_epoch, net.n_layers)
        try:
            done = net.run_steps(x, y_kernel, order, batch_size, opt, clip, rec)
        except DivergenceError as err:
            done = int(rec.status[1])
            history.diverged, history.diverged_step = True, err.step
            chunks.append((rec, done + 1))
            break
        chunks.append((rec, done))
        summary = {"epoch": epoch, "step": opt.step_count,
                   "loss": float(np.mean(rec.loss[:done]))}
        if evaluate:
            summary.update(evaluate_split(net, x, labels, "train"))
            if x_test is not None:
                summary.update(evaluate_split(net, x_test, y_test, "test"))
        history.epochs.append(summary)
        if callback is not None and callback(epoch, summary):
            break
    for name in STEP_FIELDS + LAYER_FIELDS:
        parts = [getattr(rec, name)[:n] for rec, n in chunks]
        history.steps[name] = np.concatenate(parts) if parts else np.zeros(0)
    return history


def evaluate_split(net, x, y, prefix):
    """Loss (and accuracy for classification) in evaluation mode, keys prefixed."""
    out = {f"{prefix}_loss": net.loss(x, y)}
    if net.classification:
        out[f"{prefix}_accuracy"] = net.accuracy(x, y)
    return out
