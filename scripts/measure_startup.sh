#!/usr/bin/env bash
# Cold compile (empty Numba cache) and warm-cache start to the first train_step.
cd "$(dirname "$0")/.."
export NUMBA_CACHE_DIR=$(mktemp -d)
code='import time; t=time.perf_counter()
import numpy as np
from kernels import MLP
from kernels.optimizers import Adam
net = MLP([40,128,128,10], activation="tanh", dtype="float32", seed=0)
x = np.ones((64, 40), np.float32); y = np.zeros(64, int)
net.train_step(x, y, Adam()); print(f"{time.perf_counter()-t:.2f}")'
s=$(date +%s.%N); c=$(${PYTHON:-python} -c "$code"); e=$(date +%s.%N); echo "cold (empty cache): in-process $c s, wall $(echo "$e - $s" | bc) s"
for i in 1 2 3; do s=$(date +%s.%N); c=$(${PYTHON:-python} -c "$code"); e=$(date +%s.%N); echo "warm: in-process $c s, wall incl. interpreter $(echo "$e - $s" | bc) s"; done
rm -rf "$NUMBA_CACHE_DIR"
