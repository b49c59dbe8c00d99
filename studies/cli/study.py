"""`gradlab run`, `gradlab list` and `gradlab show`: sweeps from study specs and their results."""
import sys
from pathlib import Path

from studies.spec import bundled_specs, load_spec


def add_parser(sub):
    run = sub.add_parser("run", help="run a study (a bundled name or a spec .toml)",
                         description="Runs every unfinished run of a study and stores tidy "
                         "Parquet tables under results/<study>/ (resumable).")
    run.add_argument("study", help="bundled study name (see `gradlab list`) or a .toml spec")
    run.add_argument("--scale", default="quick", choices=["smoke", "quick", "full"])
    run.add_argument("--workers", type=int, default=None,
                     help="worker processes (default: one per core; 0 = serial in-process)")
    run.add_argument("--scheduler", default=None, metavar="ADDR",
                     help="Dask scheduler address, e.g. tcp://127.0.0.1:8786")
    run.add_argument("--out", default=None, help="results folder (default results/<study>)")
    run.add_argument("--device", default=None, choices=["cpu", "cuda"],
                     help="override the spec's device for every run")
    run.add_argument("--no-group", dest="group_runs", action="store_false",
                     help="train every run alone (default: runs that share an architecture "
                     "and schedule train together in one multi-run kernel; same numbers)")
    run.add_argument("--quiet", action="store_true", help="no progress output")
    run.set_defaults(handler=run_command)

    lst = sub.add_parser("list", help="list the bundled studies")
    lst.set_defaults(handler=list_command)

    show = sub.add_parser("show", help="summarize a study's stored runs and their labels")
    show.add_argument("results", help="a results folder (results/<study>) or a study name")
    show.set_defaults(handler=show_command)


def run_command(args):
    from studies.run.runner import run_study
    spec = load_spec(args.study)
    if args.workers is not None and args.workers < 0:
        raise ValueError(f"--workers: expected 0 (serial) or a positive count, got {args.workers}")
    overrides = {}
    if args.device:
        overrides["device"] = args.device
        if args.device == "cuda":
            from kernels.cuda import require
            require()
    summary = run_study(spec, scale=args.scale, out=args.out, workers=args.workers,
                        scheduler=args.scheduler, show_progress=not args.quiet,
                        overrides=overrides, group_runs=args.group_runs)
    fresh = summary.total - summary.skipped
    counts = ", ".join(f"{v} {k}" for k, v in sorted(summary.counts.items())) or "nothing new"
    rate = fresh / summary.wall_time * 60 if summary.wall_time > 0 and fresh else 0.0
    print(f"{spec.name} ({args.scale}): {summary.total} runs, {summary.skipped} already done, "
          f"{counts}; {summary.wall_time:.1f} s ({rate:.1f} runs/min); results in {summary.out}")
    print_summary(summary.out)
    return 1 if summary.counts.get("failed") else 0


def list_command(args):
    for name, path in bundled_specs().items():
        spec = load_spec(path)
        print(f"{name:14s} {spec.description}")
    return 0


def print_summary(path, stream=None):
    """Runs per status and per label, and the runs table's key columns."""
    import pandas as pd
    from studies.store import load
    stream = stream or sys.stdout
    results = load(path)
    runs = results.runs
    if runs.empty:
        print(f"{path}: no runs stored yet", file=stream)
        return
    swept = [k for k in results.manifest.get("spec", {}).get("axes", {})] or []
    swept = [k for k in swept if k in runs.columns]
    cols = swept + ["seed", "status", "labels", "final_loss", "final_test_accuracy"]
    cols = [c for c in cols if c in runs.columns]
    with pd.option_context("display.width", 160, "display.max_rows", 60,
                           "display.max_colwidth", 50):
        print(runs.sort_values(cols[:len(swept)] or ["run_id"])[cols].to_string(index=False),
              file=stream)
    print("\nstatus: " + ", ".join(f"{k} {v}" for k, v in runs["status"].value_counts().items()),
          file=stream)
    labels = runs["labels"].fillna("").str.split(",").explode().str.split("@").str[0]
    labels = labels[labels != ""].value_counts()
    print("labels: " + ", ".join(f"{k} {v}" for k, v in labels.items()), file=stream)


def show_command(args):
    path = Path(args.results)
    if not path.exists() and (Path("results") / args.results).exists():
        path = Path("results") / args.results
    print_summary(path)
    return 0
