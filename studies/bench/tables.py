"""The benchmark's outputs: the terminal table, the targets as met/missed rows, and the files
(CSV and Parquet of every measurement, the train-step ratio table as train_steps.csv and
train_steps.md, CSVs of the extras, summary.json)."""
import json
import math

import pandas as pd

from studies.bench.cases import TARGET_NETS

PEERS = ("numpy", "torch", "jax")
# (target, networks, peer, minimum ratio of the peer's time to ours)
STEP_TARGETS = [("overhead-bound: 2x JAX jit", "overhead", "jax", 2.0),
                ("overhead-bound: 5x PyTorch eager", "overhead", "torch", 5.0),
                ("medium: 1.3x JAX jit", "medium", "jax", 1.3),
                ("medium: 2.5x PyTorch eager", "medium", "torch", 2.5),
                ("large: at least JAX jit", "large", "jax", 1.0)]


def net_label(sizes, batch=None):
    """[40, 64x20, 10] B=64: runs of equal widths shortened."""
    parts, i = [], 0
    while i < len(sizes):
        j = i
        while j + 1 < len(sizes) and sizes[j + 1] == sizes[i]:
            j += 1
        parts += [str(sizes[i])] * (j - i + 1) if j - i < 2 else [f"{sizes[i]}x{j - i + 1}"]
        i = j + 1
    return f"[{', '.join(parts)}]" + ("" if batch is None else f" B={batch}")


def _step_row(rows, sizes, impl="gradlab", dtype="float32"):
    return next((r for r in rows if r["group"] == "train_step" and r["name"] == str(sizes)
                 and r["impl"] == impl and r["dtype"] == dtype and "median_s" in r), None)


def evaluate_targets(rows, sweep, fit, startup, peak):
    """One dict per target: measured value, threshold, met (None: not measured)."""
    out = []
    for label, kind, peer, minimum in STEP_TARGETS:
        for sizes, batch in TARGET_NETS[kind]:
            row = _step_row(rows, sizes)
            value = row.get(f"ratio_{peer}") if row else None
            out.append({"target": label, "case": net_label(sizes, batch), "value": value,
                        "threshold": minimum, "met": None if value is None else value >= minimum,
                        "unit": f"{peer} time / ours (medians)",
                        "value_from_min": row.get(f"min_ratio_{peer}") if row else None})
    for sizes, batch in TARGET_NETS["large"]:
        row = _step_row(rows, sizes)
        value = row.get("peak_fraction") if row else None
        out.append({"target": "large: >= 80% of matmul peak", "case": net_label(sizes, batch),
                    "value": value, "threshold": 0.8,
                    "met": None if value is None else value >= 0.8,
                    "unit": "6 P B FLOPs / median time / peak",
                    "value_from_min": value * row["median_s"] / row["min_s"] if row else None})
    ours = max((r for r in sweep if r["impl"].startswith("gradlab") and "net_steps_per_s" in r),
               key=lambda r: r["net_steps_per_s"], default=None)
    for peer, minimum in (("jax_vmap", 1.5), ("torch_loop", 10.0)):
        other = next((r for r in sweep if r["impl"] == peer and "net_steps_per_s" in r), None)
        value = ours["net_steps_per_s"] / other["net_steps_per_s"] if ours and other else None
        best = max((r["best_net_steps_per_s"] for r in sweep if r["impl"].startswith("gradlab")
                    and "best_net_steps_per_s" in r), default=None)
        case = f"{ours['runs']} x {net_label(json.loads(ours['sizes']))}" if ours else "-"
        out.append({"target": f"sweep: {minimum:g}x {peer}", "case": case,
                    "value": value, "threshold": minimum,
                    "met": None if value is None else value >= minimum,
                    "unit": "throughput ratio (medians)",
                    "value_from_min": best / other["best_net_steps_per_s"] if best and other
                    else None})
    r2 = fit.get("r2") if fit else None
    out.append({"target": "backward linear in parameters", "case": "R^2 of the fit",
                "value": r2, "threshold": 0.98, "met": None if r2 is None else r2 >= 0.98,
                "unit": "R^2"})
    warm = startup.get("warm_process_wall_s")
    out.append({"target": "warm start to first train step < 1.5 s", "case": "new process",
                "value": warm, "threshold": 1.5, "met": None if warm is None else warm < 1.5,
                "unit": "s (process wall time)"})
    return out


def train_step_table(rows):
    """One row per train-step network and dtype: medians in microseconds of our public call
    (MLP.train_step on NumPy arrays), our fused kernel alone, JAX and PyTorch, and the peers'
    time over our public call's."""
    table = []
    for r in rows:
        if r["group"] != "train_step" or r["impl"] != "gradlab" or "median_s" not in r:
            continue
        sizes = json.loads(r["name"])
        batch = int(r["shape"].rsplit("B=", 1)[1])
        entry = {"net": net_label(sizes, batch), "dtype": r["dtype"],
                 "ours_us": 1e6 * r["median_s"]}
        for impl, key in (("gradlab_kernel", "kernel_us"), ("jax", "jax_us"),
                          ("torch", "torch_us")):
            peer = _step_row(rows, sizes, impl, r["dtype"])
            entry[key] = 1e6 * peer["median_s"] if peer else math.nan
        entry["x_jax"] = r.get("ratio_jax", math.nan)
        entry["x_torch"] = r.get("ratio_torch", math.nan)
        table.append(entry)
    return pd.DataFrame(table, columns=["net", "dtype", "ours_us", "kernel_us", "jax_us",
                                        "torch_us", "x_jax", "x_torch"])


def markdown_table(frame):
    """The train-step table as Markdown (x_peer: peer time / our public call's)."""
    head = "| net | dtype | ours (public call) us | ours (kernel) us | JAX us | PyTorch us | " \
           "x JAX | x PyTorch |"
    lines = [head, "|" + "---|" * 8]
    for r in frame.itertuples():
        lines.append(f"| {r.net} | {r.dtype} | {r.ours_us:,.1f} | {r.kernel_us:,.1f} | "
                     f"{r.jax_us:,.1f} | {r.torch_us:,.1f} | {r.x_jax:.2f} | {r.x_torch:.2f} |")
    return "\n".join(lines) + "\n"


def write_files(out, rows, sweep, breakdown, backward, targets, summary):
    steps = train_step_table(rows)
    steps.to_csv(out / "train_steps.csv", index=False)
    (out / "train_steps.md").write_text(markdown_table(steps))
    frame = pd.DataFrame(rows)
    frame.to_csv(out / "bench.csv", index=False)
    frame.to_parquet(out / "bench.parquet", index=False)
    for name, data in (("sweep", sweep), ("breakdown", breakdown), ("backward", backward),
                       ("targets", targets)):
        pd.DataFrame(data).to_csv(out / f"{name}.csv", index=False)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))


def _us(seconds):
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "-"
    return f"{seconds * 1e6:,.1f}" if seconds < 1e-2 else f"{seconds * 1e3:,.2f}m"


def _ratio(row, peer):
    value = row.get(f"ratio_{peer}")
    return "-" if value is None else f"{value:.2f}"


def print_report(rows, sweep, breakdown, fit, startup, targets, peak, log=print):
    """The table of every case (our median, spread, ratios, GFLOP/s, %peak), then the extras."""
    ours = [r for r in rows if r["impl"] == "gradlab"]
    invalid = [r for r in rows if not r["valid"]]
    head = (f"{'group':<20}{'case':<24}{'shape':<28}{'dtype':<8}{'ours us':>11}{'IQR%':>6}"
            f"{'compile s':>10}" + "".join(f"{'x' + p:>8}" for p in PEERS) + f"{'xepoch':>8}"
            f"{'GFLOP/s':>9}{'%peak':>7}")
    log(head)
    log("-" * len(head))
    for r in ours:
        if "median_s" not in r:
            log(f"{r['group']:<20}{r['name'][:23]:<24}{r['shape'][:27]:<28}{r['dtype']:<8} "
                f"INVALID")
            continue
        iqr = 100 * (r["p75_s"] - r["p25_s"]) / r["median_s"]
        epoch = r.get("ratio_gradlab_epoch")
        gflops = r.get("gflops", math.nan)
        log(f"{r['group']:<20}{r['name'][:23]:<24}{r['shape'][:27]:<28}{r['dtype']:<8}"
            f"{_us(r['median_s']):>11}{iqr:>6.0f}{r['compile_s']:>10.2f}"
            + "".join(f"{_ratio(r, p):>8}" for p in PEERS)
            + f"{'-' if epoch is None else f'{1 / epoch:.2f}':>8}"
            + (f"{gflops:>9.1f}{100 * r['peak_fraction']:>6.0f}%" if not math.isnan(gflops)
               else f"{'-':>9}{'-':>7}"))
    log("x<peer>: peer time / our time (> 1: ours faster); xepoch: per-step speedup of one "
        "epoch call over per-step calls")
    if invalid:
        log(f"{len(invalid)} implementation(s) failed validation (not timed):")
        for r in invalid:
            log(f"  {r['impl']} {r['group']}/{r['name']} {r['shape']} {r['dtype']}: "
                f"{r['error'].splitlines()[0]}")
    if sweep:
        log("sweep (network-steps per second):")
        for r in sweep:
            rate = r.get("net_steps_per_s")
            log(f"  {r['impl']:<20} {'-' if rate is None else f'{rate:,.0f}':>12}"
                + ("" if r["valid"] else "  INVALID"))
    if breakdown:
        log("train step breakdown (float32, us per step):")
        nets = list(dict.fromkeys(b["sizes"] for b in breakdown))
        for sizes in nets:
            parts = {b["part"]: b["seconds"] for b in breakdown if b["sizes"] == sizes}
            log(f"  {sizes}: total {_us(sum(parts.values()))} = " + ", ".join(
                f"{k} {_us(v)}" for k, v in parts.items()))
    if fit:
        log(f"backward time vs parameters: t = {fit['intercept'] * 1e6:.1f} us + "
            f"{fit['slope'] * 1e9:.3f} ns x P, R^2 = {fit['r2']:.4f}")
    if startup:
        log("startup: " + ", ".join(f"{k} {v:.2f}" for k, v in startup.items()))
    log("train steps (us; x<peer>: peer time / our public call's):")
    for line in markdown_table(train_step_table(rows)).splitlines():
        log("  " + line)
    log("targets (value from medians, [from the fastest samples]):")
    for t in targets:
        value = "-" if t["value"] is None else f"{t['value']:.3g}"
        best = t.get("value_from_min")
        best = "" if best is None else f"[{best:.3g}]"
        met = {True: "met", False: "MISSED", None: "not measured"}[t["met"]]
        sign = "<" if t["target"].startswith("warm start") else ">="
        log(f"  {t['target']:<34} {t['case']:<24} {value:>7} {best:>8} ({sign} {t['threshold']:g})"
            f" {met}")
