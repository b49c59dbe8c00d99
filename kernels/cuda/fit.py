"""`fit_device`: kernels.training.fit for a CudaMLP (the epochs, batches, shuffles, divergence
handling and History of the CPU loop), with the data uploaded once and one device call per
epoch (no host round trip per step)."""
import numpy as np

from ..clipping import CLIP_EPS
from ..training import LAYER_FIELDS, History, epoch_order, evaluate_split, n_batches
from ..validation import check_positive_int
from .step import DeviceData


def fit_device(net, x, y, opt, epochs=1, batch_size=None, shuffle=True, seed=0, clip=None,
               x_test=None, y_test=None, drop_last=False, evaluate=True, callback=None):
    """Trains the CudaMLP `net` in place for `epochs` epochs; returns a History whose epochs
    equal those of MLP.fit (same orders from `seed`, same summaries, evaluated on the device).

    History.steps per step: loss, grad_norm (before clipping) and lr from the device;
    grad_norm_clipped where the clip mode determines it (none, global_norm), NaN otherwise;
    the per-layer statistics (LAYER_FIELDS) are NaN: the device step does not record them.
    callback(epoch, summary) runs after each epoch; returning True stops training."""
    x_kernel, y_kernel = net.check_batch(x, y)
    labels = np.asarray(y)
    epochs = check_positive_int("epochs", epochs)
    n_rows = len(x_kernel)
    batch_size = n_rows if batch_size is None else check_positive_int("batch_size", batch_size)
    if batch_size > n_rows:
        raise ValueError(f"batch_size: expected at most the {n_rows} training rows, got "
                         f"{batch_size}")
    if net.batchnorm and batch_size < 2:
        raise ValueError("batch_size: batch norm needs at least 2 rows per batch, got 1")
    steps = n_batches(n_rows, batch_size, net.batchnorm, drop_last)
    if steps == 0:
        raise ValueError(f"batch_size: {batch_size} leaves no complete batch of {n_rows} rows")
    data = DeviceData(x_kernel[None], y_kernel[None])
    rng = np.random.default_rng(seed)
    history = History()
    loss_parts, norm_parts, lr_parts = [], [], []
    for epoch in range(1, epochs + 1):
        order = epoch_order(n_rows, shuffle, rng)[:steps * batch_size]
        t0 = net.step_count
        net.engine.clear_flags()
        loss, norm = net._epoch(data, None, opt, batch_size, clip, order)
        t, bad = net.engine.status()
        done = steps if bad[0] < 0 else int(bad[0]) + 1
        loss_parts.append(loss[0, :done])
        norm_parts.append(norm[0, :done])
        lr_parts.append([opt.schedule.lr(opt.lr, t0 + k) for k in range(done)])
        if bad[0] >= 0:
            history.diverged, history.diverged_step = True, int(t[0])
            break
        summary = {"epoch": epoch, "step": int(t[0]), "loss": float(np.mean(loss[0, :steps]))}
        if evaluate:
            summary.update(evaluate_split(net, x, labels, "train"))
            if x_test is not None:
                summary.update(evaluate_split(net, x_test, y_test, "test"))
        history.epochs.append(summary)
        if callback is not None and callback(epoch, summary):
            break
    history.steps = _step_records(loss_parts, norm_parts, lr_parts, clip, net.n_layers)
    return history


def _step_records(loss_parts, norm_parts, lr_parts, clip, n_layers):
    loss = np.concatenate(loss_parts) if loss_parts else np.zeros(0)
    norm = np.concatenate(norm_parts) if norm_parts else np.zeros(0)
    mode = "none" if clip is None else clip.mode
    if mode == "none":
        clipped = norm.copy()
    elif mode == "global_norm":
        clipped = norm * np.minimum(1.0, clip.threshold / (norm + CLIP_EPS))
    else:
        clipped = np.full(len(norm), np.nan)
    steps = {"loss": loss, "grad_norm": norm, "grad_norm_clipped": clipped,
             "lr": np.asarray([lr for part in lr_parts for lr in part], np.float64)}
    for name in LAYER_FIELDS:
        steps[name] = np.full((len(loss), n_layers), np.nan)
    return steps
