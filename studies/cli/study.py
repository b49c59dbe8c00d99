"""`gradlab run`, `gradlab list` and `gradlab show`: sweeps from study specs and their results.
Stored runs are shown with the labels of the spec's current thresholds (recomputed from their
stored history and layers, no retraining)."""
import sys
from pathlib import Path

from studies.spec import bundled_specs, load_spec

USER_FAILURES = ("DatasetError",)  # failed runs that are the input's fault: exit 2
RUN_TABLE_ROWS = 40  # rows of the runs table after a sweep (`gradlab show` prints all)


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
    run.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                     help="when another sweep is writing the same store, wait up to this long "
                     "for it to finish (default: exit at once)")
    run.set_defaults(handler=run_command)

    lst = sub.add_parser("list", help="list the bundled studies")
    lst.set_defaults(handler=list_command)

    show = sub.add_parser("show", help="summarize a study's stored runs and their labels")
    show.add_argument("results", help="a results folder (results/<study>) or a study name")
    show.add_argument("--spec", default=None, metavar="SPEC",
                      help="label the runs with this spec's [labels] thresholds (default: "
                      "the spec the store was made from, as its file reads now)")
    show.set_defaults(handler=show_command)


def open_store(out, wait=0.0):
    """The Store at `out`, locked for this sweep; errors name --out and what it must be."""
    from studies.store import Store, StoreError, StoreLocked
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: expected a folder for the results store, but it is a "
                         f"file")
    store = Store(out)
    try:
        store.acquire(wait)
    except StoreLocked:
        raise
    except StoreError as err:
        raise ValueError(f"--out {out}: expected a writable folder; "
                         f"{str(err).split(': ', 1)[-1]}") from None
    return store


def run_command(args):
    from studies.run.runner import default_out, run_study
    spec = load_spec(args.study)
    if args.workers is not None and args.workers < 0:
        raise ValueError(f"--workers: expected 0 (serial) or a positive count, got {args.workers}")
    if not args.wait >= 0:
        raise ValueError(f"--wait: expected seconds >= 0, got {args.wait}")
    overrides = {}
    if args.device:
        overrides["device"] = args.device
        if args.device == "cuda":
            from kernels.cuda import require
            require()
    store = open_store(args.out or default_out(spec), args.wait)
    try:
        summary = run_study(spec, scale=args.scale, out=store.root, workers=args.workers,
                            scheduler=args.scheduler, show_progress=not args.quiet,
                            overrides=overrides, group_runs=args.group_runs)
    finally:
        store.release()
    fresh = summary.total - summary.skipped
    counts = ", ".join(f"{v} {k}" for k, v in sorted(summary.counts.items())) or "nothing new"
    rate = fresh / summary.wall_time * 60 if summary.wall_time > 0 and fresh else 0.0
    print(f"{spec.name} ({args.scale}): {summary.total} runs, {summary.skipped} already done, "
          f"{counts}; {summary.wall_time:.1f} s ({rate:.1f} runs/min); results in {summary.out}")
    results = print_summary(summary.out, spec=spec, max_rows=RUN_TABLE_ROWS)
    failed = summary.counts.get("failed", 0)
    if not failed:
        return 0
    errors = _sweep_errors(results)
    head = f"all {failed} runs failed" if failed == fresh else f"{failed} of {fresh} runs failed"
    first = f"; first error: {' '.join(errors[0].split())}" if errors else ""
    print(f"gradlab run: {head}{first} (gradlab show lists every error)", file=sys.stderr)
    users = failed == fresh and errors and all(e.startswith(USER_FAILURES) for e in errors)
    return 2 if users else 1


def _sweep_errors(results):
    """The errors of the failed runs of the latest sweep, in run_id order."""
    runs = results.runs
    if runs.empty or "error" not in runs:
        return []
    ids = {g.get("run_id") for g in results.manifest.get("grid") or []}
    mine = runs["run_id"].isin(ids) if ids else True
    return runs.loc[(runs["status"] == "failed") & mine, "error"].dropna().astype(str).tolist()


def list_command(args):
    for name, path in bundled_specs().items():
        spec = load_spec(path)
        print(f"{name:14s} {spec.description}")
    return 0


def print_summary(path, stream=None, spec=None, max_rows=None):
    """Runs per status and per label, the runs table's key columns (its first `max_rows`
    rows, all when None) and the failed runs' errors; returns the Results shown."""
    import pandas as pd
    stream = stream or sys.stdout
    from studies.store import load_labelled
    results = load_labelled(path, spec)
    runs = results.runs
    if runs.empty:
        print(f"{path}: no runs stored yet", file=stream)
        return results
    swept = list((results.manifest.get("spec") or {}).get("axes") or {})
    swept = [k for k in swept if k in runs.columns]
    cols = swept + ["seed", "status", "labels", "final_loss", "final_test_accuracy"]
    cols = [c for c in cols if c in runs.columns]
    with pd.option_context("display.width", 160, "display.max_rows", 60,
                           "display.max_colwidth", 50):
        table = runs.sort_values(cols[:len(swept)] or ["run_id"])[cols]
        shown = table if max_rows is None else table.head(max_rows)
        print(shown.to_string(index=False), file=stream)
    if len(shown) < len(table):
        print(f"... {len(table) - len(shown)} more runs (gradlab show {path} lists every run)",
              file=stream)
    print("\nstatus: " + ", ".join(f"{k} {v}" for k, v in runs["status"].value_counts().items()),
          file=stream)
    if "labels" in runs:
        labels = runs["labels"].fillna("").astype(str).str.split(",").explode()
        labels = labels.str.split("@").str[0]
        labels = labels[labels != ""].value_counts()
        print("labels: " + ", ".join(f"{k} {v}" for k, v in labels.items()), file=stream)
    failed = runs[runs["status"] == "failed"]
    if len(failed):
        print(f"failed runs ({len(failed)}):", file=stream)
        errors = failed["error"] if "error" in failed else pd.Series("", index=failed.index)
        for run_id, error in zip(failed["run_id"], errors.fillna("").astype(str)):
            print(f"  {run_id}: {error or 'no error recorded'}", file=stream)
    return results


def show_command(args):
    path = Path(args.results)
    if not path.exists() and (Path("results") / args.results).exists():
        path = Path("results") / args.results
    spec = load_spec(args.spec) if args.spec else None
    print_summary(path, spec=spec)
    return 0
