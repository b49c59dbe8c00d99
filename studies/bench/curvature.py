"""Curvature rows of the benchmark: one Hessian-vector product and the per-example gradient
norms of a batch, ours against PyTorch in the same run, each validated against the float64
NumPy reference before it is timed (timing.timed_rows).

Implementations (tanh MLP, cross-entropy, the batch as given, parameters as ours):
- hvp: `MLP.hvp` (R-operator, one compiled call); torch double backward (autograd.grad of
  g . v through the graph of g = autograd.grad(loss, create_graph=True)); torch.func
  forward-over-reverse, jvp(grad(loss)) over functional_call. Reference: `hvp_reference`.
- per_example_norms: `MLP.per_example_grad_norms` (one backward pass); torch.func vmap(grad) of
  each example's loss, then the norms. Reference: `per_example_sq_reference`.
`cost_in_gradients` times our calls in units of one `MLP.loss_and_grads` (and the compiled
kernels alone in units of the compiled gradient kernel).

    from studies.bench.curvature import curvature_rows, cost_in_gradients
    rows = curvature_rows(dtypes=("float32", "float64"), min_sample=0.005, repeats=5)
"""
import numpy as np

from kernels import MLP
from kernels.curvature import hessian_vector, hvp_reference
from kernels.per_example import per_example_sq_reference
from kernels.reference import reference_trace_of
from kernels.step import gradients_packed
from studies.bench.cases import Case, Impl
from studies.bench.timing import timed_rows

NETS = [([40, 64, 64, 10], 64), ([784, 100, 100, 10], 128)]


def curvature_net(sizes, dtype, seed=0):
    return MLP(sizes, activation="tanh", init="xavier_normal", loss="cross_entropy",
               dtype=dtype, seed=seed, bias_scale=0.1)


def _batch(sizes, batch, rng):
    return rng.normal(size=(batch, sizes[0])), rng.integers(0, sizes[-1], batch)


def hvp_case(sizes, batch, dtype, rng):
    """Case 'hvp': H v of the batch loss for a random v."""
    x, labels = _batch(sizes, batch, rng)
    net64 = curvature_net(sizes, "float64")
    v = rng.normal(size=net64.n_params)
    net = curvature_net(sizes, dtype)
    case = Case("hvp", str(sizes), f"{sizes} B={batch}", net.n_params, dtype,
                flops=_hvp_flops(sizes, batch), net=(sizes, batch),
                reference={"hv": hvp_reference(net64, x, labels, v)})
    x_, v_ = np.ascontiguousarray(x, dtype), np.ascontiguousarray(v, dtype)
    state = {}

    def ours():
        state["hv"] = net.hvp(x_, labels, v_)
    case.impls["gradlab"] = Impl(ours, lambda: {"hv": state["hv"]})
    case.arrays = dict(x=x_, labels=labels, v=v_, net=net)
    return case


def per_example_case(sizes, batch, dtype, rng):
    """Case 'per_example_norms': ||g_i|| of every example's own-loss gradient."""
    x, labels = _batch(sizes, batch, rng)
    net64 = curvature_net(sizes, "float64")
    ref = np.sqrt(per_example_sq_reference(reference_trace_of(net64, x, labels), x).sum(axis=1))
    net = curvature_net(sizes, dtype)
    case = Case("per_example_norms", str(sizes), f"{sizes} B={batch}", net.n_params, dtype,
                flops=6.0 * _weights(sizes) * batch, net=(sizes, batch),
                reference={"norms": ref})
    x_ = np.ascontiguousarray(x, dtype)
    state = {}

    def ours():
        state["norms"] = net.per_example_grad_norms(x_, labels)
    case.impls["gradlab"] = Impl(ours, lambda: {"norms": state["norms"]})
    case.arrays = dict(x=x_, labels=labels, net=net)
    return case


def _weights(sizes):
    return sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))


def _hvp_flops(sizes, batch):
    """GEMMs of 2 B n_in n_out: 8 per layer (z; R{z}: 2; da; R{dW}: 2; R{da}: 2), 3 on the first
    (z, R{z}, R{dW}: its input does not move and it has no da)."""
    pairs = [a * b for a, b in zip(sizes[:-1], sizes[1:])]
    return 2.0 * batch * (3 * pairs[0] + 8 * sum(pairs[1:]))


# ---------------------------------------------------------------- PyTorch
class TorchCurvature:
    """The torch implementations of both cases (nn.Sequential of Linear + Tanh, our weights)."""

    def __init__(self, threads=None):
        import torch
        if threads:
            torch.set_num_threads(threads)
        self.torch = torch

    def model(self, net):
        torch = self.torch
        dtype = torch.float64 if net.dtype == np.float64 else torch.float32
        layers = []
        for w, b in zip(net.weights, net.biases):
            lin = torch.nn.Linear(w.shape[1], w.shape[0], dtype=dtype)
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(np.array(w)))
                lin.bias.copy_(torch.from_numpy(np.array(b)))
            layers += [lin, torch.nn.Tanh()]
        return torch.nn.Sequential(*layers[:-1])

    def _split(self, model, flat):
        """A flat vector in our layout as one tensor per torch parameter."""
        out, pos = [], 0
        for p in model.parameters():
            out.append(self.torch.from_numpy(np.array(flat[pos:pos + p.numel()])).view_as(p))
            pos += p.numel()
        return out

    def add_hvp(self, case):
        torch, F = self.torch, self.torch.nn.functional
        a = case.arrays
        model = self.model(a["net"])
        params = list(model.parameters())
        names = [n for n, _ in model.named_parameters()]
        x, y = torch.from_numpy(a["x"]), torch.from_numpy(a["labels"])
        v = self._split(model, a["v"])
        state = {}

        def double_backward():
            loss = F.cross_entropy(model(x), y)
            grads = torch.autograd.grad(loss, params, create_graph=True)
            dot = sum((g * u).sum() for g, u in zip(grads, v))
            state["db"] = torch.autograd.grad(dot, params)

        def loss_of(p):
            return F.cross_entropy(torch.func.functional_call(model, dict(zip(names, p)), (x,)), y)
        primals = tuple(p.detach() for p in params)

        def forward_over_reverse():
            state["fr"] = torch.func.jvp(torch.func.grad(loss_of), (primals,), (tuple(v),))[1]

        def flat(key):
            return {"hv": torch.cat([t.reshape(-1) for t in state[key]]).numpy()}
        case.impls["torch_double_backward"] = Impl(double_backward, lambda: flat("db"))
        case.impls["torch_func_jvp_grad"] = Impl(forward_over_reverse, lambda: flat("fr"))

    def add_per_example(self, case):
        torch, F = self.torch, self.torch.nn.functional
        a = case.arrays
        model = self.model(a["net"])
        names = [n for n, _ in model.named_parameters()]
        params = {n: p.detach() for n, p in model.named_parameters()}
        x, y = torch.from_numpy(a["x"]), torch.from_numpy(a["labels"])
        per_sample = torch.func.vmap(torch.func.grad(
            lambda p, xi, yi: F.cross_entropy(
                torch.func.functional_call(model, p, (xi[None],)), yi[None])),
            in_dims=(None, 0, 0))
        state = {}

        def norms():
            grads = per_sample(params, x, y)
            sq = sum(grads[n].reshape(len(x), -1).square().sum(dim=1) for n in names)
            state["norms"] = sq.sqrt()
        case.impls["torch_func_vmap_grad"] = Impl(norms, lambda: {"norms":
                                                                  state["norms"].numpy()})


# ---------------------------------------------------------------- measuring
def measure(case, min_sample, repeats):
    """Rows as the benchmark's other cases give them: validation, then the timing statistics,
    and on our row ratio_<impl> = median(impl) / median(ours)."""
    rows = timed_rows(case, min_sample, repeats)
    ours = next((r for r in rows if r["impl"] == "gradlab" and "median_s" in r), None)
    for row in rows:
        if ours is not None and "median_s" in row:
            ours[f"ratio_{row['impl']}"] = row["median_s"] / ours["median_s"]
    return rows


def curvature_rows(dtypes=("float32", "float64"), nets=NETS, min_sample=0.005, repeats=5,
                   threads=None, torch=True, log=None):
    """Validated and timed rows of both cases for every net and dtype (torch peers when
    `torch` and importable)."""
    peer = None
    if torch:
        try:
            peer = TorchCurvature(threads)
        except ImportError as error:
            if log:
                log(f"curvature: torch peer skipped: {error}")
    rows = []
    for dtype in dtypes:
        rng = np.random.default_rng(0)
        for sizes, batch in nets:
            for build, add in ((hvp_case, "add_hvp"), (per_example_case, "add_per_example")):
                case = build(sizes, batch, dtype, rng)
                if peer is not None:
                    getattr(peer, add)(case)
                rows += measure(case, min_sample, repeats)
    return rows


def cost_in_gradients(nets=NETS, dtypes=("float64", "float32"), calls=200, seed=0):
    """Median (and min_) seconds of our calls over `calls` interleaved repetitions, and their
    ratios to one gradient: public API (hvp, per_example_grad_norms over loss_and_grads) and
    compiled kernels alone (hessian_vector over gradients_packed on the loaded batch). On a
    shared machine a call longer than the scheduler's time slice is often preempted, which
    inflates the median of the longer call: the min shows the work itself."""
    import time
    out = []
    for dtype in dtypes:
        for sizes, batch in nets:
            rng = np.random.default_rng(seed)
            net = curvature_net(sizes, dtype)
            x, labels = _batch(sizes, batch, rng)
            x = np.ascontiguousarray(x, dtype)
            v = np.ascontiguousarray(rng.normal(size=net.n_params), dtype)
            xk, yk = net.check_batch(x, labels)
            net._load_batch(xk, yk)
            tangent = net._curvature_buffers(batch)[0]
            work = net._packed_workspace(batch)
            hv = np.zeros_like(net.params)
            fns = {
                "grad": lambda: net.loss_and_grads(x, labels),
                "hvp": lambda: net.hvp(x, labels, v),
                "per_example": lambda: net.per_example_grad_norms(x, labels),
                "grad_kernel": lambda: gradients_packed(
                    net._packed_spec, (net.params, net.grads, net.running), work, batch,
                    net._packed_step_record),
                "hvp_kernel": lambda: hessian_vector(net._packed_spec, (net.params, net.running),
                                                     work, tangent, v, hv, batch)}
            times = {k: [] for k in fns}
            for fn in fns.values():
                fn()
            for _ in range(calls):  # interleaved, so drifts of load hit all alike
                for name, fn in fns.items():
                    start = time.perf_counter()
                    fn()
                    times[name].append(time.perf_counter() - start)
            row = {"sizes": str(sizes), "batch": batch, "dtype": dtype, "calls": calls}
            for stat, reduce in (("", np.median), ("min_", np.min)):
                t = {k: float(reduce(v)) for k, v in times.items()}
                row.update({f"{stat}{k}_s": value for k, value in t.items()})
                row[f"{stat}hvp_in_grads"] = t["hvp"] / t["grad"]
                row[f"{stat}per_example_in_grads"] = t["per_example"] / t["grad"]
                row[f"{stat}hvp_kernel_in_grad_kernels"] = t["hvp_kernel"] / t["grad_kernel"]
            out.append(row)
    return out


# ---------------------------------------------------------------- in `gradlab bench`
# scale -> (dtypes, nets, min_sample, repeats, cost calls)
PLANS = {"smoke": (("float32",), [([8, 16, 4], 8)], 0.001, 2, 20),
         "quick": (("float32", "float64"), NETS, 0.005, 5, 100),
         "full": (("float32", "float64"), NETS, 0.02, 11, 400)}
PEER_NAMES = {"torch_double_backward": "torch double backward",
              "torch_func_jvp_grad": "torch.func jvp(grad)",
              "torch_func_vmap_grad": "torch.func vmap(grad)"}


def markdown(rows, cost):
    """Two Markdown tables: our median per call against each peer's (x peer = peer median /
    ours, > 1: ours faster), and our calls in units of one gradient (cost_in_gradients)."""
    lines = ["| case | net | dtype | ours us | peer | peer us | x peer |", "|" + "---|" * 7]
    ours = {(r["group"], r["shape"], r["dtype"]): r for r in rows if r["impl"] == "gradlab"}
    for r in rows:
        mine = ours.get((r["group"], r["shape"], r["dtype"]))
        if r["impl"] == "gradlab" or mine is None:
            continue
        peer_us = f"{r['median_s'] * 1e6:,.1f}" if "median_s" in r else "invalid"
        ratio = mine.get(f"ratio_{r['impl']}")
        lines.append(f"| {r['group']} | {r['shape']} | {r['dtype']} | "
                     f"{mine.get('median_s', float('nan')) * 1e6:,.1f} | "
                     f"{PEER_NAMES.get(r['impl'], r['impl'])} | {peer_us} | "
                     f"{'-' if ratio is None else f'{ratio:.2f}'} |")
    lines += ["", "| net | dtype | hvp / gradient | per-example norms / gradient | hvp kernel / "
              "gradient kernel |", "|" + "---|" * 5]
    for c in cost:
        lines.append(f"| {c['sizes']} B={c['batch']} | {c['dtype']} | {c['hvp_in_grads']:.2f} "
                     f"({c['min_hvp_in_grads']:.2f}) | {c['per_example_in_grads']:.2f} "
                     f"({c['min_per_example_in_grads']:.2f}) | "
                     f"{c['hvp_kernel_in_grad_kernels']:.2f} "
                     f"({c['min_hvp_kernel_in_grad_kernels']:.2f}) |")
    return "\n".join(lines) + "\n"


def run_curvature_bench(scale, out, dtypes=None, threads=None, torch=True, log=print):
    """The curvature part of `gradlab bench` at a scale: validated and timed rows
    (curvature.csv), the costs in gradients (curvature_cost.csv, medians with min_ columns)
    and both as Markdown (curvature.md, printed too; min in brackets). Returns (rows, cost)."""
    import pandas as pd
    from pathlib import Path
    plan_dtypes, nets, min_sample, repeats, calls = PLANS[scale]
    dtypes = tuple(dtypes or plan_dtypes)
    rows = curvature_rows(dtypes, nets, min_sample, repeats, threads, torch, log)
    cost = cost_in_gradients(nets, dtypes, calls)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(out / "curvature.csv", index=False)
    pd.DataFrame(cost).to_csv(out / "curvature_cost.csv", index=False)
    text = markdown(rows, cost)
    (out / "curvature.md").write_text(text)
    log("curvature (Hessian-vector products, per-example gradient norms):\n" + text)
    bad = [f"{r['group']} {r['shape']} {r['dtype']} {r['impl']}: {r['error']}" for r in rows
           if not r["valid"]]
    for line in bad:
        log(f"curvature: INVALID {line}")
    return rows, cost
