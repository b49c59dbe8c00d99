"""Steps per second of one vanishing-style run with metrics every 50 steps vs only at start/end."""
import time
from threadpoolctl import threadpool_limits
from studies.config import resolve
from studies.run.execute import train_run
base = dict(dataset="digits", width=64, depth=10, activation="tanh", init="xavier_normal",
            optimizer="sgd", lr=0.05, batch_size=64, steps=3000, dtype="float32")
with threadpool_limits(1):
    train_run(resolve({**base, "steps": 50, "metrics_every": 50}))  # warm
    for every in (3000, 50, 10):
        best = []
        for _ in range(3):
            t = time.perf_counter()
            run, hist, _ = train_run(resolve({**base, "metrics_every": every}))
            wall = time.perf_counter() - t - run["compile_time"]
            best.append((wall, run["train_time"]))
        wall, train = min(best)
        print(f"metrics_every={every:5d}: {3000 / wall:8.0f} steps/s overall, "
              f"{3000 / train:8.0f} steps/s inside the training kernel, "
              f"recording {100 * (wall - train) / wall:4.1f}% of the run")
