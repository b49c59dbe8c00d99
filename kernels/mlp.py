"""`MLP`: the thin Python API over the fused kernels (validate, allocate, call)."""
import operator

import numpy as np

from . import step as K
from .gemm_threads import hold_one_thread, release, step_flops
from .activations import ACTIVATIONS, PARAMETRIC, RELU_FAMILY  # noqa: F401 (RELU_FAMILY)
from .batchnorm import BN_EPS, BN_MOMENTUM
from .clipping import Clip
from .curvature import CurvatureMixin
from .init import INITS, sample_biases, sample_weights
from .layer_stats import output_scores
from .layout import allocate_record, allocate_workspace, build_netspec, divergence_cause, \
    pack_netspec, pack_record, pack_workspace, running_stats_buffer
from .losses import LOSSES
from .optimizers import Optimizer
from .split_stages import split_point
from .split_step import second_side_buffers, split_batches
from .step_helper import splits, step_flags
from .training import DivergenceError, fit as fit_epochs
from .validation import check_bool, check_choice, check_dtype, check_inputs, \
    check_nonnegative, check_positive, check_seed, check_sizes, check_targets

NO_CLIP = Clip()
_ATTRIBUTE_GETTERS = {}  # optimizer type -> attrgetter of its hyperparameter attributes


class MLP(CurvatureMixin):
    """A multi-layer perceptron on one flat parameter buffer.

    sizes: widths (n_0, ..., n_L). activation: a name, or one per hidden layer.
    init: a name from INITS (default: the first hidden activation's matched init, he_normal for
    the ReLU family, else xavier_normal), with
    `gain`, `init_scale` (naive inits) and `bias_scale` (biases ~ N(0, bias_scale^2)).
    loss: "cross_entropy" (softmax output) or "mse" (identity output by default).
    batchnorm: batch norm between the affine map and the activation of every hidden layer.
    """

    def __new__(cls, *args, device="cpu", **kwargs):
        """MLP(..., device="cuda") builds the network on the CPU, then moves it to the GPU
        (a kernels.cuda.CudaMLP; CudaUnavailableError, a ValueError, without a GPU)."""
        if device == "cuda":
            from .cuda import CudaMLP, require
            require()
            return CudaMLP(MLP(*args, device="cpu", **kwargs))
        return super().__new__(cls)

    def __init__(self, sizes, activation="relu", init=None, loss="cross_entropy",
                 output_activation=None, batchnorm=False, dtype="float64", seed=0, gain=1.0,
                 init_scale=None, bias_scale=0.0, activation_param=None, device="cpu"):
        self.sizes = check_sizes(sizes)
        n_hidden = len(self.sizes) - 2
        self.hidden_activations = self._check_activations(activation, n_hidden)
        self.loss_name = check_choice("loss", loss, LOSSES)
        self.output_activation = self._check_output(output_activation)
        self.init = self._check_init(init, init_scale)
        self.gain = check_positive("gain", gain)
        self.init_scale = init_scale
        self.bias_scale = check_nonnegative("bias_scale", bias_scale)
        self.batchnorm = check_bool("batchnorm", batchnorm)
        self.dtype = check_dtype(dtype)
        self.seed = check_seed("seed", seed)
        check_choice("device", device, {"cpu": 0, "cuda": 1})
        self.device = "cpu"
        names = self.hidden_activations + [self.output_activation]
        params = [self._activation_param(name, activation_param) for name in names]
        self.spec, self.n_params = build_netspec(
            self.sizes, [ACTIVATIONS[n].code for n in names], params, self.batchnorm,
            LOSSES[self.loss_name].code, BN_EPS, BN_MOMENTUM)
        self.params = np.zeros(self.n_params, self.dtype)
        self.grads = np.zeros(self.n_params, self.dtype)
        self.running = running_stats_buffer(self.sizes, self.dtype)
        self._packed_spec = pack_netspec(self.spec)
        self._step_flops = step_flops(self.sizes, 1)  # GEMM FLOPs of a step per batch row
        self._reset_buffers()
        self.reset_parameters(seed)

    # ------------------------------------------------------------------ construction checks
    @staticmethod
    def _check_activations(activation, n_hidden):
        if isinstance(activation, str):
            names = [activation] * n_hidden
        elif isinstance(activation, (list, tuple)):
            names = list(activation)
        else:
            raise ValueError(f"activation: expected a name or a list of {n_hidden} names (one "
                             f"per hidden layer), got {activation!r}")
        if len(names) != n_hidden:
            raise ValueError(f"activation: expected one name or a list of {n_hidden} (one per "
                             f"hidden layer), got {len(names)}")
        hidden = {k: v for k, v in ACTIVATIONS.items() if v.hidden}
        return [check_choice("activation", n, hidden) for n in names]

    def _check_output(self, output_activation):
        default = LOSSES[self.loss_name].default_output
        name = check_choice("output_activation", output_activation or default, ACTIVATIONS)
        if self.loss_name == "cross_entropy" and name != "softmax":
            raise ValueError(f"output_activation: cross_entropy is taken on softmax outputs; "
                             f"expected 'softmax', got {name!r}")
        return name

    def _check_init(self, init, init_scale):
        if init is None:
            first = self.hidden_activations[0] if self.hidden_activations else "identity"
            init = ACTIVATIONS[first].matched_init
        check_choice("init", init, INITS)
        if INITS[init].needs_scale:
            if init_scale is None:
                raise ValueError(f"init_scale: init {init!r} needs a scale (its std or bound)")
            check_positive("init_scale", init_scale)
        return init

    @staticmethod
    def _activation_param(name, value):
        default = ACTIVATIONS[name].default_param
        if name not in PARAMETRIC or value is None:
            return default
        return check_nonnegative("activation_param", value)

    def reset_parameters(self, seed=None):
        """Draws weights and biases from `seed` (float64, then cast); gamma = 1, beta = 0."""
        rng = np.random.default_rng(self.seed if seed is None else check_seed("seed", seed))
        weights, biases = self.weights, self.biases  # each property builds every layer's view
        gammas, betas = self.gammas, self.betas
        for layer in range(self.n_layers):
            n_in, n_out = self.sizes[layer], self.sizes[layer + 1]
            weights[layer][...] = sample_weights(self.init, n_out, n_in, rng, self.gain,
                                                 self.init_scale)
            biases[layer][...] = sample_biases(n_out, rng, self.bias_scale)
            if self.spec.bn[layer]:
                gammas[layer][...] = 1.0
                betas[layer][...] = 0.0
        self.running[...] = running_stats_buffer(self.sizes, self.dtype)

    # ------------------------------------------------------------------ views
    @property
    def n_layers(self):
        return len(self.sizes) - 1

    @property
    def activations(self):
        return self.hidden_activations + [self.output_activation]

    def _views(self, buf, kind):
        spec, views = self.spec, []
        for layer in range(self.n_layers):
            n_in, n_out = self.sizes[layer], self.sizes[layer + 1]
            if kind == "W":
                views.append(buf[spec.w_off[layer]:spec.w_off[layer] + n_out * n_in]
                             .reshape(n_out, n_in))
                continue
            off = {"b": spec.b_off, "gamma": spec.g_off, "beta": spec.beta_off}[kind][layer]
            views.append(buf[off:off + n_out] if off >= 0 else None)
        return views

    @property
    def weights(self):
        """W[l] of shape (n_{l+1}, n_l): views into the flat buffer (in-place edits count)."""
        return self._views(self.params, "W")

    @property
    def biases(self):
        return self._views(self.params, "b")

    @property
    def gammas(self):
        """Batch-norm scales per layer (None where a layer has no batch norm)."""
        return self._views(self.params, "gamma")

    @property
    def betas(self):
        return self._views(self.params, "beta")

    @property
    def running_mean(self):
        units = len(self.running) // 2
        return self._unit_views(self.running[:units])

    @property
    def running_var(self):
        units = len(self.running) // 2
        return self._unit_views(self.running[units:])

    def _unit_views(self, buf):
        return [buf[s:s + n] if self.spec.bn[layer] else None
                for layer, (s, n) in enumerate(zip(self.spec.unit_start, self.sizes[1:]))]

    def grads_by_name(self, buf=None):
        """{'W': [...], 'b': [...], 'gamma': [...], 'beta': [...]} views of a gradient buffer."""
        buf = self.grads if buf is None else buf
        return {k: self._views(buf, k) for k in ("W", "b", "gamma", "beta")}

    # ------------------------------------------------------------------ kernels
    def _reset_buffers(self):
        """Fresh per-network scratch: workspace, one-step record, label and row buffers."""
        self._work = None
        self._packed_work = None
        self._step_record = allocate_record(1, self.n_layers)
        self._packed_step_record = pack_record(self._step_record)
        self._onehot = np.zeros((0, self.sizes[-1]), self.dtype)
        self._rows = np.arange(0, dtype=np.int64)
        self._opt_cache = {}
        self._second = None
        self._split = split_point(self.sizes)

    def workspace(self, n_rows):
        """The preallocated workspace, grown to hold at least n_rows rows."""
        if self._work is None or self._work.cap < n_rows:
            cap = max(n_rows, 1 if self._work is None else self._work.cap)
            self._work = allocate_workspace(np.asarray(self.sizes), cap, self.dtype)
            self._packed_work = pack_workspace(self._work)
        return self._work

    def _packed_workspace(self, n_rows):
        self.workspace(n_rows)
        return self._packed_work

    def _second_side(self, cap):
        """The buffers of a split step's second side (split_step), for batches up to cap."""
        if self._second is None or self._second[0][1][3] < cap:
            self._second = second_side_buffers(self.sizes, cap, self.dtype, self.n_params)
        return self._second

    @property
    def classification(self):
        return self.loss_name == "cross_entropy"

    def check_batch(self, x, y):
        """x, y validated and converted to kernel form (y one-hot for cross-entropy)."""
        x = check_inputs(x, self.sizes[0], self.dtype)
        y = check_targets(y, len(x), self.sizes[-1], self.classification, self.dtype)
        if self.batchnorm and len(x) < 2:
            raise ValueError("x: batch norm needs at least 2 rows per batch in training mode, "
                             "got 1")
        return x, y

    def forward(self, x, training=False, logits=False):
        """Network output (batch, n_L); softmax probabilities for cross-entropy (logits=True:
        the output layer's activation input). With batch norm, evaluation mode (running
        averages) unless training=True (batch statistics)."""
        x = check_inputs(x, self.sizes[0], self.dtype)
        if training and self.batchnorm and len(x) < 2:
            raise ValueError("x: batch norm in training mode needs at least 2 rows, got 1")
        self.workspace(len(x) if training else min(len(x), 4096))
        out = np.empty((len(x), self.sizes[-1]), self.dtype)
        held = hold_one_thread(self._step_flops / 3 * min(len(x), self._work.cap))
        try:
            K.predict_packed(self._packed_spec, self.params, self.running, self._packed_work,
                             x, out, bool(training), bool(logits))
        finally:
            release(held)
        return out

    def _load_batch(self, x, y):
        work = self.workspace(len(x))
        work.x[:x.size] = x.ravel()
        work.y[:y.size] = y.ravel()
        return work

    def loss_and_grads(self, x, y):
        """(loss, dW list, db list) on the batch, with batch statistics; nothing is updated.
        Gradients of gamma/beta: `grads_by_name()` after this call."""
        x, y = self.check_batch(x, y)
        self._load_batch(x, y)
        loss = self._gradients(len(x))
        g = self.grads_by_name(self.grads.copy())
        return float(loss), g["W"], g["b"]

    def _gradients(self, n_rows):
        """The gradients kernel on the loaded batch, its GEMMs threaded as a train step's."""
        held = hold_one_thread(self._step_flops * n_rows)
        try:
            return K.gradients_packed(self._packed_spec, (self.params, self.grads,
                                                          self.running), self._packed_work,
                                      n_rows, self._packed_step_record)
        finally:
            release(held)

    def loss(self, x, y, training=False):
        """The loss of the batch (evaluation mode unless training=True)."""
        return self.evaluate(x, y, training)[0]

    def evaluate(self, x, y, training=False):
        """(loss, accuracy) from one forward pass (accuracy None for MSE); see `evaluate_net`."""
        return evaluate_net(self, x, y, training)

    def trace(self, x, y):
        """Every intermediate of one forward/backward pass by name, as float64 copies:
        z{l}, xhat{l}, h{l}, a{l} (a{L} = yhat), delta{l} = dL/dz{l}, dW{l}, db{l}, dgamma{l},
        dbeta{l} for layers l = 1..L, and 'loss'. Nothing is updated."""
        x, y = self.check_batch(x, y)
        work = self._load_batch(x, y)
        loss = self._gradients(len(x))
        out, n = {"loss": float(loss)}, len(x)
        g = self.grads_by_name()
        for layer in range(self.n_layers):
            start = work.cap * self.spec.unit_start[layer]
            width = self.sizes[layer + 1]

            def block(buf):
                return buf[start:start + n * width].reshape(n, width).astype(np.float64)
            k = layer + 1
            out[f"z{k}"] = block(work.z)
            out[f"h{k}"] = block(work.h) if self.spec.bn[layer] else out[f"z{k}"].copy()
            if self.spec.bn[layer]:
                out[f"xhat{k}"] = block(work.xhat)
                out[f"dgamma{k}"] = g["gamma"][layer].astype(np.float64)
                out[f"dbeta{k}"] = g["beta"][layer].astype(np.float64)
            out[f"a{k}"] = block(work.a)
            out[f"delta{k}"] = block(work.dz)
            out[f"dW{k}"] = g["W"][layer].astype(np.float64)
            out[f"db{k}"] = g["b"][layer].astype(np.float64)
        return out

    def train_step(self, x, y, opt, clip=None):
        """One fused step (forward, loss, backward, statistics, clipping, update) in place.
        Returns the loss before the update; raises DivergenceError (nothing applied: parameters,
        moments and step count unchanged) if the loss, the gradient or the update is not finite,
        naming which. Per-layer statistics: `last_step_stats()`. A step below
        gemm_threads.ONE_THREAD_FLOPS runs its GEMMs on one BLAS thread, so its bits do not
        depend on the process's BLAS thread count; with split steps switched on
        (step_helper), a large enough one splits over two threads when the process allows
        two or more, and its bits then depend on the count only through that."""
        batch = self._kernel_form(x, y)
        x, y = batch if batch is not None else self.check_batch(x, y)
        if len(self._rows) < len(x):
            self._rows = np.arange(len(x), dtype=np.int64)
        rec = self._step_record
        self.run_steps(x, y, self._rows[:len(x)], len(x), opt, clip, rec)
        return float(rec.loss[0])

    def _kernel_form(self, x, y):
        """(x, y) for the kernel without copying or re-validating in Python when x already is a
        C-contiguous array of the network's dtype and y integer labels (one-hot into a reused
        buffer) or kernel-form targets; None otherwise, and for anything invalid, so that
        check_batch converts or raises with its full message. Finiteness and label range are
        checked by small compiled kernels (~1 us instead of ~15 us)."""
        if type(x) is not np.ndarray or type(y) is not np.ndarray or x.dtype != self.dtype \
                or x.ndim != 2 or x.shape[1] != self.sizes[0] or not x.flags.c_contiguous \
                or len(x) < 1 + self.batchnorm or len(y) != len(x) or not K.all_finite(x):
            return None
        if self.classification and y.ndim == 1 and y.dtype.kind in "iu":
            if len(self._onehot) < len(x):
                self._onehot = np.zeros((len(x), self.sizes[-1]), self.dtype)
            onehot = self._onehot[:len(x)]
            return (x, onehot) if K.load_labels(onehot, y) else None
        if not self.classification and y.dtype == self.dtype and y.ndim == 2 \
                and y.shape[1] == self.sizes[-1] and y.flags.c_contiguous and K.all_finite(y):
            return x, y
        return None

    def _opt_vectors(self, opt, clip):
        """opt.codes_and_hyper(clip, dtype), cached on the values of the optimizer's attributes
        (any change, such as a new lr, gives a new entry and is checked)."""
        getter = _ATTRIBUTE_GETTERS.get(type(opt))
        if getter is None:
            names = sorted(k for k in vars(opt) if k not in ("state", "_owner"))
            getter = _ATTRIBUTE_GETTERS[type(opt)] = operator.attrgetter(*names)
        try:
            key = (type(opt), clip, getter(opt))
            return self._opt_cache[key]
        except KeyError:
            pass
        except (TypeError, AttributeError):  # unhashable or missing attributes: no caching
            return opt.codes_and_hyper(clip, self.dtype)
        if len(self._opt_cache) > 16:
            self._opt_cache.clear()
        vectors = self._opt_cache[key] = opt.codes_and_hyper(clip, self.dtype)
        return vectors

    def run_steps(self, x, y, order, batch_size, opt, clip, rec):
        """Low level: len(rec.loss) steps over batches order[s*B:(s+1)*B] of validated x, y
        (kernel form). Returns steps completed; raises DivergenceError on a non-finite step."""
        if not isinstance(opt, Optimizer):
            raise ValueError(f"opt: expected an optimizer from kernels.optimizers, got {opt!r}")
        clip = NO_CLIP if clip is None else clip
        if not isinstance(clip, Clip):
            raise ValueError(f"clip: expected a kernels.clipping.Clip, got {clip!r}")
        codes, hyper = self._opt_vectors(opt, clip)
        m, v, t = opt.bind(self, self.n_params, self.dtype)
        work = self._packed_workspace(min(batch_size, len(order)))
        rec.status[:] = 0
        packed = self._packed_step_record if rec is self._step_record else pack_record(rec)
        target = rec
        if packed is None:  # a Record built by hand: run on a packed one, then copy back
            rec = allocate_record(*rec.w_grad_norm.shape)
            packed = pack_record(rec)
        n_batch = min(batch_size, len(order))
        held = hold_one_thread(self._step_flops * n_batch)
        try:
            model, opt_state = (self.params, self.grads, self.running), (codes, hyper, m, v, t)
            data = (x, y, order, int(batch_size))
            if splits(self._step_flops * n_batch, held, self.batchnorm, n_batch) \
                    and x.flags.c_contiguous and y.flags.c_contiguous:
                second, job = self._second_side(work[3])
                done = split_batches(self._packed_spec, model, opt_state, work, data, packed,
                                     second, job, step_flags(), self._split, self.dtype.type)
            else:
                done = K.train_batches(self._packed_spec, model, opt_state, work, data, packed)
        finally:
            release(held)
        if rec is not target:
            for name, values in zip(rec._fields, rec):
                getattr(target, name)[...] = values
            rec = target
        if rec.status[0]:
            step = opt.step_count
            cause = divergence_cause(rec.status[0])
            raise DivergenceError(f"{cause} at optimizer step {step + 1} (loss "
                                  f"{rec.loss[done]!r}, gradient norm {rec.grad_norm[done]!r}); "
                                  f"the step was not applied", step)
        return done

    def last_step_stats(self):
        """Statistics of the last train_step / loss_and_grads, as a dict of floats and arrays."""
        rec = self._step_record
        return {"loss": float(rec.loss[0]), "grad_norm": float(rec.grad_norm[0]),
                "grad_norm_clipped": float(rec.grad_norm_clipped[0]), "lr": float(rec.lr[0]),
                "w_grad_norm": rec.w_grad_norm[0].copy(), "b_grad_norm": rec.b_grad_norm[0].copy(),
                "delta_norm": rec.delta_norm[0].copy(), "w_norm": rec.w_norm[0].copy(),
                "w_update_norm": rec.w_update_norm[0].copy(),
                "status": int(rec.status[0])}

    def fit(self, x, y, opt, **options):
        """Trains for some epochs: kernels.training.fit, the epoch loop of MultiMLP on this
        network as a group of one (a SingleRun); returns a History."""
        return fit_epochs(self, x, y, opt, **options)

    def predict(self, x):
        """Class labels (argmax of the output) in evaluation mode."""
        return np.argmax(self.forward(x), axis=1)

    def accuracy(self, x, labels):
        labels = np.asarray(labels)
        if labels.ndim == 2:
            labels = labels.argmax(axis=1)
        return float(np.mean(self.predict(x) == labels))

    def copy(self):
        """An independent network with the same architecture, parameters and running stats."""
        other = object.__new__(MLP)
        other.__dict__.update(self.__dict__)
        other.params, other.grads = self.params.copy(), self.grads.copy()
        other.running = self.running.copy()
        other._reset_buffers()
        return other

    def config(self):
        """The constructor arguments (for manifests and reproducibility)."""
        return {"sizes": list(self.sizes), "activation": self.hidden_activations,
                "output_activation": self.output_activation, "loss": self.loss_name,
                "init": self.init, "gain": self.gain, "init_scale": self.init_scale,
                "bias_scale": self.bias_scale, "batchnorm": self.batchnorm,
                "dtype": self.dtype.name, "seed": self.seed}

    def __repr__(self):
        return (f"MLP({self.sizes}, activation={self.hidden_activations}, loss={self.loss_name!r},"
                f" init={self.init!r}, batchnorm={self.batchnorm}, dtype={self.dtype.name!r})")


def evaluate_net(net, x, y, training=False):
    """(loss, accuracy) of an MLP or CudaMLP from one forward pass (accuracy None for MSE).
    Cross-entropy is taken from the logits through a float64 log-sum-exp, so it is exact
    however confident (and wrong) the network is."""
    x = check_inputs(x, net.sizes[0], net.dtype)
    targets = check_targets(y, len(x), net.sizes[-1], net.classification, np.float64)
    out = net.forward(x, training=training, logits=net.classification).astype(np.float64)
    return output_scores(out, targets, net.classification)
