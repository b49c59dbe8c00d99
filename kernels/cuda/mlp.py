"""`CudaMLP`: an MLP whose parameters, optimizer state, workspaces and data live on the GPU.

Built from a CPU `MLP` (parameters, running statistics and architecture copied) or from the
`MLP` constructor arguments; it validates with the CPU network's own checks, then calls the
device engine (kernels.cuda.step). Results equal `MLP.train_step` step for step (float64 to
rounding: the GEMMs sum in another order than BLAS).
"""
import numpy as np

from ..clipping import Clip
from ..curvature import NoCurvatureOnCuda
from ..mlp import MLP, DivergenceError
from ..validation import check_inputs, check_positive_int
from . import require
from .step import DeviceData, Engine


class DeviceNets:
    """Shared logic of CudaMLP (one network) and CudaMultiMLP (R networks, one architecture)."""

    def __init__(self, nets):
        require()
        self.templates = [net.copy() for net in nets]
        first = self.templates[0]
        for net in self.templates[1:]:
            _check_same_architecture(first, net)
        params = np.stack([net.params for net in self.templates])
        running = np.stack([net.running for net in self.templates])
        self.engine = Engine(first.spec, first.dtype, params, running)

    # ------------------------------------------------------------------ properties
    @property
    def template(self):
        return self.templates[0]

    @property
    def runs(self):
        return self.engine.runs

    @property
    def sizes(self):
        return list(self.template.sizes)

    @property
    def spec(self):
        return self.template.spec

    @property
    def dtype(self):
        return self.template.dtype

    @property
    def n_params(self):
        return self.template.n_params

    # ------------------------------------------------------------------ data
    def check_runs_batch(self, x, y):
        """x (B, n_0) for all runs or (R, B, n_0) one batch per run, y likewise; returns kernel-form
        arrays with a leading run axis of 1 or R."""
        x_arr = np.asarray(x)
        if x_arr.ndim == 3:
            if x_arr.shape[0] != self.runs:
                raise ValueError(f"x: expected {self.runs} per-run batches (runs, batch, "
                                 f"{self.sizes[0]}), got shape {x_arr.shape}")
            y_arr = np.asarray(y)
            if y_arr.shape[:1] != (self.runs,):
                raise ValueError(f"y: expected a leading axis of {self.runs} runs to match x, "
                                 f"got shape {y_arr.shape}")
            pairs = [self.template.check_batch(xr, yr) for xr, yr in zip(x_arr, y_arr)]
            return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
        xb, yb = self.template.check_batch(x_arr, y)
        return xb[None], yb[None]

    def upload(self, x, y):
        """A DeviceData: the data set validated, one-hot encoded and copied to the device once."""
        xb, yb = self.check_runs_batch(x, y)
        return DeviceData(xb, yb)

    def _order(self, order, data):
        if order is None:
            order = np.arange(data.n_rows, dtype=np.int64)
        order = np.asarray(order)
        if order.dtype.kind not in "iu" or order.ndim not in (1, 2) or order.shape[-1] == 0:
            raise ValueError(f"order: expected a non-empty integer array of row indices (rows,) "
                             f"or (runs, rows), got {order.dtype} {order.shape}")
        if order.ndim == 2 and order.shape[0] != self.runs:
            raise ValueError(f"order: expected {self.runs} rows (one per run), got {order.shape}")
        if order.min() < 0 or order.max() >= data.n_rows:
            raise ValueError(f"order: indices must lie in [0, {data.n_rows - 1}]")
        order = np.ascontiguousarray(order.reshape(-1, order.shape[-1]), np.int64)
        from numba import cuda
        return cuda.to_device(order)

    @staticmethod
    def _per_run(value, runs, name):
        if isinstance(value, (list, tuple)):
            if len(value) != runs:
                raise ValueError(f"{name}: expected one or {runs} values, got {len(value)}")
            return list(value)
        return [value] * runs

    def _bind(self, opt, clip):
        clips = [Clip() if c is None else c for c in self._per_run(clip, self.runs, "clip")]
        self.engine.bind_optimizers(self._per_run(opt, self.runs, "opt"), clips)

    # ------------------------------------------------------------------ training
    def _step_batch(self, x, y, opt, clip):
        """One step on a host batch; returns the (loss, norm) records (runs, 1)."""
        xb, yb = self.check_runs_batch(x, y)
        self._bind(opt, clip)
        eng = self.engine
        eng.reserve(xb.shape[1])
        eng._records(1)
        xin, yin = eng.upload_batch(xb, yb)
        eng.train_step(xin, yin, xb.shape[1], 0)
        return eng.records(1)

    def _epoch(self, x, y, opt, batch_size, clip, order):
        data = x if isinstance(x, DeviceData) else self.upload(x, y)
        if data.runs not in (1, self.runs):
            raise ValueError(f"data: uploaded for {data.runs} runs, this group has {self.runs}")
        order_dev = self._order(order, data)
        batch_size = check_positive_int("batch_size", batch_size or order_dev.shape[1])
        n_steps = -(-order_dev.shape[1] // batch_size)
        self._bind(opt, clip)
        return self.engine.run_batches(data, order_dev, batch_size, n_steps)

    def _forward(self, x, training):
        """(runs, rows, n_L) outputs; evaluation goes in chunks of up to 4096 rows (or the
        workspace size), training mode in one batch (batch statistics)."""
        x = check_inputs(x, self.sizes[0], self.dtype)
        if training and self.template.batchnorm and len(x) < 2:
            raise ValueError("x: batch norm in training mode needs at least 2 rows, got 1")
        eng = self.engine
        chunk = len(x) if training else max(eng.cap, min(len(x), 4096))
        eng.reserve(chunk)
        outs = []
        for lo in range(0, len(x), chunk):
            part = x[lo:lo + chunk]
            xin, _ = eng.upload_batch(part[None], None)
            eng.forward(xin, len(part), bool(training))
            outs.append(eng.output_host(len(part)))
        return np.concatenate(outs, axis=1)

    def _loss_and_grads(self, x, y):
        xb, yb = self.check_runs_batch(x, y)
        eng = self.engine
        eng.reserve(xb.shape[1])
        eng._records(1)
        xin, yin = eng.upload_batch(xb, yb)
        eng.gradients(xin, yin, xb.shape[1], 0)
        loss, _ = eng.records(1)
        return loss[:, 0], eng.grads_host()

    # ------------------------------------------------------------------ host copies
    def params_host(self):
        """(runs, n_params) copy of the parameters."""
        return self.engine.params_host()

    def running_host(self):
        """(runs, 2 * units) copy of the batch-norm running means then variances."""
        return self.engine.running_host()

    def optimizer_state_host(self):
        """(m, v, t): (runs, n_params) moments and (runs,) optimizer step counts."""
        m, v = self.engine.moments_host()
        return m, v, self.engine.fetch_status()[:, 0].copy()

    def _to_cpu(self):
        params, running = self.engine.params_host(), self.engine.running_host()
        nets = []
        for r, template in enumerate(self.templates):
            net = template.copy()
            net.params[...] = params[r]
            net.running[...] = running[r]
            nets.append(net)
        return nets


def _check_same_architecture(a, b):
    same = (a.sizes == b.sizes and a.dtype == b.dtype and a.loss_name == b.loss_name
            and np.array_equal(a.spec.act_code, b.spec.act_code)
            and np.array_equal(a.spec.act_param, b.spec.act_param)
            and np.array_equal(a.spec.bn, b.spec.bn))
    if not same:
        raise ValueError(f"nets: every network of a multi-run group needs the same architecture "
                         f"(sizes, activations, loss, batch norm, dtype); got {a!r} and {b!r}")


class CudaMLP(NoCurvatureOnCuda, DeviceNets):
    """One network on the GPU: CudaMLP(mlp) or CudaMLP(sizes, **MLP constructor arguments)."""

    def __init__(self, net_or_sizes, **mlp_args):
        if isinstance(net_or_sizes, MLP):
            if mlp_args:
                raise ValueError(f"CudaMLP: constructor arguments {sorted(mlp_args)} apply only "
                                 f"when building from sizes, not from an MLP")
            net = net_or_sizes
        else:
            net = MLP(net_or_sizes, **mlp_args)
        super().__init__([net])

    def params_host(self):
        """Host copy of the flat parameter vector (n_params,)."""
        return self.engine.params_host()[0]

    def running_host(self):
        """Host copy of the batch-norm running means then variances."""
        return self.engine.running_host()[0]

    def optimizer_state_host(self):
        """(m, v, t): the optimizer moments (n_params,) and the step count."""
        m, v, t = super().optimizer_state_host()
        return m[0], v[0], int(t[0])

    @property
    def params(self):
        """Host copy of the flat parameter vector (edits do not reach the device)."""
        return self.params_host()

    @property
    def running(self):
        return self.running_host()

    @property
    def step_count(self):
        return int(self.engine.fetch_status()[0, 0])

    def _raise_if_diverged(self, loss, norm):
        t, bad = self.engine.status()
        if bad[0] >= 0:
            s = int(bad[0])
            raise DivergenceError(f"non-finite loss or gradient at optimizer step {t[0] + 1} "
                                  f"(loss {loss[0, s]!r}, gradient norm {norm[0, s]!r}); the "
                                  f"step was not applied", int(t[0]))

    def train_step(self, x, y, opt, clip=None):
        """One step (forward, loss, backward, clipping, update) on the device; returns the loss
        before the update; raises DivergenceError (nothing applied) on a non-finite step."""
        self.engine.clear_flags()
        loss, norm = self._step_batch(x, y, opt, clip)
        self._raise_if_diverged(loss, norm)
        return float(loss[0, 0])

    def train_epoch(self, x, y, opt, batch_size=None, clip=None, order=None):
        """Steps over consecutive batches of `order` (default: the rows in order; a permutation
        shuffles) with no host round trip; returns the per-step losses. x may be a DeviceData
        from `upload` (then y is ignored)."""
        self.engine.clear_flags()
        loss, norm = self._epoch(x, y, opt, batch_size, clip, order)
        self._raise_if_diverged(loss, norm)
        return loss[0]

    def forward(self, x, training=False):
        """Network output (batch, n_L), as MLP.forward."""
        return self._forward(x, training)[0]

    def predict(self, x):
        return np.argmax(self.forward(x), axis=1)

    def loss_and_grads(self, x, y):
        """(loss, dW list, db list) with batch statistics, nothing updated (as MLP)."""
        loss, grads = self._loss_and_grads(x, y)
        g = self.template.grads_by_name(grads[0])
        return float(loss[0]), g["W"], g["b"]

    def grads_by_name(self):
        """The gradient buffer of the last step or loss_and_grads, split by name."""
        return self.template.grads_by_name(self.engine.grads_host()[0])

    def to_cpu(self):
        """A CPU MLP with this network's parameters and running statistics."""
        return self._to_cpu()[0]

    def __repr__(self):
        return f"CudaMLP({self.template!r})"
