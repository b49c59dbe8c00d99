"""Worst relative errors of the gradient checks: central differences and PyTorch, every case of
tests/test_mlp_gradients.py."""
import sys; from pathlib import Path; sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import numpy as np
from tests.test_mlp_gradients import CASES, ARCHITECTURES, make_case, finite_differences
from kernels.tolerance import relative_error
from tests._torch_twin import torch_trace
worst_fd, worst_torch, n_fd, n_torch = 0, 0, 0, 0
for act, loss, bn in CASES:
    for i, sizes in enumerate(ARCHITECTURES):
        net, x, y = make_case(act, loss, bn, sizes, seed=i)
        net.loss_and_grads(x, y); g = net.grads.copy(); fd = finite_differences(net, x, y)
        for kind, layers in net.grads_by_name(g).items():
            for l, t in enumerate(layers):
                if t is None: continue
                f = net.grads_by_name(fd)[kind][l]
                if np.abs(f).max() < 1e-8: continue
                worst_fd = max(worst_fd, relative_error(t, f)); n_fd += 1
        net, x, y = make_case(act, loss, bn, sizes, seed=i, batch=7)
        ours = net.trace(x, y); _, yk = net.check_batch(x, y); th = torch_trace(net, x, yk)
        for k, v in th.items():
            n_torch += 1
            if np.linalg.norm(v) > 1e-10: worst_torch = max(worst_torch, relative_error(ours[k], v))
print(f"FD: {len(CASES)*len(ARCHITECTURES)} nets, {n_fd} tensors, worst rel err {worst_fd:.2e}")
print(f"torch: {n_torch} named intermediates, worst rel err {worst_torch:.2e}")
