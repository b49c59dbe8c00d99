"""Runs of a study on the GPU (`device = "cuda"`): the fused CPU kernel's step records, filled
from the device engine.

Training stays on the device (data uploaded once; one call per chunk of steps, no host round
trip per step). Per step the device returns the loss and the global gradient norm; the
per-layer gradient statistics of a chunk's first step, and every evaluation metric, are
computed on a host copy of the network taken between chunks, which holds the same parameters.
"""
import numpy as np

from kernels import DivergenceError


class DeviceTrainer:
    """The MLP-like surface the runner uses (run_steps, copy, host_net) over a CudaMLP."""

    def __init__(self, net, x, y):
        from kernels.cuda import CudaMLP
        self.dev = CudaMLP(net)
        self.x, self.y = x, y
        self.data = self.dev.upload(x, y)
        self._host = net

    @property
    def n_layers(self):
        return self.dev.template.n_layers

    def host_net(self):
        """A CPU MLP with the device's current parameters and running statistics."""
        if self._host is None:
            self._host = self.dev.to_cpu()
        return self._host

    def copy(self):
        return DeviceTrainer(self.host_net().copy(), self.x, self.y)

    def run_steps(self, x, y, order, batch_size, opt, clip, rec):
        """As MLP.run_steps: len(rec.loss) steps over batches of `order`, records filled."""
        host = self.host_net()
        rows = order[:batch_size]
        host.loss_and_grads(x[rows], y[rows])
        first = host.last_step_stats()
        rec.w_grad_norm[0] = first["w_grad_norm"]
        rec.b_grad_norm[0] = first["b_grad_norm"]
        rec.delta_norm[0] = first["delta_norm"]
        rec.w_norm[0] = [np.linalg.norm(w) for w in host.weights]
        rec.w_update_norm[:] = np.nan
        rec.grad_norm_clipped[:] = np.nan
        n_steps = len(rec.loss)
        t0 = self.dev.step_count
        rec.lr[:] = [opt.schedule.lr(opt.lr, t0 + i) for i in range(n_steps)]
        self.dev.engine.clear_flags()
        loss, norm = self.dev._epoch(self.data, None, opt, batch_size, clip, order)
        self._host = None
        rec.loss[:] = loss[0][:n_steps]
        rec.grad_norm[:] = norm[0][:n_steps]
        _, bad = self.dev.engine.status()
        if bad[0] >= 0:
            rec.status[0], rec.status[1] = 1, int(bad[0])
            raise DivergenceError(f"non-finite loss or gradient on the device at step "
                                  f"{t0 + int(bad[0]) + 1}", t0 + int(bad[0]))
        return n_steps


def fit_on_device(net, x, y, opt, epochs, batch_size, seed, clip, x_test, y_test, callback):
    """kernels.training.fit on the GPU: one device call per epoch; evaluation on a host copy.
    Returns a kernels.training.History (per-layer statistics of the final parameters)."""
    from kernels.cuda import CudaMLP
    from kernels.training import History, evaluate_split
    x_kernel, y_kernel = net.check_batch(x, y)
    dev = CudaMLP(net)
    data = dev.upload(x_kernel, y_kernel)
    rng = np.random.default_rng(seed)
    history, losses = History(), []
    for epoch in range(1, epochs + 1):
        order = rng.permutation(len(x_kernel)).astype(np.int64)
        try:
            losses.extend(dev.train_epoch(data, None, opt, batch_size, clip, order))
        except DivergenceError as err:
            history.diverged, history.diverged_step = True, err.step
            break
        host = dev.to_cpu()
        summary = {"epoch": epoch, "step": dev.step_count,
                   "loss": float(np.mean(losses[-(-len(x_kernel) // batch_size):]))}
        summary.update(evaluate_split(host, x, y, "train"))
        if x_test is not None:
            summary.update(evaluate_split(host, x_test, y_test, "test"))
        history.epochs.append(summary)
        if callback is not None and callback(epoch, summary):
            break
    host = dev.to_cpu()
    rows = slice(0, min(batch_size, len(x_kernel)))
    host.loss_and_grads(x_kernel[rows], y_kernel[rows])
    last = host.last_step_stats()
    history.steps = {"loss": np.asarray(losses, float),
                     "grad_norm": np.full(len(losses), np.nan)}
    if len(losses):
        history.steps["grad_norm"][-1] = last["grad_norm"]
    for name in ("w_grad_norm", "b_grad_norm", "delta_norm"):
        table = np.full((len(losses), net.n_layers), np.nan)
        if len(losses):
            table[-1] = last[name]
        history.steps[name] = table
    history.steps["w_norm"] = np.full((len(losses), net.n_layers), np.nan)
    if len(losses):
        history.steps["w_norm"][-1] = [np.linalg.norm(w) for w in host.weights]
    history.steps["w_update_norm"] = np.full((len(losses), net.n_layers), np.nan)
    net.params[...] = host.params
    net.running[...] = host.running
    return history
