"""The sweep of `gradlab bench`: R networks of one architecture each take Adam steps on a shared
batch; throughput in network-steps per second. Ours: MultiMLP (one compiled call per epoch for
all runs, one or two threads); peers: JAX jit(vmap) of one step, a PyTorch eager loop over R
models, and PyTorch batched (one baddbmm per layer over stacked weights). Every implementation
is validated on run 0's gradient of one step against the float64 NumPy reference.
"""
import os

import numpy as np

from kernels.multirun import MultiMLP

from studies.bench import cases as C
from studies.bench.cases import Impl
from studies.bench.peers import flat_params, layer_pairs
from studies.bench.timing import time_group, validate


def run_sweep(plan, peers):
    """Network-steps per second of R networks trained together, ours and each peer's."""
    runs, sizes, batch = plan.sweep
    rng = np.random.default_rng(0)
    nets = [C.network(sizes, "float32", seed=s) for s in range(runs)]
    x = rng.normal(size=(batch, sizes[0])).astype(np.float32)
    labels = rng.integers(0, sizes[-1], batch)
    reference = C.step_reference(nets[0], x, labels)
    impls = sweep_impls(peers, nets, x, labels)
    epoch_steps = 8
    xe, ye = np.tile(x, (epoch_steps, 1)), np.tile(labels, epoch_steps)
    state = {}
    for threads in sorted({1, min(2, os.cpu_count() or 1)}):
        def setup(threads=threads):
            state[threads] = (MultiMLP(nets, threads=threads),
                              C.Adam(lr=C.STEP_LR, eps_inside_sqrt=False))
        setup()
        impls[f"gradlab_threads{threads}"] = C.Impl(
            lambda t=threads: state[t][0].train_epoch(xe, ye, state[t][1], batch_size=batch),
            lambda t=threads: {"grads": state[t][0].grads[0]}, per_call=epoch_steps,
            validate_run=lambda t=threads: state[t][0].train_step(x, labels, state[t][1]),
            setup=setup)
    case = C.Case("sweep", f"{runs}x{sizes}", f"R={runs} {sizes} B={batch}", runs, "float32",
                  reference={"grads": reference}, impls=impls)
    checks = validate(case)
    timings = time_group({n: i for n, i in impls.items() if checks[n] is None},
                         max(plan.min_sample, 0.02), max(3, plan.repeats // 2))
    rows = []
    for name in impls:
        row = {"impl": name, "runs": runs, "sizes": str(sizes), "batch": batch,
               "valid": checks[name] is None, "error": checks[name] or ""}
        if name in timings:
            median = float(np.median(timings[name][0]))
            samples = timings[name][0]
            row.update(median_s=median, p25_s=float(np.percentile(samples, 25)),
                       p75_s=float(np.percentile(samples, 75)), min_s=float(samples.min()),
                       net_steps_per_s=runs / median,
                       best_net_steps_per_s=runs / float(samples.min()))
        rows.append(row)
    return rows


def sweep_impls(peers, nets, x, labels):
    """{name: Impl} of one Adam step of every network on the shared batch, per peer: JAX
    jit(vmap), a PyTorch eager loop over R models, PyTorch batched (bmm over stacked
    weights); result() gives run 0's gradient of the step in the flat layout."""
    impls = {}
    if "jax" in peers:
        impls["jax_vmap"] = _jax_vmap(peers["jax"], nets, x, labels)
    if "torch" in peers:
        impls["torch_loop"] = _torch_loop(peers["torch"], nets, x, labels)
        impls["torch_bmm"] = _torch_bmm(peers["torch"], nets, x, labels)
    return impls


def _jax_vmap(peer, nets, x, labels):
    jax, jnp = peer.jax, peer.jnp
    peer.use_dtype(x.dtype)
    step = jax.jit(jax.vmap(peer.step_function(), in_axes=(0, 0, 0, None, None, None)),
                   donate_argnums=(0, 1, 2))
    grads = jax.jit(jax.vmap(jax.grad(peer.loss_function()), in_axes=(0, None, None)))
    xj, yj = jnp.asarray(x), jnp.asarray(labels)
    initial = [tuple(jnp.asarray(np.stack(arrays)) for arrays in zip(*layers))
               for layers in zip(*[layer_pairs(n) for n in nets])]
    state = {}

    def setup():
        stacked = [tuple(jnp.array(a, copy=True) for a in pair) for pair in initial]
        state.update(params=stacked, m=jax.tree.map(jnp.zeros_like, stacked),
                     v=jax.tree.map(jnp.zeros_like, stacked), t=0)

    def run():
        state["t"] += 1
        state["params"], state["m"], state["v"] = jax.block_until_ready(step(
            state["params"], state["m"], state["v"], x.dtype.type(state["t"]), xj, yj))
    setup()
    impl = Impl(run, lambda: {"grads": flat_params([(w[0], b[0])
                                                     for w, b in grads(initial, xj, yj)])})
    impl.setup = setup
    return impl


def _torch_loop(peer, nets, x, labels):
    xt, yt = peer.t(x), peer.t(labels)
    state = {}

    def setup():
        state["models"] = [peer.model(n) for n in nets]
        state["opts"] = [peer.adam(m.parameters()) for m in state["models"]]

    def run():
        for model, opt in zip(state["models"], state["opts"]):
            opt.zero_grad(set_to_none=True)
            peer.F.cross_entropy(model(xt), yt).backward()
            opt.step()

    def grads():
        lin = [m for m in state["models"][0] if hasattr(m, "weight")]
        return {"grads": flat_params([(m.weight.grad.numpy(), m.bias.grad.numpy())
                                      for m in lin])}
    setup()
    impl = Impl(run, grads)
    impl.setup = setup
    return impl


def _torch_bmm(peer, nets, x, labels):
    """Weights stacked (R, n_in, n_out); one baddbmm per layer for all runs; the loss is the sum
    over runs of each run's mean, so each run's gradient is its own; Adam on the stacks."""
    torch = peer.torch
    runs, batch = len(nets), len(x)
    xr = peer.t(x).expand(runs, *x.shape)
    yr = peer.t(labels).repeat(runs)
    state = {}

    def setup():
        pairs = [layer_pairs(n) for n in nets]
        ws = [torch.nn.Parameter(peer.t(np.stack([p[i][0].T for p in pairs])))
              for i in range(len(pairs[0]))]
        bs = [torch.nn.Parameter(peer.t(np.stack([p[i][1][None] for p in pairs])))
              for i in range(len(pairs[0]))]
        state.update(ws=ws, bs=bs, opt=peer.adam(ws + bs))

    def run():
        state["opt"].zero_grad(set_to_none=True)
        a = xr
        for i, (w, b) in enumerate(zip(state["ws"], state["bs"])):
            a = torch.baddbmm(b, a, w)
            if i < len(state["ws"]) - 1:
                a = torch.tanh(a)
        loss = peer.F.cross_entropy(a.reshape(runs * batch, -1), yr, reduction="sum") / batch
        loss.backward()
        state["opt"].step()
    setup()
    impl = Impl(run, lambda: {"grads": flat_params(
        [(w.grad[0].numpy().T, b.grad[0, 0].numpy()) for w, b in zip(state["ws"], state["bs"])])})
    impl.setup = setup
    return impl
