"""`Engine`: the device buffers of R networks of one architecture and the launch sequence of a
training step; CudaMLP (R = 1) and CudaMultiMLP are thin wrappers over it.

A step is a fixed sequence of asynchronous kernel launches (forward GEMMs with fused bias and
activation, batch norm, loss, backward GEMMs, the gradient-norm reduction, clipping and the
update); learning rate, clip coefficients, step counts and divergence flags are computed and
kept on the device, so any number of steps runs without a host round trip. Only the per-step
losses and norms (and the small per-run status) are copied back, once, at the end of a call.
"""
import numpy as np
from numba import cuda

from ..activations import SOFTMAX
from ..clipping import Clip
from ..optimizers import N_CODES, N_HYPER, Optimizer
from ._jit import BLOCK, CHUNK, MAX_LAYERS, REDUCE, THREADS_2D, TILE, blocks
from .batchnorm import batchnorm_backward, batchnorm_forward, batchnorm_update_running
from .dense import dense_backward_input, dense_backward_weights, dense_forward
from .elementwise import gather_rows, loss_forward_backward, softmax_output
from .optimizers import finalize_step, grad_sumsq, optimizer_update
from .tables import FLAG, FLAG_STEP, GRAD, MOM1, MOM2, REC_LOSS, REC_NORM, S_A, S_Z, T, \
    THETA, U_OFF, layer_tables

GEMM_BLOCK = (THREADS_2D, THREADS_2D)


class DeviceData:
    """A data set resident on the device: x (runs, rows, n_0), y (runs, rows, n_L) in kernel form
    (one-hot targets for cross-entropy); runs = 1 when every network trains on the same data."""

    def __init__(self, x, y):
        self.x = cuda.to_device(np.ascontiguousarray(x))
        self.y = cuda.to_device(np.ascontiguousarray(y))
        self.runs, self.n_rows = x.shape[0], x.shape[1]


class Engine:
    """R networks of one architecture (NetSpec `spec`) on the device."""

    def __init__(self, spec, dtype, params, running):
        self.spec, self.dtype = spec, np.dtype(dtype)
        self.sizes = [int(s) for s in spec.sizes]
        self.n_layers = len(self.sizes) - 1
        if self.n_layers > MAX_LAYERS:
            raise ValueError(f"sizes: the CUDA path supports up to {MAX_LAYERS} layers, "
                             f"got {self.n_layers}")
        self.runs, self.n_params = params.shape
        self.n_units = int(sum(self.sizes[1:]))
        self.has_bn = bool(np.any(spec.bn))
        self.softmax_out = int(spec.act_code[-1]) == SOFTMAX
        state = np.zeros((4, self.runs, self.n_params), self.dtype)
        state[THETA] = params
        self.state = cuda.to_device(state)
        self.running = cuda.to_device(np.ascontiguousarray(running, self.dtype))
        self.tstat_host = np.zeros((self.runs, 3), np.int64)
        self.tstat = cuda.to_device(self.tstat_host)
        self.ctrl = cuda.to_device(np.zeros((self.runs, self.n_layers + 1)))
        self.codes_host = np.full((self.runs, N_CODES), -1, np.int64)
        self.hyper_host = np.full((self.runs, N_HYPER), np.nan)
        self.codes = cuda.to_device(self.codes_host)
        self.hyper = cuda.to_device(self.hyper_host)
        self.opts = [None] * self.runs
        self.cap = 0
        self.units = self.bnstat = self.net = self.netf = None
        self.chunks = self.part = self.rec = None
        self._batch = {}
        self.reserve(1)

    # ------------------------------------------------------------------ buffers
    def reserve(self, n_rows):
        """Grows the per-unit workspaces to hold batches of n_rows rows."""
        if n_rows <= self.cap:
            return
        self.cap = int(n_rows)
        net, netf, chunks = layer_tables(self.spec, self.cap, CHUNK)
        self.net, self.netf = cuda.to_device(net), cuda.to_device(netf)
        self.net_host = net
        if self.chunks is None:
            self.chunks = cuda.to_device(chunks)
            self.part = cuda.device_array((self.runs, len(chunks)), np.float64)
        self.units = cuda.to_device(np.zeros((6, self.runs, self.cap * self.n_units), self.dtype))
        self.bnstat = cuda.to_device(np.zeros((2, self.runs, self.n_units), self.dtype))

    def _records(self, n_steps):
        if self.rec is None or self.rec.shape[2] < n_steps:
            self.rec = cuda.to_device(np.zeros((2, self.runs, max(n_steps, 1))))
        return self.rec

    def batch_buffer(self, name, rows, width):
        """A reusable (rows, width) device buffer."""
        buf = self._batch.get(name)
        if buf is None or buf.shape != (rows, width):
            buf = cuda.device_array((rows, width), self.dtype)
            self._batch[name] = buf
        return buf

    def upload_batch(self, x, y):
        """Host batch (runs or 1, rows, n) arrays -> the device batch buffers."""
        xin = self.batch_buffer("x", x.shape[0], x[0].size)
        xin.copy_to_device(x.reshape(x.shape[0], -1))
        yin = None
        if y is not None:
            yin = self.batch_buffer("y", y.shape[0], y[0].size)
            yin.copy_to_device(y.reshape(y.shape[0], -1))
        return xin, yin

    # ------------------------------------------------------------------ optimizer state
    def bind_optimizers(self, opts, clips):
        """Per-run hyperparameters (uploaded when they change); a new optimizer object starts
        from its own CPU state if it has one (e.g. bound to the source MLP), else from zero."""
        vectors = []
        for opt, clip in zip(opts, clips):  # every run checked before anything changes
            if not isinstance(opt, Optimizer):
                raise ValueError(f"opt: expected an optimizer from kernels.optimizers, got {opt!r}")
            if not isinstance(clip, Clip):
                raise ValueError(f"clip: expected a kernels.clipping.Clip, got {clip!r}")
            vectors.append(opt.codes_and_hyper(clip, self.dtype))
        changed = False
        for r, (opt, (codes, hyper)) in enumerate(zip(opts, vectors)):
            if opt is not self.opts[r]:
                self._reset_optimizer_state(r, opt)
            if not (np.array_equal(codes, self.codes_host[r])
                    and np.array_equal(hyper, self.hyper_host[r])):
                self.codes_host[r], self.hyper_host[r] = codes, hyper
                changed = True
        if changed:
            self.codes.copy_to_device(self.codes_host)
            self.hyper.copy_to_device(self.hyper_host)

    def _reset_optimizer_state(self, r, opt):
        m = np.zeros(self.n_params, self.dtype)
        v = np.zeros(self.n_params, self.dtype)
        t = 0
        if opt.state is not None and opt.state[0].shape == (self.n_params,):
            m, v = (np.asarray(s, self.dtype) for s in opt.state[:2])
            t = int(opt.state[2][0])
        self.state[MOM1, r].copy_to_device(m)
        self.state[MOM2, r].copy_to_device(v)
        self.fetch_status()  # the other runs' step counts live on the device
        self.tstat_host[r, T] = t
        self.tstat.copy_to_device(self.tstat_host)
        self.opts[r] = opt

    def clear_flags(self):
        """Forgets earlier non-finite steps (their runs train again); tstat_host must be
        current (fetched after the last training call)."""
        if self.tstat_host[:, FLAG].any():
            self.tstat_host[:, FLAG:] = 0
            self.tstat.copy_to_device(self.tstat_host)

    def fetch_status(self):
        """(runs, 3) int64 host copy of [t, flag, flag_step] (one small copy)."""
        self.tstat_host = self.tstat.copy_to_host()
        return self.tstat_host

    # ------------------------------------------------------------------ launch sequences
    def forward(self, xin, n_batch, training, softmax=True):
        """Forward pass of the batch in xin; training: batch-norm batch statistics."""
        grid_r = self.runs
        for layer in range(self.n_layers):
            n_out = self.sizes[layer + 1]
            dense_forward[(blocks(n_out, TILE), blocks(n_batch, TILE), grid_r), GEMM_BLOCK](
                self.units, xin, self.state, self.net, self.netf, layer, n_batch)
            if self.spec.bn[layer]:
                batchnorm_forward[(blocks(n_out, BLOCK), grid_r), BLOCK](
                    self.units, self.state, self.bnstat, self.running, self.net, self.netf,
                    layer, n_batch, bool(training))
        if softmax and self.softmax_out:
            softmax_output[(blocks(n_batch, BLOCK), grid_r), BLOCK](self.units, self.net, n_batch)

    def gradients(self, xin, yin, n_batch, step):
        """Forward, loss (-> rec[REC_LOSS, :, step]) and backward into state[GRAD]."""
        self.forward(xin, n_batch, True, softmax=False)
        loss_forward_backward[(1, self.runs), REDUCE](self.units, yin, self.rec, self.net,
                                                      self.netf, n_batch, step)
        for layer in range(self.n_layers - 1, -1, -1):
            n_in, n_out = self.sizes[layer], self.sizes[layer + 1]
            if self.spec.bn[layer]:
                batchnorm_backward[(blocks(n_out, BLOCK), self.runs), BLOCK](
                    self.units, self.state, self.bnstat, self.net, self.netf, layer, n_batch)
            dense_backward_weights[(blocks(n_in + 1, TILE), blocks(n_out, TILE), self.runs),
                                   GEMM_BLOCK](self.state, self.units, xin, self.net, layer,
                                               n_batch)
            if layer > 0:
                dense_backward_input[(blocks(n_in, TILE), blocks(n_batch, TILE), self.runs),
                                     GEMM_BLOCK](self.units, self.state, self.net, self.netf,
                                                 layer, n_batch)

    def train_step(self, xin, yin, n_batch, step):
        """One training step of every run on the batch; records column `step`."""
        self.gradients(xin, yin, n_batch, step)
        n_chunks = self.chunks.shape[0]
        grad_sumsq[(n_chunks, self.runs), REDUCE](self.part, self.state, self.chunks)
        finalize_step[self.runs, REDUCE](self.part, self.rec, self.tstat, self.ctrl, self.codes,
                                         self.hyper, self.net, step)
        if self.has_bn:
            batchnorm_update_running[(blocks(self.n_units, BLOCK), self.runs), BLOCK](
                self.running, self.bnstat, self.tstat, self.net, self.netf, n_batch)
        optimizer_update[(n_chunks, self.runs), BLOCK](self.state, self.ctrl, self.tstat,
                                                       self.codes, self.hyper, self.chunks)

    def run_batches(self, data, order, batch_size, n_steps):
        """n_steps steps over consecutive batches order[s*B:(s+1)*B] of a DeviceData (order: a
        device int64 array of 1 or R rows); returns the (loss, norm) records (runs, n_steps)."""
        n_rows = order.shape[1]
        self.reserve(min(batch_size, n_rows))
        self._records(n_steps)
        rows = self.runs if (data.runs > 1 or order.shape[0] > 1) else 1
        xin = self.batch_buffer("gx", rows, self.cap * self.sizes[0])
        yin = self.batch_buffer("gy", rows, self.cap * self.sizes[-1])
        for step in range(n_steps):
            lo = step * batch_size
            n_batch = min(n_rows, lo + batch_size) - lo
            for dst, src in ((xin, data.x), (yin, data.y)):
                gather_rows[(blocks(n_batch * src.shape[2], BLOCK), rows), BLOCK](
                    dst, src, order, lo, n_batch)
            self.train_step(xin, yin, n_batch, step)
        return self.records(n_steps)

    def records(self, n_steps):
        """Host copies of the loss and gradient-norm records, each (runs, n_steps)."""
        rec = self.rec.copy_to_host()
        return rec[REC_LOSS, :, :n_steps], rec[REC_NORM, :, :n_steps]

    # ------------------------------------------------------------------ host copies
    def params_host(self):
        return self.state[THETA].copy_to_host()

    def grads_host(self):
        return self.state[GRAD].copy_to_host()

    def running_host(self):
        return self.running.copy_to_host()

    def moments_host(self):
        return self.state[MOM1].copy_to_host(), self.state[MOM2].copy_to_host()

    def output_host(self, n_batch, logits=False):
        """Network outputs of the last forward pass: (runs, n_batch, n_L); logits: the output
        layer's activation input z instead."""
        last = self.n_layers - 1
        lo = int(self.net_host[last, U_OFF])
        width = self.sizes[-1]
        slot = S_Z if logits else S_A
        if self.runs == 1:
            out = self.units[slot, 0, lo:lo + n_batch * width].copy_to_host()[None]
        else:
            out = self.units[slot].copy_to_host()[:, lo:lo + n_batch * width]
        return out.reshape(self.runs, n_batch, width)

    def status(self):
        """Per run: optimizer steps taken and the step index of a non-finite step, or -1."""
        tstat = self.fetch_status()
        return tstat[:, T].copy(), np.where(tstat[:, FLAG] != 0, tstat[:, FLAG_STEP], -1)
