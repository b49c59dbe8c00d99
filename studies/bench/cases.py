"""What `gradlab bench` measures: one `Case` per kernel and shape, holding our kernel, the same
work in NumPy (and, through `bench_peers`, PyTorch eager and JAX jit), and the float64 NumPy
reference every implementation is validated against before it is timed.

An `Impl` is `run()` (one call, timed) and `result()` (its outputs after a run, for validation);
`per_call` divides a call's time when one call does several steps (our epoch kernel).
FLOPs: dense forward 2 B n_in n_out, dense backward 4 B n_in n_out (dW and da), train step
6 x weights x B (forward 2, backward 4); elementwise kernels count elements instead.
"""
import math
from dataclasses import dataclass, field

import numpy as np

from kernels import MLP
from kernels._jit import kernel
from kernels.activations import ACTIVATIONS, activation_backward, activation_forward, \
    derivative_reference, forward_reference
from kernels.batchnorm import BN_EPS, batchnorm_backward, batchnorm_backward_reference, \
    batchnorm_forward_reference, batchnorm_forward_train
from kernels.clipping import CLIPPING, Clip, clip_gradients, clip_reference
from kernels.dense import dense_backward, dense_backward_input, dense_backward_reference, \
    dense_forward, dense_forward_reference
from kernels.gemm_threads import hold_one_thread, release, step_flops
from kernels.layout import allocate_record
from kernels.losses import cross_entropy_backward, cross_entropy_forward, cross_entropy_reference
from kernels.optimizers import Adam, Momentum, RMSProp, SGD, make_optimizer as build_optimizer, \
    optimizer_update, update_reference
from kernels.reference import reference_trace_of
from kernels.split_step import split_batches
from kernels.step import _sum_squares, train_batches
from kernels.step_helper import splits, step_flags

HIDDEN_ACTIVATIONS = [n for n, a in ACTIVATIONS.items() if a.hidden and n != "identity"]
OPTIMIZERS = {"sgd": dict(cls=SGD, lr=1e-2), "momentum": dict(cls=Momentum, lr=1e-2),
              "nesterov": dict(cls=Momentum, lr=1e-2, nesterov=True),
              "rmsprop": dict(cls=RMSProp, lr=1e-3, eps_inside_sqrt=False),
              "adam": dict(cls=Adam, lr=1e-3, eps_inside_sqrt=False)}
STEP_LR = 1e-3


@dataclass
class Impl:
    run: object
    result: object
    per_call: int = 1
    validate_run: object = None  # what validation runs instead of `run` (default: run)
    setup: object = None         # () -> None, restores its state before validation


@dataclass
class Case:
    group: str            # dense_forward, activation_backward, optimizer, train_step, ...
    name: str             # the variant: activation, optimizer, network
    shape: str            # readable shape
    size: float           # x axis of the size plots (elements, parameters or FLOPs)
    dtype: str
    flops: float = math.nan
    elements: float = math.nan
    reference: dict = field(default_factory=dict)
    impls: dict = field(default_factory=dict)
    setup: object = None  # () -> None, restores the state validation starts from
    net: object = None    # train_step cases: (sizes, batch)
    arrays: dict = field(default_factory=dict)  # inputs the peers build their versions from


def _cast(dtype, *arrays):
    return [np.ascontiguousarray(a, dtype) for a in arrays]


# ---------------------------------------------------------------- dense
def dense_forward_case(batch, n_in, n_out, dtype, rng):
    a, w, b = rng.normal(size=(batch, n_in)), rng.normal(size=(n_out, n_in)) / math.sqrt(n_in), \
        rng.normal(size=n_out)
    case = Case("dense_forward", "dense", f"{batch}x{n_in}->{n_out}", 2.0 * batch * n_in * n_out,
                dtype, flops=2.0 * batch * n_in * n_out,
                reference={"z": dense_forward_reference(a, w, b)})
    a_, w_, b_ = _cast(dtype, a, w, b)
    z, zn = np.empty((batch, n_out), dtype), np.empty((batch, n_out), dtype)

    def numpy_forward():
        np.dot(a_, w_.T, out=zn)
        np.add(zn, b_, out=zn)
    case.impls["gradlab"] = Impl(lambda: dense_forward(z, a_, w_, b_), lambda: {"z": z})
    case.impls["numpy"] = Impl(numpy_forward, lambda: {"z": zn})
    case.arrays = dict(a=a_, w=w_, b=b_)
    return case


def dense_backward_case(batch, n_in, n_out, dtype, rng):
    dz, a, w = rng.normal(size=(batch, n_out)) / math.sqrt(batch), \
        rng.normal(size=(batch, n_in)), rng.normal(size=(n_out, n_in)) / math.sqrt(n_in)
    dw_ref, db_ref, da_ref = dense_backward_reference(dz, a, w)
    case = Case("dense_backward", "dense", f"{batch}x{n_in}->{n_out}",
                4.0 * batch * n_in * n_out, dtype, flops=4.0 * batch * n_in * n_out,
                reference={"dW": dw_ref, "db": db_ref, "da": da_ref})
    dz_, a_, w_ = _cast(dtype, dz, a, w)
    out = dict(dW=np.empty((n_out, n_in), dtype), db=np.empty(n_out, dtype),
               da=np.empty((batch, n_in), dtype))
    outn = {k: np.empty_like(v) for k, v in out.items()}

    def ours():
        dense_backward(out["dW"], out["db"], dz_, a_)
        dense_backward_input(out["da"], dz_, w_)

    def numpy_backward():
        np.dot(dz_.T, a_, out=outn["dW"])
        np.sum(dz_, axis=0, out=outn["db"])
        np.dot(dz_, w_, out=outn["da"])
    case.impls["gradlab"] = Impl(ours, lambda: out)
    case.impls["numpy"] = Impl(numpy_backward, lambda: outn)
    case.arrays = dict(dz=dz_, a=a_, w=w_)
    return case


# ---------------------------------------------------------------- activations
NUMPY_FORWARD = {
    "sigmoid": lambda h, out: np.divide(1.0, np.add(1.0, np.exp(np.negative(h, out=out), out=out),
                                                    out=out), out=out),
    "tanh": lambda h, out: np.tanh(h, out=out),
    "relu": lambda h, out: np.maximum(h, 0, out=out),
    "leaky_relu": lambda h, out: np.multiply(h, np.where(h > 0, 1.0, 0.01).astype(h.dtype),
                                             out=out),
    "elu": lambda h, out: np.copyto(out, np.where(h > 0, h, np.expm1(np.minimum(h, 0)))),
    "gelu": None, "gelu_tanh": None,
}


def _numpy_activation_forward(name, h, out):
    if NUMPY_FORWARD.get(name) is not None:
        return NUMPY_FORWARD[name](h, out)
    from scipy import special
    if name == "gelu":
        np.copyto(out, 0.5 * h * (1.0 + special.erf(h * h.dtype.type(math.sqrt(0.5)))))
    else:
        c = h.dtype.type(math.sqrt(2.0 / math.pi))
        np.copyto(out, 0.5 * h * (1.0 + np.tanh(c * (h + h.dtype.type(0.044715) * h * h * h))))


def _numpy_activation_backward(name, dh, da, h, a):
    """dh = da f'(h) in the arrays' dtype, from a = f(h) where the derivative allows."""
    if name == "tanh":
        np.multiply(da, 1 - a * a, out=dh)
    elif name == "sigmoid":
        np.multiply(da, a * (1 - a), out=dh)
    elif name == "relu":
        np.multiply(da, h > 0, out=dh)
    elif name == "leaky_relu":
        np.multiply(da, np.where(h > 0, 1.0, 0.01).astype(h.dtype), out=dh)
    elif name == "elu":
        np.multiply(da, np.where(h > 0, 1.0, np.exp(np.minimum(h, 0))).astype(h.dtype), out=dh)
    else:
        np.multiply(da, derivative_reference(name, h).astype(h.dtype), out=dh)


def activation_case(name, n, dtype, rng, backward):
    h = rng.normal(size=n) * 3.0
    param = ACTIVATIONS[name].default_param
    code = ACTIVATIONS[name].code
    ref_a = forward_reference(name, h)
    group = "activation_backward" if backward else "activation_forward"
    case = Case(group, name, f"{n}", n, dtype, elements=n)
    h_, = _cast(dtype, h)
    a_ = np.empty(n, dtype)
    activation_forward(a_, h_, code, param)
    if not backward:
        case.reference = {"a": ref_a}
        out, outn = np.empty(n, dtype), np.empty(n, dtype)
        case.impls["gradlab"] = Impl(lambda: activation_forward(out, h_, code, param),
                                     lambda: {"a": out})
        case.impls["numpy"] = Impl(lambda: _numpy_activation_forward(name, h_, outn),
                                   lambda: {"a": outn})
    else:
        da = rng.normal(size=n)
        case.reference = {"dh": da * derivative_reference(name, h)}
        da_, = _cast(dtype, da)
        dh, dhn = np.empty(n, dtype), np.empty(n, dtype)
        case.impls["gradlab"] = Impl(lambda: activation_backward(dh, da_, h_, a_, code, param),
                                     lambda: {"dh": dh})
        case.impls["numpy"] = Impl(lambda: _numpy_activation_backward(name, dhn, da_, h_, a_),
                                   lambda: {"dh": dhn})
        case.arrays["da"] = da_
    case.arrays.update(h=h_, a=a_, param=param)
    return case


# ---------------------------------------------------------------- loss and batch norm
def cross_entropy_case(batch, classes, dtype, rng):
    logits, labels = rng.normal(size=(batch, classes)) * 2.0, rng.integers(0, classes, batch)
    y = np.eye(classes)[labels]
    loss, _, dlogits = cross_entropy_reference(logits, y)
    case = Case("cross_entropy", "softmax_ce", f"{batch}x{classes}", batch * classes, dtype,
                elements=batch * classes,
                reference={"loss": np.array(loss), "dlogits": dlogits})
    z_, y_ = _cast(dtype, logits, y)
    probs, dz = np.empty_like(z_), np.empty_like(z_)
    state = {}

    def ours():
        state["loss"] = cross_entropy_forward(probs, z_, y_)
        cross_entropy_backward(dz, probs, y_, 1.0 / len(probs))

    def numpy_ce():
        m = z_.max(axis=1, keepdims=True)
        e = np.exp(z_ - m)
        s = e.sum(axis=1, keepdims=True)
        state["np_loss"] = float(np.mean(m[:, 0] + np.log(s[:, 0]) - z_[np.arange(batch),
                                                                         labels]))
        np.divide(e, s * batch, out=state.setdefault("np_dz", np.empty_like(z_)))
        state["np_dz"][np.arange(batch), labels] -= z_.dtype.type(1.0 / batch)
    case.impls["gradlab"] = Impl(ours, lambda: {"loss": np.array(state["loss"]), "dlogits": dz})
    case.impls["numpy"] = Impl(numpy_ce, lambda: {"loss": np.array(state["np_loss"]),
                                                  "dlogits": state["np_dz"]})
    case.arrays = dict(logits=z_, labels=labels)
    return case


def batchnorm_case(batch, n, dtype, rng):
    z, dy = rng.normal(2.0, 3.0, size=(batch, n)), rng.normal(size=(batch, n))
    gamma, beta = rng.uniform(0.5, 1.5, n), rng.normal(0, 0.2, n)
    y, xhat, _, var = batchnorm_forward_reference(z, gamma, beta)
    dz, dgamma, dbeta = batchnorm_backward_reference(dy, xhat, gamma, var)
    case = Case("batchnorm", "batchnorm", f"{batch}x{n}", batch * n, dtype, elements=batch * n,
                reference={"y": y, "dz": dz, "dgamma": dgamma, "dbeta": dbeta})
    z_, dy_, g_, b_ = _cast(dtype, z, dy, gamma, beta)
    out = dict(y=np.empty_like(z_), xhat=np.empty_like(z_), mean=np.empty(n, dtype),
               var=np.empty(n, dtype), dz=np.empty_like(z_), dgamma=np.empty(n, dtype),
               dbeta=np.empty(n, dtype))
    npo = {}

    def ours():
        batchnorm_forward_train(out["y"], out["xhat"], out["mean"], out["var"], z_, g_, b_,
                                BN_EPS)
        batchnorm_backward(out["dz"], out["dgamma"], out["dbeta"], dy_, out["xhat"], g_,
                           out["var"], BN_EPS)

    def numpy_bn():
        mean, var_ = z_.mean(axis=0), z_.var(axis=0)
        inv = 1.0 / np.sqrt(var_ + z_.dtype.type(BN_EPS))
        xh = (z_ - mean) * inv
        npo["y"] = g_ * xh + b_
        npo["dbeta"], npo["dgamma"] = dy_.sum(axis=0), (dy_ * xh).sum(axis=0)
        npo["dz"] = (g_ * inv / batch) * (batch * dy_ - npo["dbeta"] - xh * npo["dgamma"])
    keys = ("y", "dz", "dgamma", "dbeta")
    case.impls["gradlab"] = Impl(ours, lambda: {k: out[k] for k in keys})
    case.impls["numpy"] = Impl(numpy_bn, lambda: {k: npo[k] for k in keys})
    case.arrays = dict(z=z_, dy=dy_, gamma=g_, beta=b_)
    return case


# ---------------------------------------------------------------- optimizers and clipping
@kernel
def update_flat(params, grads, m, v, codes, hyper, lr, t):
    """optimizer_update over the whole buffer, with the unsigned bounds the fused step uses."""
    return optimizer_update(params, grads, m, v, np.uint64(0), np.uint64(params.shape[0]),
                            codes, hyper, lr, t)


def make_optimizer(name):
    """The bench's optimizer `name` through kernels.optimizers.make_optimizer (`cls` and the
    nesterov flag of OPTIMIZERS are for the peers: the registry entry presets nesterov)."""
    spec = {k: v for k, v in OPTIMIZERS[name].items() if k not in ("cls", "nesterov")}
    return build_optimizer(name, **spec)


def optimizer_case(name, n, dtype, rng):
    from kernels.clipping import Clip
    p0, g_ = _cast(dtype, rng.normal(size=n), rng.normal(size=n) * 0.1)
    opt = make_optimizer(name)
    want, _ = update_reference(opt.name, p0.astype(np.float64), g_.astype(np.float64),
                               (np.zeros(n), np.zeros(n)), 1, opt.lr, opt.momentum, opt.decay,
                               opt.eps, opt.nesterov, opt.eps_inside_sqrt, opt.weight_decay)
    case = Case("optimizer", name, f"{n}", n, dtype, elements=n, reference={"params": want})
    p, m, v = p0.copy(), np.zeros(n, dtype), np.zeros(n, dtype)
    codes, hyper = opt.codes_and_hyper(Clip())
    npst = {"p": p0.copy(), "m": np.zeros(n, dtype), "v": np.zeros(n, dtype)}

    def restore():
        p[...], m[...], v[...] = p0, 0, 0
        npst["p"][...], npst["m"][...], npst["v"][...] = p0, 0, 0
    case.setup = restore
    case.impls["gradlab"] = Impl(lambda: update_flat(p, g_, m, v, codes, hyper, opt.lr, 1),
                                 lambda: {"params": p})
    case.impls["numpy"] = Impl(lambda: numpy_update(opt, npst, g_), lambda: {"params": npst["p"]})
    case.arrays = dict(theta=p0, g=g_, opt=opt)
    return case


def numpy_update(opt, st, g, t=1):
    """One update in place in the arrays' dtype (the PyTorch forms: eps outside the root)."""
    p, m, v = st["p"], st["m"], st["v"]
    lr = p.dtype.type(opt.lr)
    if opt.name == "sgd":
        p -= lr * g
    elif opt.name == "momentum":
        v *= p.dtype.type(opt.momentum)
        v += g
        p -= lr * (g + opt.momentum * v if opt.nesterov else v)
    elif opt.name == "rmsprop":
        v *= p.dtype.type(opt.decay)
        v += p.dtype.type(1 - opt.decay) * g * g
        p -= lr * g / (np.sqrt(v) + p.dtype.type(opt.eps))
    else:
        m *= p.dtype.type(opt.momentum)
        m += p.dtype.type(1 - opt.momentum) * g
        v *= p.dtype.type(opt.decay)
        v += p.dtype.type(1 - opt.decay) * g * g
        bc1, bc2 = 1 - opt.momentum ** t, 1 - opt.decay ** t
        p -= lr * (m / p.dtype.type(bc1)) / (np.sqrt(v / p.dtype.type(bc2)) +
                                             p.dtype.type(opt.eps))


@kernel
def clip_flat(grads, seg_start, seg_sq, code, c):
    """Segment sums of squares (as the backward pass forms them) then clip_gradients."""
    for s in range(seg_sq.shape[0]):
        seg_sq[s] = _sum_squares(grads[seg_start[s]:seg_start[s + 1]])
    return clip_gradients(grads, seg_start, seg_sq, code, c)


def clip_case(n, dtype, rng, threshold=1e-3):
    """Global-norm clipping with a threshold below the norm, so every call scales."""
    g = rng.normal(size=n)
    case = Case("clipping", "global_norm", f"{n}", n, dtype, elements=n,
                reference={"grads": clip_reference([g], "global_norm", threshold)[0]})
    g0, = _cast(dtype, g)
    ours, npg = g0.copy(), g0.copy()
    seg_start, seg_sq = np.array([0, n], np.int64), np.zeros(1)
    code = CLIPPING["global_norm"].code

    def restore():
        ours[...] = g0
        npg[...] = g0

    def numpy_clip():
        norm = math.sqrt(float(np.dot(npg, npg)))
        np.multiply(npg, npg.dtype.type(min(1.0, threshold / (norm + 1e-6))), out=npg)
    case.setup = restore
    case.impls["gradlab"] = Impl(lambda: clip_flat(ours, seg_start, seg_sq, code, threshold),
                                 lambda: {"grads": ours})
    case.impls["numpy"] = Impl(numpy_clip, lambda: {"grads": npg})
    case.arrays = dict(g=g0, threshold=threshold)
    return case


# ---------------------------------------------------------------- the whole train step
def network(sizes, dtype, seed=0):
    return MLP(sizes, activation="tanh", init="xavier_normal", loss="cross_entropy", dtype=dtype,
               seed=seed)


def step_reference(net, x, labels):
    """The flat gradient of the batch loss in float64 NumPy (the reference MLP)."""
    trace = reference_trace_of(net, x, labels)
    return np.concatenate([np.concatenate([trace[f"dW{k}"].ravel(), trace[f"db{k}"]])
                           for k in range(1, net.n_layers + 1)])


def kernel_step(net, opt, x, y):
    """() -> one step of the fused kernel on kernel-form x, y with every argument prepared
    once: what `MLP.train_step` costs without its Python (validation, one-hot, packing), its
    GEMMs on the thread count the public call gives them (`kernels.gemm_threads`), split over
    two threads when the public call's step would be (`kernels.step_helper`)."""
    codes, hyper = opt.codes_and_hyper(Clip())
    m, v, t = opt.bind(net, net.n_params, net.dtype)
    work = net._packed_workspace(len(x))
    args = (net._packed_spec, (net.params, net.grads, net.running), (codes, hyper, m, v, t),
            work, (x, y, np.arange(len(x), dtype=np.int64), len(x)), net._packed_step_record)
    flops = step_flops(net.sizes, len(x))

    def run():
        held = hold_one_thread(flops)
        try:
            if splits(flops, held, net.batchnorm, len(x)):
                second, job = net._second_side(work[3])  # allocated once, on the first split
                split_batches(*args, second, job, step_flags(), net._split, net.dtype.type)
            else:
                train_batches(*args)
        finally:
            release(held)
    return run


def train_step_case(sizes, batch, dtype, rng, epoch_steps=8):
    """One train step (tanh, cross-entropy, Adam): the public call `MLP.train_step(x, labels,
    opt)` on NumPy arrays ('gradlab', the row the ratios are taken on), the fused kernel alone
    with its arguments prepared ('gradlab_kernel'), and the per-step time inside one epoch call
    of epoch_steps batches ('gradlab_epoch'). Validation
    compares the gradient of one step (Adam's first step, lr g/(|g| + eps), would amplify the
    float32 rounding of gradients near eps into its result)."""
    x, labels = rng.normal(size=(batch, sizes[0])), rng.integers(0, sizes[-1], batch)
    weights = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    net0 = network(sizes, dtype)
    case = Case("train_step", str(sizes), f"{sizes} B={batch}", weights, dtype,
                flops=6.0 * weights * batch, net=(sizes, batch),
                reference={"grads": step_reference(net0, x, labels)})
    x_, = _cast(dtype, x)
    state = {}

    def restore():
        state["net"] = net0.copy()
        state["opt"] = build_optimizer("adam", lr=STEP_LR, eps_inside_sqrt=False)
        state["epoch_net"] = net0.copy()
        state["epoch_opt"] = build_optimizer("adam", lr=STEP_LR, eps_inside_sqrt=False)
        state["kernel_net"] = net0.copy()
        kernel_opt = build_optimizer("adam", lr=STEP_LR, eps_inside_sqrt=False)
        state["kernel"] = kernel_step(state["kernel_net"], kernel_opt,
                                      *state["kernel_net"].check_batch(x_, labels))
    restore()
    xk, yk = state["net"].check_batch(x_, labels)
    order = np.tile(np.arange(batch, dtype=np.int64), epoch_steps)
    rec, one = allocate_record(epoch_steps, net0.n_layers), allocate_record(1, net0.n_layers)

    def epoch(steps_rec):
        state["epoch_net"].run_steps(xk, yk, order, batch, state["epoch_opt"], None, steps_rec)
    case.setup = restore
    case.impls["gradlab"] = Impl(lambda: state["net"].train_step(x_, labels, state["opt"]),
                                 lambda: {"grads": state["net"].grads})
    case.impls["gradlab_kernel"] = Impl(lambda: state["kernel"](),
                                        lambda: {"grads": state["kernel_net"].grads})
    case.impls["gradlab_epoch"] = Impl(lambda: epoch(rec),
                                       lambda: {"grads": state["epoch_net"].grads},
                                       per_call=epoch_steps, validate_run=lambda: epoch(one))
    case.arrays = dict(x=x_, labels=labels, net=net0)
    return case


# The train-step networks the performance table reports, by what bounds them.
TARGET_NETS = {"overhead": [([40, 64, 64, 10], 32), ([40] + [64] * 20 + [10], 64)],
               "medium": [([40, 256, 256, 256, 10], 128), ([784, 100, 100, 100, 10], 60)],
               "large": [([784, 1024, 1024, 10], 256)]}
ALL_NETS = [net for nets in TARGET_NETS.values() for net in nets]
