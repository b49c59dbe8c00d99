"""The peers `gradlab bench` times our kernels against, doing the same work on the same arrays:
PyTorch eager (`torch.set_num_threads` as ours; its fastest CPU Adam, `fused=True`) and JAX
`jit` (XLA; with one thread, XLA's Eigen pool is switched off when JAX is first imported), each
optional, plus a NumPy train step. `peer.impl(case)` returns a `bench_cases.Impl` or None when
the peer has no counterpart; `sweep_impls` builds the 64-network sweep of each.

JAX's 64-bit mode (`jax_enable_x64`) is process-wide and slows float32 programs too, so the JAX
peer sets it from each case's dtype before building that case's functions: off for float32,
on for float64. The flag is part of JAX's jit cache key and trace context, so a function
traced under one setting is traced and compiled again under the other; every case builds its
own arrays and functions under its own setting.

Train steps everywhere: tanh hidden layers, softmax cross-entropy, Adam (PyTorch form, eps
outside the root) with lr 1e-3; JAX's is the idiomatic one (`jit` of `value_and_grad` and an
`optax.adam` update, parameters and optimizer state donated); the gradient of a step is read
back in our flat layout for validation. A JAX step returns before XLA has finished it (async
dispatch), so a training loop overlaps the next step's Python dispatch with the current step's
work; JAX's train step is therefore timed as such a loop, JAX_LOOP_STEPS steps back to back and
one wait for the last, per step (timed with a wait after every step, the small nets' JAX step
costs about twice as much: the dispatch is then paid in full).
"""
import math

import numpy as np

from studies.bench.cases import OPTIMIZERS, STEP_LR, Impl

JAX_LOOP_STEPS = 32  # JAX train steps per timed call: a loop with one wait at its end


def available_peers(threads, names=("torch", "jax")):
    """{name: peer} for the peers that import; a missing one is skipped, with its reason."""
    peers, missing = {}, {}
    for name in names:
        try:
            peers[name] = {"torch": TorchPeer, "jax": JaxPeer}[name](threads)
        except ImportError as err:
            missing[name] = str(err)
    return peers, missing


def flat_params(pairs):
    """Our flat layout (W row-major then b, per layer) from (W (n_out, n_in), b) pairs."""
    return np.concatenate([np.concatenate([np.asarray(w).ravel(), np.asarray(b).ravel()])
                           for w, b in pairs])


def layer_pairs(net):
    return [(w.copy(), b.copy()) for w, b in zip(net.weights, net.biases)]


class TorchPeer:
    """PyTorch eager. Adam: `fused=True` (one fused kernel over all parameters, supported on CPU
    in torch 2.13; measured faster than `foreach=True` and than the default loop on the
    [40, 64, 64, 10] and [40, 256 x 3, 10] train steps with 2 threads)."""
    name = "torch"
    ADAM = {"fused": True}

    def __init__(self, threads):
        import torch
        torch.set_num_threads(threads)
        self.torch = torch
        self.F = torch.nn.functional

    def t(self, a):
        return self.torch.from_numpy(np.ascontiguousarray(a))

    def impl(self, case):
        method = getattr(self, case.group, None)
        return None if method is None else method(case)

    def dense_forward(self, case):
        a, w, b = (self.t(case.arrays[k]) for k in "awb")
        z = self.torch.empty(a.shape[0], w.shape[0], dtype=a.dtype)
        return Impl(lambda: self.torch.addmm(b, a, w.t(), out=z), lambda: {"z": z.numpy()})

    def dense_backward(self, case):
        dz, a, w = (self.t(case.arrays[k]) for k in ("dz", "a", "w"))
        out = {"dW": self.torch.empty(w.shape, dtype=w.dtype),
               "db": self.torch.empty(w.shape[0], dtype=w.dtype),
               "da": self.torch.empty(a.shape, dtype=a.dtype)}

        def run():
            self.torch.mm(dz.t(), a, out=out["dW"])
            self.torch.sum(dz, 0, out=out["db"])
            self.torch.mm(dz, w, out=out["da"])
        return Impl(run, lambda: {k: v.numpy() for k, v in out.items()})

    def _activation(self, name, h):
        F = self.F
        return {"sigmoid": self.torch.sigmoid, "tanh": self.torch.tanh, "relu": F.relu,
                "leaky_relu": lambda v: F.leaky_relu(v, 0.01), "elu": F.elu, "gelu": F.gelu,
                "gelu_tanh": lambda v: F.gelu(v, approximate="tanh")}[name](h)

    def activation_forward(self, case):
        h = self.t(case.arrays["h"])
        state = {}
        return Impl(lambda: state.update(a=self._activation(case.name, h)),
                    lambda: {"a": state["a"].numpy()})

    def activation_backward(self, case):
        """The aten backward kernel eager autograd runs for this activation."""
        aten = self.torch.ops.aten
        h, a, da = (self.t(case.arrays[k]) for k in ("h", "a", "da"))
        name = case.name
        call = {"sigmoid": lambda: aten.sigmoid_backward(da, a),
                "tanh": lambda: aten.tanh_backward(da, a),
                "relu": lambda: aten.threshold_backward(da, h, 0),
                "leaky_relu": lambda: aten.leaky_relu_backward(da, h, 0.01, False),
                "elu": lambda: aten.elu_backward(da, 1.0, 1, 1, False, h),
                "gelu": lambda: aten.gelu_backward(da, h),
                "gelu_tanh": lambda: aten.gelu_backward(da, h, approximate="tanh")}[name]
        state = {}
        return Impl(lambda: state.update(dh=call()), lambda: {"dh": state["dh"].numpy()})

    def cross_entropy(self, case):
        z = self.t(case.arrays["logits"]).clone().requires_grad_()
        labels = self.t(case.arrays["labels"])
        state = {}

        def run():
            z.grad = None
            loss = self.F.cross_entropy(z, labels)
            loss.backward()
            state["loss"] = loss
        return Impl(run, lambda: {"loss": np.array(state["loss"].item()),
                                  "dlogits": z.grad.numpy()})

    def batchnorm(self, case):
        z = self.t(case.arrays["z"]).clone().requires_grad_()
        g = self.t(case.arrays["gamma"]).clone().requires_grad_()
        b = self.t(case.arrays["beta"]).clone().requires_grad_()
        dy = self.t(case.arrays["dy"])
        state = {}

        def run():
            z.grad = g.grad = b.grad = None
            y = self.F.batch_norm(z, None, None, g, b, training=True, eps=1e-5)
            y.backward(dy)
            state["y"] = y
        return Impl(run, lambda: {"y": state["y"].detach().numpy(), "dz": z.grad.numpy(),
                                  "dgamma": g.grad.numpy(), "dbeta": b.grad.numpy()})

    def optimizer(self, case):
        torch = self.torch
        theta0, g = self.t(case.arrays["theta"]), self.t(case.arrays["g"])
        opt_spec = OPTIMIZERS[case.name]
        p = torch.nn.Parameter(theta0.clone())
        p.grad = g.clone()
        state = {}

        def setup():
            with torch.no_grad():
                p.copy_(theta0)
            if opt_spec["cls"].name in ("sgd", "momentum"):
                state["opt"] = torch.optim.SGD([p], lr=opt_spec["lr"],
                                               momentum=0.9 if case.name != "sgd" else 0.0,
                                               nesterov=bool(opt_spec.get("nesterov")))
            elif case.name == "rmsprop":
                state["opt"] = torch.optim.RMSprop([p], lr=opt_spec["lr"], alpha=0.99, eps=1e-8)
            else:
                state["opt"] = torch.optim.Adam([p], lr=opt_spec["lr"], eps=1e-8, **self.ADAM)
        setup()
        impl = Impl(lambda: state["opt"].step(), lambda: {"params": p.detach().numpy()})
        impl.setup = setup
        return impl

    def clipping(self, case):
        torch = self.torch
        g0 = self.t(case.arrays["g"])
        p = torch.nn.Parameter(torch.zeros_like(g0))
        p.grad = g0.clone()
        c = case.arrays["threshold"]
        impl = Impl(lambda: torch.nn.utils.clip_grad_norm_([p], c),
                    lambda: {"grads": p.grad.numpy()})
        impl.setup = lambda: p.grad.copy_(g0)
        return impl

    def adam(self, parameters):
        """torch.optim.Adam with lr STEP_LR in its fastest CPU form (ADAM)."""
        return self.torch.optim.Adam(parameters, lr=STEP_LR, **self.ADAM)

    def model(self, net):
        torch = self.torch
        layers = []
        for w, b in layer_pairs(net):
            lin = torch.nn.Linear(w.shape[1], w.shape[0], dtype=self.t(w).dtype)
            with torch.no_grad():
                lin.weight.copy_(self.t(w))
                lin.bias.copy_(self.t(b))
            layers += [lin, torch.nn.Tanh()]
        return torch.nn.Sequential(*layers[:-1])

    def train_step(self, case):
        x, labels = self.t(case.arrays["x"]), self.t(case.arrays["labels"])
        state = {}

        def setup():
            state["model"] = self.model(case.arrays["net"])
            state["opt"] = self.adam(state["model"].parameters())

        def run():
            state["opt"].zero_grad(set_to_none=True)
            self.F.cross_entropy(state["model"](x), labels).backward()
            state["opt"].step()

        def grads():
            linears = [m for m in state["model"] if hasattr(m, "weight")]
            return {"grads": flat_params([(m.weight.grad.numpy(), m.bias.grad.numpy())
                                          for m in linears])}
        setup()
        impl = Impl(run, grads)
        impl.setup = setup
        return impl


class JaxPeer:
    name = "jax"

    def __init__(self, threads):
        import os
        import sys
        if threads == 1 and "jax" not in sys.modules:  # XLA reads its thread flags at import
            os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                                       " --xla_cpu_multi_thread_eigen=false"
                                       " intra_op_parallelism_threads=1").strip()
        import jax
        import jax.numpy as jnp
        import optax
        self.jax, self.jnp, self.optax = jax, jnp, optax

    def use_dtype(self, dtype):
        """64-bit mode on for float64 work, off for float32 (before building its functions)."""
        self.jax.config.update("jax_enable_x64", np.dtype(dtype) == np.float64)

    def impl(self, case):
        method = getattr(self, case.group, None)
        if method is None:
            return None
        self.use_dtype(case.dtype)
        return method(case)

    def _put(self, *arrays):
        return [self.jax.device_put(np.ascontiguousarray(a)) for a in arrays]

    def _pure(self, fn, args, names):
        """A jitted pure function of device arrays; result() gives its outputs by name."""
        jitted = self.jax.jit(fn)
        state = {}

        def run():
            state["out"] = self.jax.block_until_ready(jitted(*args))
        return Impl(run, lambda: {k: np.asarray(v) for k, v in zip(names, state["out"])})

    def dense_forward(self, case):
        a, w, b = self._put(*(case.arrays[k] for k in "awb"))
        return self._pure(lambda a, w, b: (a @ w.T + b,), (a, w, b), ["z"])

    def dense_backward(self, case):
        dz, a, w = self._put(*(case.arrays[k] for k in ("dz", "a", "w")))
        return self._pure(lambda dz, a, w: (dz.T @ a, dz.sum(axis=0), dz @ w), (dz, a, w),
                          ["dW", "db", "da"])

    def _activation(self, name):
        jnp, nn = self.jnp, self.jax.nn
        return {"sigmoid": nn.sigmoid, "tanh": jnp.tanh, "relu": nn.relu,
                "leaky_relu": lambda v: nn.leaky_relu(v, 0.01), "elu": nn.elu,
                "gelu": lambda v: nn.gelu(v, approximate=False),
                "gelu_tanh": lambda v: nn.gelu(v, approximate=True)}[name]

    def activation_forward(self, case):
        f = self._activation(case.name)
        h, = self._put(case.arrays["h"])
        return self._pure(lambda h: (f(h),), (h,), ["a"])

    def activation_backward(self, case):
        f = self._activation(case.name)
        h, da = self._put(case.arrays["h"], case.arrays["da"])
        return self._pure(lambda h, da: (self.jax.vjp(f, h)[1](da)[0],), (h, da), ["dh"])

    def cross_entropy(self, case):
        jax, jnp = self.jax, self.jnp
        z, labels = self._put(case.arrays["logits"], case.arrays["labels"])

        def ce(z, labels):
            return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(z), labels[:, None], 1))
        return self._pure(lambda z, labels: jax.value_and_grad(ce)(z, labels), (z, labels),
                          ["loss", "dlogits"])

    def batchnorm(self, case):
        jax, jnp = self.jax, self.jnp
        z, dy, g, b = self._put(*(case.arrays[k] for k in ("z", "dy", "gamma", "beta")))

        def bn(z, g, b):
            mean, var = z.mean(axis=0), z.var(axis=0)
            return g * (z - mean) / jnp.sqrt(var + 1e-5) + b

        def fwd_bwd(z, g, b, dy):
            y, vjp = jax.vjp(bn, z, g, b)
            return (y,) + vjp(dy)
        return self._pure(fwd_bwd, (z, g, b, dy), ["y", "dz", "dgamma", "dbeta"])

    def optimizer(self, case):
        jnp = self.jnp
        theta0, g = self._put(case.arrays["theta"], case.arrays["g"])
        opt = case.arrays["opt"]
        lr, mu, decay, eps, nesterov = opt.lr, opt.momentum, opt.decay, opt.eps, opt.nesterov

        def update(p, m, v, g):
            if opt.name == "sgd":
                return p - lr * g, m, v
            if opt.name == "momentum":
                v = mu * v + g
                return p - lr * (g + mu * v if nesterov else v), m, v
            if opt.name == "rmsprop":
                v = decay * v + (1 - decay) * g * g
                return p - lr * g / (jnp.sqrt(v) + eps), m, v
            m = mu * m + (1 - mu) * g
            v = decay * v + (1 - decay) * g * g
            return p - lr * (m / (1 - mu)) / (jnp.sqrt(v / (1 - decay)) + eps), m, v
        jitted = self.jax.jit(update, donate_argnums=(0, 1, 2))
        state = {}

        def setup():
            state["p"], state["m"], state["v"] = (self.jnp.array(theta0, copy=True),
                                                  jnp.zeros_like(theta0), jnp.zeros_like(theta0))

        def run():
            state["p"], state["m"], state["v"] = self.jax.block_until_ready(
                jitted(state["p"], state["m"], state["v"], g))
        setup()
        impl = Impl(run, lambda: {"params": np.asarray(state["p"])})
        impl.setup = setup
        return impl

    def clipping(self, case):
        jnp = self.jnp
        g0, = self._put(case.arrays["g"])
        c = case.arrays["threshold"]

        def clip(g):
            norm = jnp.sqrt(jnp.sum(g * g))
            return g * jnp.minimum(1.0, c / (norm + 1e-6)).astype(g.dtype)
        jitted = self.jax.jit(clip, donate_argnums=(0,))
        state = {}

        def setup():
            state["g"] = self.jnp.array(g0, copy=True)

        def run():
            state["g"] = self.jax.block_until_ready(jitted(state["g"]))
        setup()
        impl = Impl(run, lambda: {"grads": np.asarray(state["g"])})
        impl.setup = setup
        return impl

    def loss_function(self):
        """(params [(W, b)], x, labels) -> the mean cross-entropy of the tanh MLP."""
        jax, jnp = self.jax, self.jnp

        def loss(params, x, labels):
            a = x
            for w, b in params[:-1]:
                a = jnp.tanh(a @ w.T + b)
            z = a @ params[-1][0].T + params[-1][1]
            return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(z), labels[:, None], 1))
        return loss

    def step_function(self):
        """(params, m, v, t, x, labels) -> (params, m, v): one Adam step, params [(W, b)], in
        the explicit form the vmapped sweep uses."""
        jax, jnp = self.jax, self.jnp
        loss = self.loss_function()

        def step(params, m, v, t, x, labels):
            g = jax.grad(loss)(params, x, labels)
            m = jax.tree.map(lambda m, g: 0.9 * m + 0.1 * g, m, g)
            v = jax.tree.map(lambda v, g: 0.999 * v + 0.001 * g * g, v, g)
            c1, c2 = 1 - 0.9 ** t, 1 - 0.999 ** t
            params = jax.tree.map(lambda p, m, v: p - STEP_LR * (m / c1) /
                                  (jnp.sqrt(v / c2) + 1e-8), params, m, v)
            return params, m, v
        return step

    def optax_step(self):
        """(step, adam): `step(params, opt_state, x, labels) -> (params, opt_state, loss)` is
        `value_and_grad` of the loss and an `optax.adam(STEP_LR)` update, jitted with the
        parameters and optimizer state donated."""
        jax, optax = self.jax, self.optax
        loss = self.loss_function()
        adam = optax.adam(STEP_LR)

        def step(params, opt_state, x, labels):
            value, grads = jax.value_and_grad(loss)(params, x, labels)
            updates, opt_state = adam.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, value
        return jax.jit(step, donate_argnums=(0, 1)), adam

    def train_step(self, case):
        jax, jnp = self.jax, self.jnp
        x, labels = self._put(case.arrays["x"], case.arrays["labels"])
        step, adam = self.optax_step()
        grad = jax.jit(jax.grad(self.loss_function()))
        initial = [tuple(jnp.asarray(a) for a in pair) for pair in layer_pairs(case.arrays["net"])]
        state = {}

        def setup():
            params = [tuple(jnp.array(a, copy=True) for a in pair) for pair in initial]
            state.update(params=params, opt=adam.init(params))

        def run():  # a training loop: steps dispatched back to back, one wait at the end
            for _ in range(JAX_LOOP_STEPS):
                state["params"], state["opt"], loss = step(state["params"], state["opt"], x,
                                                           labels)
            jax.block_until_ready(loss)
        setup()
        impl = Impl(run, lambda: {"grads": flat_params(grad(initial, x, labels)),
                                  "params": flat_params(state["params"])},
                    per_call=JAX_LOOP_STEPS)
        impl.setup = setup
        return impl


# ---------------------------------------------------------------- numpy train step
def numpy_train_step(case):
    """One Adam step of the tanh MLP in plain NumPy, in the case's dtype."""
    x, labels = case.arrays["x"], case.arrays["labels"]
    dtype, batch = x.dtype, len(x)
    state = {}

    def setup():
        params = layer_pairs(case.arrays["net"])
        state.update(params=params, m=[(np.zeros_like(w), np.zeros_like(b)) for w, b in params],
                     v=[(np.zeros_like(w), np.zeros_like(b)) for w, b in params], t=0)

    def run():
        params, acts = state["params"], [x]
        for i, (w, b) in enumerate(params):
            z = acts[-1] @ w.T + b
            acts.append(np.tanh(z) if i < len(params) - 1 else z)
        z = acts[-1]
        e = np.exp(z - z.max(axis=1, keepdims=True))
        dz = e / e.sum(axis=1, keepdims=True)
        dz[np.arange(batch), labels] -= 1
        dz /= batch
        grads = []
        for i in range(len(params) - 1, -1, -1):
            w, _ = params[i]
            grads.append((dz.T @ acts[i], dz.sum(axis=0)))
            if i:
                dz = (dz @ w) * (1 - acts[i] * acts[i])
        grads.reverse()
        state["grads"] = grads
        state["t"] += 1
        c1, c2 = 1 - 0.9 ** state["t"], 1 - 0.999 ** state["t"]
        for pair, mp, vp, gp in zip(params, state["m"], state["v"], grads):
            for p, m, v, g in zip(pair, mp, vp, gp):
                m *= dtype.type(0.9)
                m += dtype.type(0.1) * g
                v *= dtype.type(0.999)
                v += dtype.type(0.001) * g * g
                p -= dtype.type(STEP_LR) * (m / dtype.type(c1)) / (
                    np.sqrt(v / dtype.type(c2)) + dtype.type(1e-8))
    setup()
    impl = Impl(run, lambda: {"grads": flat_params(state["grads"]),
                              "params": flat_params(state["params"])})
    impl.setup = setup
    return impl


def matmul_rate(n, dtype, seconds=0.5):
    """GFLOP/s of NumPy's n x n matmul (2 n^3 FLOPs), the best of several calls."""
    import time
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(n, n)).astype(dtype), rng.normal(size=(n, n)).astype(dtype)
    out = np.empty_like(a)
    np.dot(a, b, out=out)
    best, spent = math.inf, 0.0
    while spent < seconds or best == math.inf:
        start = time.perf_counter()
        np.dot(a, b, out=out)
        elapsed = time.perf_counter() - start
        best, spent = min(best, elapsed), spent + elapsed
    return 2.0 * n ** 3 / best / 1e9
