"""`MultiMLP`: R networks of one architecture trained together in one compiled call.

Parameters, gradients, running statistics and optimizer moments are (R, n_params) buffers. The
kernel `train_runs` loops over the runs and gives row r to the very step MLP compiles
(`step.run_batches`), so every run equals training that network alone with MLP, bitwise. Runs
may differ in seed, init, learning rate, optimizer, schedule and clipping (runtime codes) and in
their data order; they share the architecture, the dtype and the data set.

Both cores: the runs split into contiguous chunks, one per thread, each with its own workspace
(the kernels release the GIL, so no `parallel=True`, no OpenMP and no fork hazard). While
threads run, BLAS is held to one thread when a layer is large enough for OpenBLAS to thread
(B n_in n_out > 2^18). A run whose step is not finite stops there (nothing applied), is recorded
in `diverged` and frozen until `reset_diverged()`; the others go on.

    multi = MultiMLP.from_configs([{"seed": s} for s in range(64)], sizes=[40, 64, 64, 10])
    losses = multi.train_epoch(x, y, [Adam(lr=lr) for lr in lrs], batch_size=32)  # (R, steps)
    nets = multi.split()                                   # R independent MLPs
"""
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ._jit import kernel
from .clipping import Clip
from .layout import allocate_workspace, pack_workspace, record_length, record_views, \
    unpack_netspec, unpack_record, unpack_workspace
from .mlp import MLP, NO_CLIP
from .optimizers import Optimizer
from .runset import RunSet, check_same_architecture, per_run
from .step import run_batches
from .training import fit_runs
from .validation import check_positive_int

BLAS_THREADING_WORK = 1 << 18  # OpenBLAS threads a GEMM above m n k = 4 x 65536
_POOL = {}


@kernel
def train_runs(spec, model, opt, work, data, rec, active, lo, hi):
    """run_batches on row r of every (R, ...) buffer for runs lo <= r < hi with active[r].
    model = (params, grads, running), opt = (codes, hyper, m, v, t), data = (x, y, orders,
    batch_size) with orders (R, rows) or (1, rows) shared, rec = (buffer (R, len), status (R, 2),
    n_layers). Packed spec and work as in step.train_batches."""
    net = unpack_netspec(spec)
    views = unpack_workspace(work)
    params, grads, running = model
    codes, hyper, m, v, t = opt
    x, y, orders, batch_size = data
    buf, status, n_layers = rec
    for r in range(lo, hi):
        if active[r]:
            order = orders[r] if orders.shape[0] > 1 else orders[0]
            run_batches(net, (params[r], grads[r], running[r]),
                        (codes[r], hyper[r], m[r], v[r], t[r]), views,
                        (x, y, order, batch_size), unpack_record((buf[r], status[r], n_layers)))


# the shared checks of every multi-run group (kernels.runset), under their names here
_check_same_architecture = check_same_architecture
_per_run = per_run


class MultiMLP(RunSet):
    """MultiMLP(nets, threads=None): nets = MLPs of one architecture (copied); threads: worker
    threads over runs (default: min(runs, CPU count))."""

    def __init__(self, nets, threads=None):
        nets = self._set_templates(nets)
        runs, n, dtype = len(nets), nets[0].n_params, nets[0].dtype
        self.params = np.stack([net.params for net in nets])
        self.running = np.stack([net.running for net in nets])
        self.grads = np.zeros((runs, n), dtype)
        self.m, self.v = np.zeros((runs, n), dtype), np.zeros((runs, n), dtype)
        self.t = np.zeros((runs, 1), np.int64)
        self.frozen = np.zeros(runs, bool)
        self.diverged = np.full(runs, -1, np.int64)
        cpus = os.cpu_count() or 1
        self.threads = min(runs, cpus) if threads is None else \
            min(runs, check_positive_int("threads", threads))
        self._work, self._work_rows = [], 0
        self._opt_cache = {}
        self._views = None

    @classmethod
    def from_configs(cls, configs, threads=None, **shared):
        """One MLP(**shared, **config) per config, e.g. [{"seed": 0}, {"seed": 1, "init":
        "he_uniform"}], sizes=[40, 64, 10]."""
        return cls([MLP(**{**shared, **config}) for config in configs], threads=threads)

    # ------------------------------------------------------------------ properties
    # template, runs, sizes, spec, dtype, n_params, n_layers, batchnorm: kernels.runset.RunSet
    @property
    def step_counts(self):
        """(R,) optimizer steps applied per run."""
        return self.t[:, 0].copy()

    def reset_diverged(self):
        """Lets frozen (diverged) runs train again from their last finite parameters."""
        self.frozen[:] = False
        self.diverged[:] = -1

    # ------------------------------------------------------------------ training
    def train_step(self, x, y, opts, clip=None):
        """One step of every run on the shared batch (x, y); opts: one optimizer (its
        hyperparameters for all runs) or R; clip: None, one Clip or R. Returns the (R,) losses
        before the update (NaN for frozen runs)."""
        batch = self.template._kernel_form(x, y)
        x, y = batch if batch is not None else self.template.check_batch(x, y)
        rows = np.arange(len(x), dtype=np.int64)[None]
        return self._run(x, y, rows, len(x), opts, clip, 1)[0][:, 0]

    def train_epoch(self, x, y, opts, batch_size=None, clip=None, order=None):
        """Steps over consecutive batches of `order` ((rows,) shared or (R, rows) per run;
        default the rows in order); returns the (R, steps) losses."""
        x, y = self.template.check_batch(x, y)
        orders = self._orders(order, len(x))
        batch_size = check_positive_int("batch_size", batch_size or orders.shape[1])
        n_steps = -(-orders.shape[1] // batch_size)
        return self._run(x, y, orders, batch_size, opts, clip, n_steps)[0]

    def run_steps(self, x, y, orders, batch_size, opts, clips, recs):
        """Low level, as MLP.run_steps for every run: len(recs[r].loss) steps over batches of
        orders[r] (or one shared order) of kernel-form x, y; fills the R Records. Returns the
        (R,) steps completed (a diverged run: the index of its non-finite step)."""
        orders = self._orders(orders, len(x))
        n_steps = len(recs[0].loss)
        if len(recs) != self.runs or any(len(rec.loss) != n_steps for rec in recs):
            raise ValueError(f"recs: expected {self.runs} Records of {n_steps} steps each")
        _, buf, status = self._run(x, y, orders, batch_size, opts, clips, n_steps)
        done = np.full(self.runs, n_steps, np.int64)
        for r, rec in enumerate(recs):
            src = record_views(buf[r], status[r], n_steps, len(self.sizes) - 1)
            for field, values in zip(src._fields, src):
                getattr(rec, field)[...] = values
            if status[r, 0]:
                done[r] = status[r, 1]
        return done

    def _opt_vectors(self, opts, clip):
        """(codes (R, 6), hyper (R, 8)) of the runs' optimizers and clipping, cached."""
        opts = _per_run(opts, self.runs, "opts")
        clips = [NO_CLIP if c is None else c for c in _per_run(clip, self.runs, "clip")]
        for opt, c in zip(opts, clips):
            if not isinstance(opt, Optimizer):
                raise ValueError(f"opts: expected optimizers from kernels.optimizers, got {opt!r}")
            if not isinstance(c, Clip):
                raise ValueError(f"clip: expected a kernels.clipping.Clip, got {c!r}")
        vectors = [self.template._opt_vectors(opt, c) for opt, c in zip(opts, clips)]
        key = tuple(id(v[0]) for v in vectors)
        if key not in self._opt_cache:  # rows of cached vectors: the ids identify them
            self._opt_cache.clear()
            self._opt_cache[key] = (np.stack([v[0] for v in vectors]),
                                    np.stack([v[1] for v in vectors]), vectors)
        return self._opt_cache[key][:2]

    def _workspaces(self, rows):
        if len(self._work) != self.threads or self._work_rows < rows:
            self._work_rows = max(rows, self._work_rows)
            self._work = [pack_workspace(allocate_workspace(np.asarray(self.sizes),
                                                            self._work_rows, self.dtype))
                          for _ in range(self.threads)]
        return self._work

    def _run(self, x, y, orders, batch_size, opts, clip, n_steps):
        """All active runs for n_steps; returns (losses (R, n_steps), record buffer, status)."""
        codes, hyper = self._opt_vectors(opts, clip)
        batch_size = int(batch_size)
        works = self._workspaces(min(batch_size, orders.shape[1]))
        n_layers = len(self.sizes) - 1
        buf = np.zeros((self.runs, record_length(n_steps, n_layers)))
        status = np.zeros((self.runs, 2), np.int64)
        active = (~self.frozen).astype(np.int64)
        args = (self.template._packed_spec, (self.params, self.grads, self.running),
                (codes, hyper, self.m, self.v, self.t))
        rest = ((x, y, orders, batch_size), (buf, status, n_layers), active)
        bounds = np.linspace(0, self.runs, self.threads + 1).astype(int)
        if self.threads == 1:
            train_runs(*args, works[0], *rest, 0, self.runs)
        else:
            with self._blas_limit(batch_size):
                pool = _POOL.get(self.threads) or _POOL.setdefault(
                    self.threads, ThreadPoolExecutor(self.threads, "gradlab-multirun"))
                jobs = [pool.submit(train_runs, *args, works[i], *rest, bounds[i],
                                    bounds[i + 1]) for i in range(self.threads)]
                for job in jobs:
                    job.result()
        bad = status[:, 0] != 0
        self.diverged[:] = np.where(bad, status[:, 1], -1)
        self.frozen |= bad
        losses = buf[:, :n_steps].copy()
        losses[active == 0] = np.nan
        return losses, buf, status

    def _blas_limit(self, batch_size):
        """One BLAS thread while our threads run, when some GEMM is big enough to thread."""
        largest = max(a * b for a, b in zip(self.sizes[:-1], self.sizes[1:])) * batch_size
        if largest <= BLAS_THREADING_WORK:
            return _NoLimit()
        from threadpoolctl import threadpool_limits
        return threadpool_limits(1, user_api="blas")

    # ------------------------------------------------------------------ epochs
    def fit(self, x, y, opts, epochs=1, batch_size=None, shuffle=True, seeds=0, clip=None,
            evaluate=True, drop_last=False, x_test=None, y_test=None, callback=None):
        """As MLP.fit for every run (seeds: one or R shuffle seeds); one compiled call per
        epoch for all runs (kernels.training.fit_runs). Returns R Histories equal to those of
        MLP.fit on each network; callback(epoch, summaries) gets one summary per run."""
        return fit_runs(self, x, y, opts, clip, seeds, epochs, batch_size, shuffle, x_test,
                        y_test, drop_last, evaluate, callback)

    # ------------------------------------------------------------------ evaluation
    def forward(self, x, training=False):
        """Outputs of every run on x: (R, rows, n_L), as MLP.forward of each network."""
        return np.stack([net.forward(x, training) for net in self.run_views()])

    def loss_and_grads(self, x, y):
        """((R,) losses, (R, n_params) gradients) with batch statistics; nothing updated."""
        losses = np.array([net.loss_and_grads(x, y)[0] for net in self.run_views()])
        return losses, self.grads.copy()

    def run_views(self):
        """R MLPs whose params, grads and running statistics are views of the rows here (no
        copies: evaluation through them sees, and edits through them change, this group)."""
        if self._views is None:
            self._views = []
            for r, template in enumerate(self.templates):
                net = object.__new__(MLP)
                net.__dict__.update(template.__dict__)
                net.params, net.grads, net.running = self.params[r], self.grads[r], \
                    self.running[r]
                net._reset_buffers()
                self._views.append(net)
        return self._views

    def split(self, opts=None):
        """R independent MLPs with each run's parameters and running statistics. With opts (R
        fresh optimizers), each is bound to its network with the run's moments and step count,
        so training goes on alone exactly as it would have here."""
        nets = []
        for r, template in enumerate(self.templates):
            net = template.copy()
            net.params[...] = self.params[r]
            net.running[...] = self.running[r]
            nets.append(net)
        if opts is not None:
            for r, (net, opt) in enumerate(zip(nets, _per_run(opts, self.runs, "opts"))):
                m, v, t = opt.bind(net, net.n_params, net.dtype)
                m[...], v[...], t[...] = self.m[r], self.v[r], self.t[r]
        return nets

    to_cpu = split

    def __repr__(self):
        return f"MultiMLP({self.runs} x {self.template!r}, threads={self.threads})"


class _NoLimit:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
