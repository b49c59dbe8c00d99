"""One look for every figure: sizes for a paper column, fixed colors per activation, optimizer
and init, display names, log-scale helpers, seed bands, diverged-run markers, a legend that
never covers data, number formatting for captions, and saving to PNG + PDF.

    fig, axes = new_figure(ncols=3, width=FULL_WIDTH)
    ax.plot(x, y, color=color_for("init", "he_normal"), label=display("he_normal"))
    log_axis(ax, "y", r"$\\|\\partial L/\\partial W_l\\|$")
    legend_below(fig, axes)          # one shared legend under the panels
    save(fig, out_dir / "stem")      # stem.png + stem.pdf
"""
import math
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.lines
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np

COLUMN_WIDTH = 3.4   # inches: one column of a two-column paper
FULL_WIDTH = 7.0
DPI = 200

ACTIVATION_COLORS = {"identity": "#7f7f7f", "sigmoid": "#1f77b4", "tanh": "#ff7f0e",
                     "relu": "#2ca02c", "leaky_relu": "#8c564b", "elu": "#9467bd",
                     "gelu": "#d62728", "gelu_tanh": "#e377c2", "softmax": "#17becf"}
OPTIMIZER_COLORS = {"sgd": "#1f77b4", "momentum": "#ff7f0e", "nesterov": "#2ca02c",
                    "rmsprop": "#9467bd", "adam": "#d62728"}
INIT_COLORS = {"naive_normal": "#8c564b", "naive_uniform": "#c49c94",
               "glorot_standard": "#e377c2", "xavier_uniform": "#bcbd22",
               "xavier_normal": "#17becf", "he_uniform": "#aec7e8", "he_normal": "#2ca02c",
               "lecun_normal": "#9edae5", "lecun_uniform": "#dbdb8d", "orthogonal": "#7f7f7f"}
DIVERGED_MARKER = dict(marker="x", color="black", linestyle="none")
DIVERGED_COLOR = "black"

# Legend and caption names of registry keys (anything else is shown as it is).
DISPLAY_NAMES = {
    "identity": "identity", "sigmoid": "sigmoid", "tanh": "tanh", "relu": "ReLU",
    "leaky_relu": "Leaky ReLU", "elu": "ELU", "gelu": "GELU", "gelu_tanh": "GELU (tanh)",
    "softmax": "softmax",
    "sgd": "SGD", "momentum": "momentum", "nesterov": "Nesterov", "rmsprop": "RMSProp",
    "adam": "Adam",
    "naive_normal": "naive normal", "naive_uniform": "naive uniform",
    "glorot_standard": "standard", "xavier_uniform": "Xavier uniform",
    "xavier_normal": "Xavier normal", "he_uniform": "He uniform", "he_normal": "He normal",
    "lecun_normal": "LeCun normal", "lecun_uniform": "LeCun uniform",
    "orthogonal": "orthogonal",
    "mse": "MSE", "cross_entropy": "cross-entropy",
}

# Line styles for a third grouping (depth, width, ...) when color already encodes another key.
LINESTYLES = ("-", (0, (5, 1.5)), (0, (1.5, 1)), (0, (5, 1.5, 1.5, 1.5)),
              (0, (8, 2, 1.5, 2, 1.5, 2)), (0, (3, 3)))
MARKERS = ("o", "s", "^", "D", "v", "P", "*")


def color_for(key, value):
    """The fixed color of a value of 'activation', 'optimizer' or 'init' (grey otherwise)."""
    table = {"activation": ACTIVATION_COLORS, "optimizer": OPTIMIZER_COLORS,
             "init": INIT_COLORS}.get(key, {})
    return table.get(value, "#333333")


def display(value):
    """Legend/caption name of a registry key: 'he_normal' -> 'He normal', 'relu' -> 'ReLU'."""
    return DISPLAY_NAMES.get(value, str(value))


def linestyle_for(index):
    """The index-th line style (cycles)."""
    return LINESTYLES[index % len(LINESTYLES)]


def marker_for(index):
    return MARKERS[index % len(MARKERS)]


def new_figure(ncols=1, nrows=1, width=COLUMN_WIDTH, height=None, **kwargs):
    """A figure sized for a paper column (or FULL_WIDTH), small readable fonts."""
    plt.rcParams.update({"font.size": 7, "axes.titlesize": 7, "axes.labelsize": 7,
                         "legend.fontsize": 6, "xtick.labelsize": 6, "ytick.labelsize": 6,
                         "lines.linewidth": 1.0, "axes.grid": True, "grid.alpha": 0.3,
                         "pdf.fonttype": 42, "ps.fonttype": 42,
                         "legend.frameon": False})
    height = height or width * 0.75 * nrows / max(ncols, 1) ** 0.5
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, height), squeeze=False,
                             constrained_layout=True, **kwargs)
    return fig, axes


def log_axis(ax, which="y", label=None):
    """Log scale on 'x' or 'y' (or 'both') with decade ticks, and the axis label."""
    for axis in ("x", "y") if which == "both" else (which,):
        getattr(ax, f"set_{axis}scale")("log")
        target = getattr(ax, f"{axis}axis")
        target.set_major_locator(matplotlib.ticker.LogLocator(base=10, numticks=8))
        # minor ticks add little over many decades and cost seconds per saved figure
        target.set_minor_locator(matplotlib.ticker.NullLocator())
        if label is not None:
            getattr(ax, f"set_{axis}label")(label)


def seed_band(ax, x, ys, color, label=None, geometric=False, **line_kwargs):
    """Mean line and min-max band over seeds (rows of ys). geometric=True averages in log space
    (for norms on a log axis); non-positive or non-finite entries are ignored there."""
    ys = np.atleast_2d(np.asarray(ys, dtype=float))
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
        if geometric:
            logs = np.where(np.isfinite(ys) & (ys > 0), np.log(ys), np.nan)
            mean = np.exp(np.nanmean(logs, axis=0))
        else:
            mean = np.nanmean(ys, axis=0)
        low, high = np.nanmin(ys, axis=0), np.nanmax(ys, axis=0)
    lines = ax.plot(x, mean, color=color, label=label, **line_kwargs)
    if len(ys) > 1:
        ax.fill_between(x, low, high, color=color, alpha=0.2, linewidth=0)
    return lines


def mark_diverged(ax, x, y, label=None, size=5):
    """Black crosses at (x, y): the last finite point of runs that diverged."""
    return ax.plot(x, y, markersize=size, label=label, zorder=5, **DIVERGED_MARKER)


def legend_below(fig, axes=None, handles=None, labels=None, ncol=None, title=None):
    """One legend for the whole figure, under the panels, so it never hides data.
    Handles default to the unique labelled artists of all axes (first occurrence wins)."""
    if handles is None:
        seen = {}
        for ax in np.ravel(axes if axes is not None else fig.axes):
            for h, lab in zip(*ax.get_legend_handles_labels()):
                if lab and not lab.startswith("_") and lab not in seen:
                    seen[lab] = h
        labels, handles = list(seen), list(seen.values())
    if not handles:
        return None
    ncol = ncol or min(len(handles), 4)
    return fig.legend(handles, labels, loc="outside lower center", ncol=ncol, title=title,
                      handlelength=2.4, columnspacing=1.2)


def legend_rows(fig, rows):
    """One legend under the panels with one row per list of handles (e.g. colors in the first
    row, line styles in the second): matplotlib fills legends column by column, so the rows are
    padded with invisible entries and interleaved."""
    rows = [list(r) for r in rows if r]
    if not rows:
        return None
    ncol = max(len(r) for r in rows)
    blank = matplotlib.lines.Line2D([], [], alpha=0)
    padded = [r + [blank] * (ncol - len(r)) for r in rows]
    handles = [padded[i][j] for j in range(ncol) for i in range(len(padded))]
    labels = [h.get_label() if h is not blank else "" for h in handles]
    return fig.legend(handles, labels, loc="outside lower center", ncol=ncol,
                      handlelength=2.4, columnspacing=1.2)


def fmt(x, digits=2):
    """A number for a caption: 3 significant digits, scientific below 1e-3 or from 1e4,
    'n/a' for None/NaN, 'inf' for infinities."""
    if x is None:
        return "n/a"
    x = float(x)
    if math.isnan(x):
        return "n/a"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == 0:
        return "0"
    if abs(x) < 1e-3 or abs(x) >= 1e4:
        mantissa, exponent = f"{x:.{digits}e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
    if abs(x) >= 100:
        return f"{x:.0f}"
    return f"{x:.{digits + 1}g}"


def save(fig, stem, dpi=None, formats=("png", "pdf")):
    """Writes stem.png and stem.pdf (the given formats; PNG at `dpi`, default DPI); closes the
    figure; returns the paths in `formats` order."""
    paths = []
    for ext in formats:
        if ext not in ("png", "pdf"):
            raise ValueError(f"figure format {ext!r}: expected png or pdf")
    for ext in formats:
        path = f"{stem}.{ext}"
        if ext == "png":
            fig.savefig(path, dpi=dpi or DPI, metadata={"Software": "gradlab"})
        else:
            fig.savefig(path, metadata={"Creator": "gradlab", "CreationDate": None})
        paths.append(path)
        fig.set_layout_engine("none")  # the layout of the first save holds for the next ones
    plt.close(fig)
    return tuple(paths)
