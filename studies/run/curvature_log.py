"""Curvature and gradient-noise columns of a run's records (docs/curvature.md, "In studies").

RunLog.measure hands each metric step's evaluation and layer rows to `CurvatureLog.add`, which
fills, on the curvature batch (the first `curvature_rows` training rows; 0 = all of them):
- history: sharpness (top Hessian eigenvalue, Lanczos to sharpness_tol, at most
  sharpness_max_iter products), hessian_trace and hessian_trace_se (Hutchinson over
  trace_samples Rademacher probes) when `curvature`; noise_scale = B_simple = tr(Sigma)/|G|^2
  when `gradient_noise`;
- layers: grad_snr = |G_l|^2 / (tr(Sigma_l)/B) and layer_noise_scale = tr(Sigma_l)/|G_l|^2
  per layer when `gradient_noise`.
The columns are always there, NaN where not measured (switched off, a step off the interval,
a non-finite network), so tables of every study stack with the same columns.

Measured at metric steps that are multiples of curvature_every (0: every metric step) and at
the last step. The random starts are seeded by (run seed, step): a run gives the same numbers
grouped in a MultiMLP or alone. `add` is called once per metric step, in step order (steps 0,
metrics_every, 2 metrics_every, ..., steps), which is how it knows the step.
"""
import numpy as np

HISTORY_COLUMNS = ("sharpness", "hessian_trace", "hessian_trace_se", "noise_scale")
LAYER_COLUMNS = ("grad_snr", "layer_noise_scale")
LANCZOS, HUTCHINSON = 0, 1  # stream tags of the per-step seeds


def estimator_seed(run_seed, step, stream):
    """The seed of one estimator's random start at one step of one run (NumPy SeedSequence of
    (run seed, step, stream)), so a run's probes do not depend on the runs beside it."""
    state = np.random.SeedSequence([int(run_seed), int(step), stream]).generate_state(2)
    return int(state[0]) << 32 | int(state[1])


def curvature_batch(config, x, y):
    """(x, y) rows the quantities use: the first curvature_rows (0: all) training rows."""
    rows = config["curvature_rows"] or len(x)
    return x[:rows], y[:rows]


class CurvatureLog:
    """A run's curvature/noise measurements (one per RunLog)."""

    def __init__(self, config, x, y):
        self.config = config
        self.on = bool(config["curvature"] or config["gradient_noise"])
        self.x, self.y = curvature_batch(config, x, y) if self.on else (None, None)
        self.calls = 0

    def step_of_call(self):
        """The metric step of the next call: calls * metrics_every, capped at steps."""
        return min(self.calls * self.config["metrics_every"], self.config["steps"])

    def due(self, step):
        every = self.config["curvature_every"]
        return self.on and (every == 0 or step % every == 0 or step == self.config["steps"])

    def add(self, net, evals, stats):
        """Adds the history columns to `evals` and the layer columns to the column dict `stats`
        (one value per layer; measured, or NaN)."""
        step = self.step_of_call()
        self.calls += 1
        history, layers = measure(net, self.x, self.y, self.config, step) \
            if self.due(step) and np.isfinite(net.params).all() else (None, None)
        evals.update(history or dict.fromkeys(HISTORY_COLUMNS, np.nan))
        rows = [layers[layer - 1] if layers else dict.fromkeys(LAYER_COLUMNS, np.nan)
                for layer in stats["layer"]]
        for column in LAYER_COLUMNS:
            stats[column] = np.array([row[column] for row in rows], np.float64)


def measure(net, x, y, config, step):
    """({history column: value}, [{layer column: value} per layer]) of `net` on (x, y)."""
    seed = config["seed"]
    history = dict.fromkeys(HISTORY_COLUMNS, np.nan)
    layers = [dict.fromkeys(LAYER_COLUMNS, np.nan) for _ in range(net.n_layers)]
    if config["curvature"]:
        history["sharpness"] = net.sharpness(  # max_iter is capped at n_params there
            x, y, tol=config["sharpness_tol"], max_iter=config["sharpness_max_iter"],
            seed=estimator_seed(seed, step, LANCZOS))
        history["hessian_trace"], history["hessian_trace_se"] = net.hessian_trace(
            x, y, samples=config["trace_samples"], seed=estimator_seed(seed, step, HUTCHINSON))
    if config["gradient_noise"]:
        noise = net.gradient_noise(x, y)
        history["noise_scale"] = noise["b_simple"]
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = noise["trace_sigma_layers"] / noise["grad_sq_layers"]
        for row, snr, b in zip(layers, noise["snr_layers"], scale):
            row.update(grad_snr=float(snr), layer_noise_scale=float(b))
    return history, layers
