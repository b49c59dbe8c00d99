"""train_step of [40,128,128,10], batch 64, float32, Adam: gradlab vs PyTorch eager, same process."""
import sys, time
import numpy as np
import torch
threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
torch.set_num_threads(threads)
from threadpoolctl import threadpool_limits
from kernels import MLP
from kernels.optimizers import Adam
rng = np.random.default_rng(0)
x = rng.normal(size=(64, 40)).astype(np.float32); y = rng.integers(0, 10, 64)
net = MLP([40, 128, 128, 10], activation="tanh", dtype="float32", seed=0)
opt = Adam(lr=1e-3, eps_inside_sqrt=False)
layers = []
for w, b in zip(net.weights, net.biases):
    lin = torch.nn.Linear(w.shape[1], w.shape[0])
    with torch.no_grad():
        lin.weight.copy_(torch.tensor(w)); lin.bias.copy_(torch.tensor(b))
    layers += [lin, torch.nn.Tanh()]
model = torch.nn.Sequential(*layers[:-1]); topt = torch.optim.Adam(model.parameters(), lr=1e-3)
xt, yt = torch.tensor(x), torch.tensor(y)
def ours(): net.train_step(x, y, opt)
def theirs():
    topt.zero_grad(); torch.nn.functional.cross_entropy(model(xt), yt).backward(); topt.step()
def med(f, n=2000):
    for _ in range(200): f()
    ts = []
    for _ in range(n):
        t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
    return np.median(ts) * 1e6
with threadpool_limits(threads):
    rows = []
    for _ in range(3):
        rows.append((med(ours), med(theirs)))
a, b = np.median([r[0] for r in rows]), np.median([r[1] for r in rows])
print(f"threads={threads}: gradlab {a:.1f} us, torch eager {b:.1f} us, ratio {b/a:.2f}x")
