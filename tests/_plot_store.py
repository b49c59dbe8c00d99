"""A hand-built results store for figure and report tests: the runner's columns, written with
pandas, with known gradient profiles, two seeds of one configuration, a diverged run and a
failed run. No kernels run.

Synthetic model: ||dL/dW_l|| at step s = 0.3 * factor^(L - l) * (1 + 0.01 s) with factor per
(activation, init) in FACTOR, so r = ||dL/dW_1|| / ||dL/dW_L|| = factor^(L - 1) = factor^depth.
"""
import json
from pathlib import Path

import pandas as pd

from studies.config import resolve
from studies.analysis.metrics import LAYER_COLUMNS

FACTOR = {("sigmoid", "glorot_standard"): 0.25, ("sigmoid", "xavier_normal"): 0.6,
          ("relu", "glorot_standard"): 0.8, ("relu", "he_normal"): 1.0,
          ("tanh", "xavier_normal"): 0.9, ("tanh", "glorot_standard"): 0.7}
DEPTHS = (2, 6)
STEPS, EVERY = 30, 10
DIVERGED = ("relu", "glorot_standard", 6)   # diverges at step DIVERGED_AT
DIVERGED_AT = 17
FAILED = ("tanh", "glorot_standard", 2)
FIGURES = ["vanishing_profiles", "vanishing_ratio", "vanishing_heatmap", "update_ratio_layers"]


def _run_row(run_id, config, status, labels, first, error=""):
    row = {"status": status, "error": error, "final_loss": 2.0 if status == "completed" else
           float("inf"), "best_loss": 1.9, "final_train_accuracy": 0.5,
           "final_test_accuracy": 0.45, "final_test_loss": 2.1, "steps_done": STEPS,
           "labels": labels, "train_time": 0.1, "compile_time": 0.01, "n_params": 1000}
    for label in ("vanishing", "exploding", "dead", "saturated", "diverged"):
        row[f"first_{label}"] = first.get(label, -1)
    row.update({"wall_time": 0.2, "run_id": run_id, "study": "vanishing", "scale": "smoke",
                "attempts": 1, **config})
    if status == "failed":
        row = {k: row[k] for k in ("status", "error", "wall_time", "run_id", "study", "scale",
                                   "attempts")} | config
    return row


def _write(folder, name, rows):
    frame = pd.DataFrame(rows)
    if len(frame):
        frame.to_parquet(folder / f"{name}.parquet", index=False)
    else:
        pd.DataFrame({"run_id": pd.Series(dtype=str)}).to_parquet(
            folder / f"{name}.parquet", index=False)


def make_store(root, study="vanishing", figures=FIGURES, section="8", zero=None):
    """Writes the store under root; returns root (a Path). zero: an (activation, init, depth)
    whose gradients are exactly zero at the last step (a dead network)."""
    root = Path(root)
    (root / "runs").mkdir(parents=True, exist_ok=True)
    grid = []
    n = 0
    for (activation, init), factor in FACTOR.items():
        for depth in DEPTHS:
            seeds = (0, 1) if (activation, init, depth) == ("sigmoid", "glorot_standard", 6) \
                else (0,)
            for seed in seeds:
                n += 1
                run_id = f"run{n:03d}{activation[:3]}{depth}"
                config = resolve({"activation": activation, "init": init, "depth": depth,
                                  "width": 16, "steps": STEPS, "metrics_every": EVERY,
                                  "seed": seed, "dataset": "digits"})
                grid.append({"run_id": run_id, "config": config})
                folder = root / "runs" / run_id
                folder.mkdir()
                key = (activation, init, depth)
                if key == FAILED:
                    _write(folder, "run", [_run_row(run_id, config, "failed", "", {},
                                                    "RuntimeError: synthetic failure")])
                    _write(folder, "history", [])
                    _write(folder, "layers", [])
                    continue
                diverged = key == DIVERGED
                steps = [s for s in range(0, STEPS + 1, EVERY)
                         if not diverged or s < DIVERGED_AT]
                L = depth + 1
                noise = 1.0 + 0.05 * seed
                history, layers = [], []
                for s in steps:
                    history.append({"step": s, "epoch": s / 5, "loss": 2.3 - 0.01 * s,
                                    "loss_avg": 2.3, "grad_norm": 0.5, "grad_norm_clipped": 0.5,
                                    "lr": 0.05, "diverged": False, "train_loss": 2.3,
                                    "test_loss": 2.3, "train_accuracy": 0.2,
                                    "test_accuracy": 0.2, "train_time": 0.01 * s})
                    for layer in range(1, L + 1):
                        row = {c: 0.1 for c in LAYER_COLUMNS}
                        row.update(layer=layer, step=s, delta_norm=0.1, w_norm=1.0,
                                   update_ratio=1e-3, layer_labels="healthy@0")
                        row["w_grad_norm"] = 0.3 * factor ** (L - layer) * (1 + 0.01 * s) \
                            * noise
                        row["b_grad_norm"] = row["w_grad_norm"] / 2
                        layers.append(row)
                if key == zero:
                    for row in layers[-L:]:
                        row["w_grad_norm"] = row["b_grad_norm"] = 0.0
                if diverged:
                    history.append({**history[-1], "step": DIVERGED_AT, "loss": float("inf"),
                                    "grad_norm": float("inf"), "diverged": True})
                    layers[-1]["w_grad_norm"] = float("inf")  # last record: non-finite output
                r = factor ** depth
                first = {}
                if r < 1e-3:
                    first["vanishing"] = 0
                if diverged:
                    first["diverged"] = DIVERGED_AT
                labels = ",".join(f"{k}@{v}" for k, v in first.items()) or "healthy"
                status = "diverged" if diverged else "completed"
                _write(folder, "run", [_run_row(run_id, config, status, labels, first)])
                history_frame = [{"run_id": run_id, **h} for h in history]
                _write(folder, "history", history_frame)
                _write(folder, "layers", [{"run_id": run_id, **row} for row in layers])
    manifest = {"study": study, "description": "hand-built test store", "scale": "smoke",
                "spec": {"name": study, "section": section, "figures": list(figures),
                         "labels": {}, "axes": {"depth": list(DEPTHS)}},
                "grid": grid, "git_commit": "0" * 40, "started": "2026-01-01T00:00:00+00:00",
                "finished": "2026-01-01T00:01:00+00:00", "counts": {}}
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
    return root


def expected_ratio(activation, init, depth):
    return FACTOR[(activation, init)] ** depth


if __name__ == "__main__":  # python tests/_plot_store.py DIR: a store to look at
    import sys
    print(make_store(sys.argv[1]))
