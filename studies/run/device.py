"""Runs on the GPU (`device = "cuda"`): the CUDA multi-run engine behind the interface the CPU
engines offer (kernels.training.fit_runs and studies.run.execute.train_group drive it exactly
as they drive MultiMLP), filling the fused CPU kernel's step records.

Training stays on the device (data uploaded once; one call per chunk of steps, no host round
trip per step). Per step the device returns the loss and the global gradient norm (the learning
rate follows from the schedule); the per-layer gradient statistics of a chunk's first step, and
every evaluation metric, are computed on host copies of the networks taken between chunks,
which hold the same parameters. Record fields the device does not measure are NaN.
"""
import numpy as np


class DeviceEngine:
    """DeviceEngine(nets, x, y): a kernels.cuda.CudaMultiMLP of the CPU MLPs `nets` with the
    kernel-form training data x, y uploaded once; runs, template, frozen, step_counts,
    run_views() and run_steps() as kernels.multirun.MultiMLP."""

    def __init__(self, nets, x, y):
        from kernels.cuda import CudaMultiMLP
        self.dev = CudaMultiMLP(nets)
        self.data = self.dev.upload(x, y)
        self.frozen = np.zeros(self.dev.runs, bool)
        self._hosts = None

    @property
    def runs(self):
        return self.dev.runs

    @property
    def template(self):
        return self.dev.template

    @property
    def step_counts(self):
        """(R,) optimizer steps applied per run."""
        return self.dev.step_counts

    def run_views(self):
        """CPU MLPs with the device's current parameters and running statistics (copies, taken
        once per chunk)."""
        if self._hosts is None:
            self._hosts = self.dev.to_cpu()
        return self._hosts

    def run_steps(self, x, y, orders, batch_size, opts, clips, recs):
        """len(recs[r].loss) steps of every run over consecutive batches of orders[r] (of the
        uploaded x, y); fills the R records. Returns the (R,) steps completed (a run that turns
        non-finite: the index of that step; it is frozen from there on)."""
        n_steps = len(recs[0].loss)
        orders = np.asarray(orders)
        orders = orders[:, :min(orders.shape[1], n_steps * batch_size)]
        opts = opts if isinstance(opts, (list, tuple)) else [opts] * self.runs
        starts = self.step_counts
        for r, (host, rec) in enumerate(zip(self.run_views(), recs)):
            rows = orders[r if len(orders) > 1 else 0][:batch_size]
            host.loss_and_grads(x[rows], y[rows])
            first = host.last_step_stats()
            for name in ("w_grad_norm", "b_grad_norm", "delta_norm", "w_norm", "w_update_norm",
                         "grad_norm_clipped"):
                getattr(rec, name)[...] = np.nan
            for name in ("w_grad_norm", "b_grad_norm", "delta_norm"):
                getattr(rec, name)[0] = first[name]
            rec.w_norm[0] = [np.linalg.norm(w) for w in host.weights]
            opt = opts[r]
            rec.lr[:] = [opt.schedule.lr(opt.lr, starts[r] + i) for i in range(n_steps)]
        shared = orders[0] if len(orders) == 1 else orders  # one order for every run
        loss, norm = self.dev._epoch(self.data, None, opts, batch_size, clips, shared)
        self._hosts = None
        _, bad = self.dev.engine.status()
        done = np.full(self.runs, n_steps, np.int64)
        for r, rec in enumerate(recs):
            rec.loss[:] = loss[r][:n_steps]
            rec.grad_norm[:] = norm[r][:n_steps]
            rec.status[:] = 0
            if bad[r] >= 0 and not self.frozen[r]:
                rec.status[0], rec.status[1] = 1, int(bad[r])
                done[r] = int(bad[r])
                self.frozen[r] = True
        return done


def fit_on_device(net, x, y, opt, epochs, batch_size, seed, clip, x_test, y_test, callback):
    """MLP.fit on the GPU: kernels.training.fit_runs on a DeviceEngine of one run (one device
    call per epoch; evaluation on host copies). Returns a kernels.training.History; the
    network's parameters and running statistics are updated in place."""
    from kernels.training import fit_runs
    xk, yk = net.check_batch(x, y)
    engine = DeviceEngine([net], xk, yk)

    def each_epoch(epoch, summaries):
        return callback(epoch, summaries[0])

    history = fit_runs(engine, x, y, [opt], [clip], [seed], epochs, batch_size, True, x_test,
                       y_test, False, True, None if callback is None else each_epoch)[0]
    host = engine.run_views()[0]
    net.params[...] = host.params
    net.running[...] = host.running
    return history
