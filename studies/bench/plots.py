"""Figures of `gradlab bench` (PNG + PDF under <out>/figures): time against size per peer, the
train step broken down by kernel, backward time against the parameter count with its linear
fit and R^2, and the sweep throughput."""
import numpy as np

from studies.plots.style import FULL_WIDTH, log_axis, new_figure, save

IMPL_COLORS = {"gradlab": "#d62728", "gradlab_epoch": "#ff9896", "numpy": "#1f77b4",
               "torch": "#ff7f0e", "jax": "#2ca02c"}
SIZE_PANELS = [("dense_forward", "dense", "FLOPs per call"),
               ("dense_backward", "dense", "FLOPs per call"),
               ("activation_forward", "tanh", "elements"), ("activation_backward", "tanh",
                                                             "elements"),
               ("activation_forward", "gelu", "elements"), ("optimizer", "adam", "parameters"),
               ("cross_entropy", "softmax_ce", "elements"), ("train_step", None, "weights")]


def draw_all(out, rows, sweep, breakdown, backward, fit):
    folder = out / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    paths = [time_vs_size(rows, folder / "time_vs_size")]
    if breakdown:
        paths.append(step_breakdown_figure(breakdown, rows, folder / "step_breakdown"))
    if backward:
        paths.append(backward_figure(backward, fit, folder / "backward_vs_params"))
    if sweep:
        paths.append(sweep_figure(sweep, folder / "sweep_throughput"))
    return paths


def time_vs_size(rows, stem):
    """Median time per call against size, one line per implementation (float32 solid, float64
    dashed), one panel per kernel."""
    fig, axes = new_figure(ncols=4, nrows=2, width=FULL_WIDTH, height=FULL_WIDTH * 0.5)
    for ax, (group, name, xlabel) in zip(axes.ravel(), SIZE_PANELS):
        picked = [r for r in rows if r["group"] == group and (name is None or r["name"] == name)
                  and "median_s" in r]
        for impl in IMPL_COLORS:
            for dtype, style in (("float32", "-"), ("float64", "--")):
                pts = sorted((r["size"], r["median_s"]) for r in picked
                             if r["impl"] == impl and r["dtype"] == dtype)
                if pts:
                    x, y = zip(*pts)
                    ax.plot(x, y, style, marker="o", markersize=2, color=IMPL_COLORS[impl],
                            label=f"{impl} {dtype}")
        ax.set_title(group if name is None else f"{group} ({name})")
        if picked:
            log_axis(ax, "x", xlabel)
            log_axis(ax, "y", "seconds per call")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncol=5)
    return save(fig, str(stem))


def step_breakdown_figure(breakdown, rows, stem):
    """Stacked bars of the parts of a float32 train step per network, and the fused step's
    time (one epoch call, per step) as a black tick."""
    nets = list(dict.fromkeys(b["sizes"] for b in breakdown))
    parts = list(dict.fromkeys(b["part"] for b in breakdown))
    fig, axes = new_figure(width=FULL_WIDTH, height=0.4 * len(nets) + 1.2)
    ax = axes[0, 0]
    cmap = __import__("matplotlib").colormaps["tab10"]
    for i, sizes in enumerate(nets):
        left = 0.0
        total = {b["part"]: b["seconds"] for b in breakdown if b["sizes"] == sizes}
        for j, part in enumerate(parts):
            width = total.get(part, 0.0) * 1e6
            ax.barh(i, width, left=left, color=cmap(j % 10), label=part if i == 0 else None)
            left += width
        fused = next((r["median_s"] for r in rows if r["group"] == "train_step"
                      and r["name"] == sizes and r["impl"] == "gradlab_epoch"
                      and r["dtype"] == "float32" and "median_s" in r), None)
        if fused is not None:
            ax.plot([fused * 1e6] * 2, [i - 0.4, i + 0.4], color="black", linewidth=1.5,
                    label="fused step" if i == 0 else None)
    ax.set_yticks(range(len(nets)), [s if len(s) < 28 else s[:25] + "...]" for s in nets])
    ax.set_xscale("log")
    ax.set_xlabel("microseconds per step (log scale)")
    fig.legend(loc="outside lower center", ncol=5)
    return save(fig, str(stem))


def backward_figure(backward, fit, stem):
    """Backward time against the parameter count, with t = a + b P and its R^2."""
    fig, axes = new_figure(width=FULL_WIDTH * 0.5)
    ax = axes[0, 0]
    p = np.array([r["params"] for r in backward], np.float64)
    t = np.array([r["seconds"] for r in backward]) * 1e3
    ax.plot(p, t, "o", color=IMPL_COLORS["gradlab"], markersize=3, label="measured")
    grid = np.linspace(0, p.max() * 1.05, 50)
    ax.plot(grid, (fit["intercept"] + fit["slope"] * grid) * 1e3, color="black",
            label=f"fit a + bP, R$^2$ = {fit['r2']:.4f}")
    ax.set_xlabel("parameters P")
    ax.set_ylabel("backward time (ms)")
    ax.set_title(f"backward pass, {backward[0]['dtype']}, batch {backward[0]['batch']}")
    ax.legend()
    return save(fig, str(stem))


def sweep_figure(sweep, stem):
    """Network-steps per second of the sweep, one bar per implementation."""
    done = [r for r in sweep if "net_steps_per_s" in r]
    fig, axes = new_figure(width=FULL_WIDTH * 0.5)
    ax = axes[0, 0]
    colors = [IMPL_COLORS["gradlab"] if r["impl"].startswith("gradlab") else
              IMPL_COLORS.get(r["impl"].split("_")[0], "#7f7f7f") for r in done]
    ax.bar(range(len(done)), [r["net_steps_per_s"] for r in done], color=colors)
    ax.set_xticks(range(len(done)), [r["impl"] for r in done], rotation=30, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("network-steps per second")
    if done:
        ax.set_title(f"{done[0]['runs']} networks {done[0]['sizes']}, batch {done[0]['batch']}")
    return save(fig, str(stem))
