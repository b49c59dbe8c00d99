"""A small GPU benchmark: CudaMLP / CudaMultiMLP training steps against PyTorch CUDA.

float32, ReLU, softmax cross-entropy, Adam (eps outside the root, as PyTorch), one fixed batch.
Validate first (one SGD step of ours against the CPU MLP), then time: the first call (compilation)
apart from the steady state. Ours steps through `train_epoch` (no host round trip per step);
`train_step` (host batch in, loss out, one sync per step) is shown too. PyTorch: eager
forward/backward/Adam (foreach) on device tensors, TF32 off (both sides compute in FP32). The
64-network case runs PyTorch two ways: a loop over 64 models, and one batched model (bmm over
stacked weights, the strongest simple PyTorch baseline). Prints a table of ms per step and the
ratio PyTorch / ours (> 1: ours is faster). Run by `gradlab bench --device cuda` (and
scripts/gpu_check.sh).
"""
import sys
import time

import numpy as np

from kernels import MLP
from kernels.optimizers import SGD, Adam
from kernels.tolerance import assert_close

CONFIGS = [  # (label, sizes, batch, runs, timed steps)
    ("[40,64,64,10] b32", [40, 64, 64, 10], 32, 1, 300),
    ("[784,1024,1024,10] b256", [784, 1024, 1024, 10], 256, 1, 60),
    ("64 x [40,64,64,10] b32", [40, 64, 64, 10], 32, 64, 100),
]
LR = 1e-3


def adam():
    return Adam(LR, eps_inside_sqrt=False)


def batch(sizes, n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, sizes[0])).astype(np.float32), rng.integers(0, sizes[-1], n)


def nets(sizes, runs):
    return [MLP(sizes, activation="relu", loss="cross_entropy", dtype="float32", seed=r)
            for r in range(runs)]


def ours(sizes, n, runs, steps):
    """(compile s, ms/step via train_epoch, ms/step via train_step), after validation."""
    from numba import cuda

    from kernels.cuda import CudaMLP, CudaMultiMLP
    x, y = batch(sizes, n)
    cpu = nets(sizes, runs)
    group = CudaMLP(cpu[0].copy()) if runs == 1 else CudaMultiMLP([c.copy() for c in cpu])
    start = time.perf_counter()
    group.train_step(x, y, SGD(0.1))
    compile_s = time.perf_counter() - start
    for r in sorted({0, runs - 1}):  # validation: one step equals the CPU MLP's
        cpu[r].train_step(x, y, SGD(0.1))
        assert_close(np.atleast_2d(group.params_host())[r], cpu[r].params, np.float32,
                     f"run {r} params after one step")
    opt = adam()
    data = group.upload(x, y)
    order = np.tile(np.arange(n), steps)
    group.train_epoch(data, None, opt, batch_size=n, order=np.tile(np.arange(n), 3))
    cuda.synchronize()
    start = time.perf_counter()
    group.train_epoch(data, None, opt, batch_size=n, order=order)
    cuda.synchronize()
    epoch_ms = (time.perf_counter() - start) / steps * 1e3
    k = max(10, steps // 5)
    start = time.perf_counter()
    for _ in range(k):
        group.train_step(x, y, opt)
    step_ms = (time.perf_counter() - start) / k * 1e3
    return compile_s, epoch_ms, step_ms


def torch_model(sizes, torch):
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers).cuda()


def torch_time(step, steps, torch):
    for _ in range(10):
        step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps * 1e3


def torch_loop(sizes, n, runs, steps, torch):
    """ms/step of `runs` separate PyTorch models trained one after another."""
    x, y = batch(sizes, n)
    xt, yt = torch.tensor(x, device="cuda"), torch.tensor(y, device="cuda")
    models = [torch_model(sizes, torch) for _ in range(runs)]
    opts = [torch.optim.Adam(m.parameters(), lr=LR, foreach=True) for m in models]
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        for model, opt in zip(models, opts):
            opt.zero_grad(set_to_none=True)
            loss_fn(model(xt), yt).backward()
            opt.step()
    return torch_time(step, max(10, steps // runs) if runs > 1 else steps, torch)


def torch_batched(sizes, n, runs, steps, torch):
    """ms/step of `runs` networks as one model: stacked weights, bmm, per-run mean losses."""
    x, y = batch(sizes, n)
    xt = torch.tensor(x, device="cuda").expand(runs, n, sizes[0])
    yt = torch.tensor(y, device="cuda").repeat(runs)
    params = []
    for i in range(len(sizes) - 1):
        w = torch.randn(runs, sizes[i + 1], sizes[i], device="cuda") * (2.0 / sizes[i]) ** 0.5
        params += [w.requires_grad_(), torch.zeros(runs, 1, sizes[i + 1], device="cuda",
                                                   requires_grad=True)]
    opt = torch.optim.Adam(params, lr=LR, foreach=True)

    def step():
        opt.zero_grad(set_to_none=True)
        h = xt
        for i in range(0, len(params), 2):
            h = torch.baddbmm(params[i + 1], h, params[i].transpose(1, 2))
            if i < len(params) - 2:
                h = torch.relu(h)
        loss = torch.nn.functional.cross_entropy(h.reshape(runs * n, -1), yt,
                                                 reduction="sum") / n
        loss.backward()
        opt.step()
    return torch_time(step, steps, torch)


def main():
    from kernels.cuda import device_name
    print(f"device: {device_name()}")
    try:
        import torch
        has_torch = torch.cuda.is_available()
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    except ImportError:
        has_torch = False
    if not has_torch:
        print("PyTorch with CUDA not available: timing ours only")
    header = (f"{'config':26s} {'compile s':>9s} {'ours ms':>8s} {'step ms':>8s} "
              f"{'torch ms':>9s} {'torch/ours':>10s} {'bmm ms':>7s} {'bmm/ours':>8s}")
    print(header)
    print("-" * len(header))
    failed = False
    for label, sizes, n, runs, steps in CONFIGS:
        try:
            compile_s, epoch_ms, step_ms = ours(sizes, n, runs, steps)
            row = f"{label:26s} {compile_s:9.2f} {epoch_ms:8.3f} {step_ms:8.3f}"
            if has_torch:
                loop_ms = torch_loop(sizes, n, runs, steps, torch)
                row += f" {loop_ms:9.3f} {loop_ms / epoch_ms:10.2f}"
                if runs > 1:
                    bmm_ms = torch_batched(sizes, n, runs, steps, torch)
                    row += f" {bmm_ms:7.3f} {bmm_ms / epoch_ms:8.2f}"
            print(row, flush=True)
        except Exception as exc:  # report and go on with the other configs
            failed = True
            print(f"{label:26s} FAILED: {type(exc).__name__}: {exc}".splitlines()[0], flush=True)
    print("ours ms: train_epoch per step (no sync per step); step ms: train_step (host batch, "
          "loss copied back each step); torch ms: eager PyTorch (a loop over the models when "
          "several); bmm: one batched PyTorch model for all runs")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
