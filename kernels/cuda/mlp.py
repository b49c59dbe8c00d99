"""`CudaMLP`: an MLP whose parameters, optimizer state, workspaces and data live on the GPU.

Built from a CPU `MLP` (parameters, running statistics and architecture copied) or from the
`MLP` constructor arguments; it validates with the CPU network's own checks, then calls the
device engine (kernels.cuda.step). Results equal `MLP.train_step` step for step (float64 to
rounding: the GEMMs sum in another order than BLAS).
"""
import numpy as np

from ..clipping import Clip
from ..curvature import NoCurvatureOnCuda
from ..mlp import MLP, DivergenceError, evaluate_net
from ..runset import RunSet
from ..validation import check_inputs, check_positive_int
from . import require
from .step import DeviceData, Engine


class DeviceNets(RunSet):
    """Shared logic of CudaMLP (one network) and CudaMultiMLP (R networks, one architecture);
    the checks and properties common with the CPU MultiMLP come from kernels.runset.RunSet."""

    def __init__(self, nets):
        require()
        templates = self._set_templates(nets)
        first = templates[0]
        params = np.stack([net.params for net in templates])
        running = np.stack([net.running for net in templates])
        self.engine = Engine(first.spec, first.dtype, params, running)

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
        """The checked (1 or R, rows) orders (kernels.runset.check_orders), on the device."""
        from numba import cuda
        return cuda.to_device(self._orders(order, data.n_rows))

    def _bind(self, opt, clip):
        clips = [Clip() if c is None else c for c in self._per_run(clip, "clip")]
        self.engine.bind_optimizers(self._per_run(opt, "opts"), clips)

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

    def _forward(self, x, training, logits=False):
        """(runs, rows, n_L) outputs (logits: the output layer's activation input);
        evaluation goes in chunks of up to 4096 rows (or the workspace size), training mode in
        one batch (batch statistics)."""
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
            eng.forward(xin, len(part), bool(training), softmax=not logits)
            outs.append(eng.output_host(len(part), logits))
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


class CudaMLP(NoCurvatureOnCuda, DeviceNets):
    """One network on the GPU: CudaMLP(mlp) or CudaMLP(sizes, **MLP constructor arguments).

    The public API of the CPU MLP. On the device: train_step, train_epoch, fit, forward,
    predict, loss, accuracy, evaluate (forward pass on the device, the float64 loss of its
    outputs on the host) and loss_and_grads. Host copies (taken when read; edits do not reach
    the device): params, weights, biases, gammas, betas, running, running_mean, running_var,
    grads_by_name(). trace runs on a host copy (to_cpu()): it returns every intermediate,
    which the device does not keep."""

    device = "cuda"

    def __init__(self, net_or_sizes, **mlp_args):
        if isinstance(net_or_sizes, MLP):
            if mlp_args:
                raise ValueError(f"CudaMLP: constructor arguments {sorted(mlp_args)} apply only "
                                 f"when building from sizes, not from an MLP")
            net = net_or_sizes
        else:
            mlp_args.pop("device", None)
            net = MLP(net_or_sizes, **mlp_args)
        super().__init__([net])

    # ------------------------------------------------------------------ architecture
    @property
    def loss_name(self):
        return self.template.loss_name

    @property
    def hidden_activations(self):
        return list(self.template.hidden_activations)

    @property
    def output_activation(self):
        return self.template.output_activation

    @property
    def activations(self):
        return self.template.activations

    @property
    def init(self):
        return self.template.init

    @property
    def seed(self):
        return self.template.seed

    def config(self):
        """The constructor arguments of the network (as MLP.config)."""
        return self.template.config()

    # ------------------------------------------------------------------ host copies
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
        """Host copy of the running statistics (edits do not reach the device)."""
        return self.running_host()

    def _host_views(self, kind):
        return self.template.grads_by_name(self.params_host())[kind]

    @property
    def weights(self):
        """W[l] of shape (n_{l+1}, n_l): host copies (one copy of the parameters per read)."""
        return self._host_views("W")

    @property
    def biases(self):
        return self._host_views("b")

    @property
    def gammas(self):
        """Batch-norm scales per layer (None where a layer has no batch norm), host copies."""
        return self._host_views("gamma")

    @property
    def betas(self):
        return self._host_views("beta")

    @property
    def running_mean(self):
        return self.to_cpu().running_mean

    @property
    def running_var(self):
        return self.to_cpu().running_var

    def grads_by_name(self, buf=None):
        """The gradient buffer of the last step or loss_and_grads (or `buf`), split by name."""
        buf = self.engine.grads_host()[0] if buf is None else buf
        return self.template.grads_by_name(buf)

    @property
    def step_count(self):
        return int(self.engine.fetch_status()[0, 0])

    # ------------------------------------------------------------------ training
    def check_batch(self, x, y):
        return self.template.check_batch(x, y)

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

    def fit(self, x, y, opt, **options):
        """As MLP.fit, on the device (kernels.cuda.fit.fit_device); returns a History."""
        from .fit import fit_device
        return fit_device(self, x, y, opt, **options)

    # ------------------------------------------------------------------ evaluation
    def forward(self, x, training=False, logits=False):
        """Network output (batch, n_L), as MLP.forward (logits: the output layer's activation
        input)."""
        return self._forward(x, training, logits)[0]

    def predict(self, x):
        return np.argmax(self.forward(x), axis=1)

    def accuracy(self, x, labels):
        labels = np.asarray(labels)
        if labels.ndim == 2:
            labels = labels.argmax(axis=1)
        return float(np.mean(self.predict(x) == labels))

    def evaluate(self, x, y, training=False):
        """(loss, accuracy) as MLP.evaluate: the forward pass on the device, the float64 loss
        (log-sum-exp of the logits for cross-entropy) on the host."""
        return evaluate_net(self, x, y, training)

    def loss(self, x, y, training=False):
        return self.evaluate(x, y, training)[0]

    def loss_and_grads(self, x, y):
        """(loss, dW list, db list) with batch statistics, nothing updated (as MLP)."""
        loss, grads = self._loss_and_grads(x, y)
        g = self.template.grads_by_name(grads[0])
        return float(loss[0]), g["W"], g["b"]

    def trace(self, x, y):
        """MLP.trace on a host copy (to_cpu()): every intermediate of one forward/backward pass
        by name, as float64 copies; nothing is updated."""
        return self.to_cpu().trace(x, y)

    def to_cpu(self):
        """A CPU MLP with this network's parameters and running statistics."""
        return self._to_cpu()[0]

    def copy(self):
        """An independent device network with the same parameters and running statistics."""
        return CudaMLP(self.to_cpu())

    def __repr__(self):
        return f"CudaMLP({self.template!r})"
