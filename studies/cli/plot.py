"""`gradlab plot` (a study's figures from its store) and `gradlab report` (every bundled study
run, drawn and gathered into results/report/index.md and one self-contained index.html)."""
import sys
from pathlib import Path

from studies.spec import SCALES


def add_parser(sub):
    plot = sub.add_parser("plot", help="draw a study's figures from its results store",
                          description="Draws the figures a study's spec lists (figures = "
                          "[...]) from its store into RESULTS/figures/ as PNG and PDF, and "
                          "prints each file with its caption.")
    plot.add_argument("results", help="a results folder (results/<study>) or a study name")
    plot.add_argument("--out", default=None, help="figure folder (default RESULTS/figures)")
    plot.add_argument("--only", default=None, metavar="NAME,...",
                      help="draw only these figures (default: those the spec lists)")
    plot.add_argument("--dpi", type=int, default=None,
                      help="PNG resolution (default 200; about 120 suits a README)")
    plot.add_argument("--no-pdf", action="store_true", help="write PNG files only")
    plot.set_defaults(handler=plot_command)

    report = sub.add_parser("report", help="run every bundled study and write the report",
                            description="Runs every bundled study (reusing finished runs), "
                            "draws its figures and writes DIR/index.md and a self-contained "
                            "DIR/index.html, each figure under the report section it "
                            "illustrates.")
    report.add_argument("--scale", default="quick", choices=list(SCALES))
    report.add_argument("--out", default="results/report",
                        help="report folder (default results/report)")
    report.add_argument("--results", default="results", metavar="DIR",
                        help="where the study stores live: DIR/<study> (default results, "
                        "shared with `gradlab run`)")
    report.add_argument("--workers", type=int, default=None,
                        help="worker processes per study (default: one per core; 0 = serial)")
    report.add_argument("--only", default=None, metavar="NAME,...",
                        help="only these bundled studies (comma-separated)")
    report.add_argument("--quiet", action="store_true", help="no progress bars")
    report.set_defaults(handler=report_command)


def results_path(name_or_path):
    """A results folder, or results/<name> for a bare study name."""
    path = Path(name_or_path)
    if not path.exists() and (Path("results") / name_or_path).exists():
        return Path("results") / name_or_path
    return path


def _names(text):
    return [n.strip() for n in text.split(",") if n.strip()] if text else None


def plot_command(args):
    from studies.plots import check_figure_names, draw, figure_names, load_current
    from studies.store import FINISHED
    path = results_path(args.results)
    if args.dpi is not None and not 20 <= args.dpi <= 1200:
        raise ValueError(f"--dpi: expected 20..1200, got {args.dpi}")
    out = Path(args.out) if args.out else path / "figures"
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: expected a folder for the figures, but it is a file")
    results = load_current(path)
    if not results.runs["status"].isin(FINISHED).any():
        counts = ", ".join(f"{n} {s}" for s, n in results.runs["status"].value_counts().items())
        raise ValueError(f"{path}: no completed runs to draw ({counts}; gradlab show {path} "
                         f"lists their errors)")
    names = check_figure_names(_names(args.only), results) if args.only else \
        figure_names(results)
    if not names:
        study = results.manifest.get("study", path)
        raise ValueError(f"{path}: study {study!r} lists no figures (add figures = [...] to its "
                         f"spec, or pass --only NAME,...)")
    try:
        made = draw(results, out, names, dpi=args.dpi, pdf=not args.no_pdf)
    except OSError as err:
        raise ValueError(f"--out {out}: cannot write the figures: {err.strerror or err}") \
            from None
    for fig, png, pdf in made:
        print("\n".join(p for p in (png, pdf) if p) + f"\n  {fig.caption}\n")
    return 0


def report_command(args):
    from studies.report.build import build_report
    if args.workers is not None and args.workers < 0:
        raise ValueError(f"--workers: expected 0 (serial) or a positive count, got {args.workers}")
    summary = build_report(scale=args.scale, out=args.out, results_root=args.results,
                           workers=args.workers, only=_names(args.only),
                           show_progress=not args.quiet)
    for study in summary.studies:
        state = "ok" if not study.errors else f"{len(study.errors)} error(s)"
        print(f"{study.name:14s} {study.runs_line()}; {len(study.figures)} figure(s); "
              f"{study.wall_time:.1f} s; {state}")
        for where, message in study.errors:
            print(f"    {where}: {message}")
    print(f"report ({summary.scale}, {summary.wall_time:.1f} s): {summary.markdown} and "
          f"{summary.html}")
    broken = [s.name for s in summary.studies if s.errors]
    if broken:
        print(f"gradlab report: studies with errors: {', '.join(broken)} (listed in the report)",
              file=sys.stderr)
        return 1
    return 0
