"""The report's section 4 figures, computed from the kernels while the report is built (they
need no study store): the gradient check and the backward cost against the parameter count.

    part = kernel_checks_part(out)     # StudyReport fields: figures, captions, findings rows

- Gradient check: relative error ||g - g_fd|| / (||g|| + ||g_fd||) per layer (W and b of the
  layer together) of the compiled backward pass (`MLP.loss_and_grads`) against central
  differences (L(theta + h e_i) - L(theta - h e_i)) / 2h of the float64 NumPy reference loss
  (kernels/reference.py), per hidden activation, for float64 and float32 networks holding the
  same (float32-representable) parameters. The float32 floor is the relative error of the
  float64 gradient rounded to float32, the least any float32 result can have.
- Backward cost: seconds per `backward_batch` call against the parameter count P of
  [100, w, w, w, 10] networks (studies.bench.breakdown.backward_scaling), with the least-squares
  fit t = a + b P and its R^2.
"""
import time
from pathlib import Path

import numpy as np

from kernels import MLP
from kernels.activations import ACTIVATIONS
from kernels.reference import reference_trace
from kernels.tolerance import relative_error
from studies.analysis.findings.common import row
from studies.bench.breakdown import backward_scaling
from studies.bench.plots import backward_figure
from studies.plots.style import FULL_WIDTH, display, log_axis, new_figure, save

NAME = "backprop_checks"
SECTION = "4"
DTYPES = ("float64", "float32")
HIDDEN = tuple(name for name, a in ACTIVATIONS.items() if a.hidden)
SIZES = (5, 6, 6, 6, 3)         # three hidden layers and the output layer
BATCH = 8
FD_STEP = 1e-5                  # ~ eps64^(1/3) balances truncation h^2 and rounding eps/h
# Documented bounds on the per-layer relative error against the float64 central difference.
BOUNDS = {"float64": 1e-8, "float32": 1e-5}
WIDTHS = (32, 64, 96, 128, 192, 256, 320, 384)
COST_BATCH = 64
R2_THRESHOLD = 0.98             # the benchmark's target for "linear in the parameters"


def _case(activation, seed):
    """A float64 net whose parameters are float32-representable, and its batch."""
    rng = np.random.default_rng(seed)
    net = MLP(list(SIZES), activation=activation, loss="cross_entropy", seed=seed,
              bias_scale=0.1)
    net.params[:] = net.params.astype(np.float32)
    x = rng.normal(size=(BATCH, SIZES[0])).astype(np.float32).astype(np.float64)
    labels = rng.integers(0, SIZES[-1], BATCH)
    return net, x, labels


def _reference_loss(net, x, y_kernel, weights, biases):
    n = net.n_layers
    return reference_trace(weights, biases, [None] * n, [None] * n, net.activations,
                           list(net.spec.act_param), net.loss_name, x, y_kernel)["loss"]


def central_differences(net, x, labels, step=FD_STEP):
    """[(dW_l, db_l)] by central differences of the float64 reference loss."""
    _, y_kernel = net.check_batch(x, labels)
    weights = [np.array(w, np.float64) for w in net.weights]
    biases = [np.array(b, np.float64) for b in net.biases]
    out = []
    for tensors in zip(weights, biases):
        grads = []
        for t in tensors:
            g = np.zeros_like(t)
            for i in np.ndindex(t.shape):
                keep = t[i]
                t[i] = keep + step
                up = _reference_loss(net, x, y_kernel, weights, biases)
                t[i] = keep - step
                down = _reference_loss(net, x, y_kernel, weights, biases)
                t[i] = keep
                g[i] = (up - down) / (2 * step)
            grads.append(g)
        out.append(tuple(grads))
    return out


def _flat(pair):
    return np.concatenate([np.ravel(pair[0]), np.ravel(pair[1])])


def gradient_check(activations=HIDDEN, seed=0):
    """Rows {activation, dtype, layer, error, floor}: per-layer relative error of the kernel's
    gradient against the float64 central difference; `floor` is that of the float64 central
    difference rounded to the row's dtype (0 for float64)."""
    rows = []
    for activation in activations:
        net, x, labels = _case(activation, seed)
        numeric = [_flat(p) for p in central_differences(net, x, labels)]
        for dtype in DTYPES:
            twin = MLP(list(SIZES), activation=activation, loss="cross_entropy", dtype=dtype,
                       seed=seed)
            twin.params[:] = net.params.astype(dtype)
            _, dws, dbs = twin.loss_and_grads(x.astype(dtype), labels)
            for layer, (dw, db, fd) in enumerate(zip(dws, dbs, numeric), start=1):
                rounded = fd.astype(dtype).astype(np.float64)
                rows.append({"activation": activation, "dtype": dtype, "layer": layer,
                             "error": relative_error(_flat((dw, db)), fd),
                             "floor": relative_error(rounded, fd)})
    return rows


def gradient_check_figure(rows, stem):
    """Per-layer relative error (log) per activation, one panel per dtype; returns
    (png, pdf, caption, numbers)."""
    fig, axes = new_figure(ncols=len(DTYPES), width=FULL_WIDTH, height=2.6)
    acts = list(dict.fromkeys(r["activation"] for r in rows))
    numbers = {}
    for ax, dtype in zip(axes[0], DTYPES):
        sub = [r for r in rows if r["dtype"] == dtype]
        layers = sorted({r["layer"] for r in sub})
        for j, act in enumerate(acts):
            err = [next(r["error"] for r in sub if r["activation"] == act and r["layer"] == k)
                   for k in layers]
            ax.plot(np.array(layers) + 0.06 * (j - len(acts) / 2), np.maximum(err, 1e-17),
                    marker="o", markersize=3, linewidth=0.8, label=display(act))
        ax.axhline(BOUNDS[dtype], color="black", linestyle="--", linewidth=0.8,
                   label=f"bound {BOUNDS[dtype]:g}")
        if dtype != "float64":
            floor = float(np.mean([r["floor"] for r in sub]))
            ax.axhline(floor, color="0.5", linestyle=":", linewidth=0.9,
                       label=f"{dtype} rounding floor")
        log_axis(ax, "y", "relative error vs float64 central diff.")
        ax.set_xticks(layers, [f"{k}" + (" (out)" if k == layers[-1] else "") for k in layers])
        ax.set_xlabel("layer l (W and b)")
        ax.set_title(dtype)
        worst = max(sub, key=lambda r: r["error"])
        numbers[dtype] = {"max_error": float(worst["error"]), "worst": worst["activation"],
                          "median_error": float(np.median([r["error"] for r in sub])),
                          "floor": float(np.mean([r["floor"] for r in sub])),
                          "bound": BOUNDS[dtype]}
    axes[0][-1].legend(fontsize=5, ncol=3, loc="upper right", bbox_to_anchor=(1.0, 0.95))
    png, pdf = save(fig, str(stem))
    held = all(numbers[d]["max_error"] <= BOUNDS[d] for d in DTYPES)
    n64, n32 = numbers["float64"], numbers["float32"]
    caption = (f"Gradient check: per-layer relative error of the compiled backward pass "
               f"against float64 central differences (h = {FD_STEP:g}) of the NumPy reference "
               f"loss, {len(acts)} activations, net {list(SIZES)}, softmax cross-entropy, "
               f"batch {BATCH}, one seed. float64: max {n64['max_error']:.1e} "
               f"({display(n64['worst'])}), median {n64['median_error']:.1e}; float32: max "
               f"{n32['max_error']:.1e} ({display(n32['worst'])}), median "
               f"{n32['median_error']:.1e}, against a rounding floor of {n32['floor']:.1e} "
               f"(the float64 gradient rounded to float32). Criterion: every error <= "
               f"{BOUNDS['float64']:g} in float64 and <= {BOUNDS['float32']:g} in float32: "
               f"{'reproduced' if held else 'not reproduced'}.")
    return png, pdf, caption, numbers


def backward_cost(widths=WIDTHS, batch=COST_BATCH, dtype="float64", min_time=0.02, repeats=5):
    """(rows, fit) of studies.bench.breakdown.backward_scaling."""
    return backward_scaling(list(widths), batch, dtype, min_time=min_time, repeats=repeats)


def backward_cost_caption(rows, fit):
    p = [r["params"] for r in rows]
    verdict = "reproduced" if fit["r2"] >= R2_THRESHOLD else "not reproduced"
    return (f"Backward pass (backward_batch, {rows[0]['dtype']}, batch {rows[0]['batch']}) "
            f"time against the parameter count P of [100, w, w, w, 10] networks, w = "
            f"{rows[0]['width']}-{rows[-1]['width']} (P = {min(p):,}-{max(p):,}; best of 5 "
            f"timings each, on a shared machine): fit t = a + b P with b = "
            f"{fit['slope'] * 1e9:.3g} ns per parameter, a = {fit['intercept'] * 1e6:.3g} us, "
            f"R^2 = {fit['r2']:.4f}. Criterion: R^2 >= {R2_THRESHOLD} (linear in the "
            f"parameters): {verdict}.")


def findings(check_numbers, fit):
    """Findings rows of section 4 (columns of studies.analysis.findings)."""
    n64, n32 = check_numbers["float64"], check_numbers["float32"]
    return [row(NAME, "backpropagation gives the exact gradient", "report sec. 4.1-4.2",
                f"per-layer relative error vs float64 central differences <= "
                f"{BOUNDS['float64']:g} (float64) and <= {BOUNDS['float32']:g} (float32), "
                f"every activation",
                f"max {n64['max_error']:.1e} (float64), {n32['max_error']:.1e} (float32; "
                f"rounding floor {n32['floor']:.1e})",
                [n64["max_error"] <= BOUNDS["float64"], n32["max_error"] <= BOUNDS["float32"]]),
            row(NAME, "the backward pass is linear in the parameters", "report sec. 4.2",
                f"least-squares t = a + b P over network sizes: R^2 >= {R2_THRESHOLD}",
                f"R^2 {fit['r2']:.4f}, b {fit['slope'] * 1e9:.3g} ns/parameter",
                [fit["r2"] >= R2_THRESHOLD])]


def kernel_checks_part(out, widths=WIDTHS, activations=HIDDEN, min_time=0.02):
    """The section 4 part of the report, as the fields of a studies.report.build.StudyReport
    (figures under out/backprop_checks/); never raises: an error lands in "errors"."""
    started = time.perf_counter()
    out = Path(out)
    folder = out / NAME
    folder.mkdir(parents=True, exist_ok=True)
    part = {"name": NAME, "spec_path": __file__, "section": SECTION,
            "description": "kernel checks of backpropagation, computed while the report is "
                           "built (no study store)",
            "grid": f"activations {', '.join(activations)}; dtypes {', '.join(DTYPES)}; "
                    f"widths {list(widths)}", "figures": [], "findings": [], "errors": []}
    try:
        check = gradient_check(activations)
        png, pdf, caption, numbers = gradient_check_figure(check, folder / "gradient_check")
        part["figures"].append(_entry("gradient_check", png, pdf, caption, out))
        rows, fit = backward_cost(widths, min_time=min_time)
        png, pdf = backward_figure(rows, fit, folder / "backward_cost")
        part["figures"].append(_entry("backward_cost", png, pdf,
                                      backward_cost_caption(rows, fit), out))
        part["findings"] = findings(numbers, fit)
    except Exception as err:
        part["errors"].append(("kernel checks", f"{type(err).__name__}: {err}"))
    part["wall_time"] = time.perf_counter() - started
    return part


def _entry(stem, png, pdf, caption, out):
    return {"stem": stem, "caption": caption, "png": Path(png).relative_to(out).as_posix(),
            "pdf": Path(pdf).relative_to(out).as_posix()}
