"""Figures: one function per figure kind, reading only the results store.

A figure function takes a `studies.store.Results` and returns a list of `Figure`s (a matplotlib
figure, a file stem, a caption stating what it shows and its key numbers). Register it with
`@figure("name")`; a study spec lists the names it wants under `figures = [...]`.
`draw(results, out_dir)` renders a study's figures to PNG and PDF.

    results = current(load("results/vanishing"))   # only the runs of the latest sweep
    for fig, png, pdf in draw(results, "results/vanishing/figures"):
        print(png, fig.caption)

Figure modules are the non-underscore modules of this package (`studies/plots/<study>.py`);
they are imported on first use, and one that fails to import is reported by name (its error
in IMPORT_ERRORS) without hiding the figures of the others.
"""
import traceback
from dataclasses import dataclass, field
from pathlib import Path

FIGURES = {}
IMPORT_ERRORS = {}


@dataclass
class Figure:
    """One rendered figure: `stem` names the files, `caption` states what it shows and its key
    numbers, `numbers` holds those numbers for tests and the report."""
    fig: object
    stem: str
    caption: str
    numbers: dict = field(default_factory=dict)


def figure(name):
    """Registers a figure function under `name`."""
    def register(func):
        old = FIGURES.get(name)
        if old is not None and (old.__module__, old.__qualname__) != (func.__module__,
                                                                        func.__qualname__):
            raise ValueError(f"figure {name!r} registered twice ({old.__module__} and "
                             f"{func.__module__})")
        FIGURES[name] = func
        return func
    return register


def _load_all():
    """Imports every module of this package so their figures register; a module that fails to
    import is recorded in IMPORT_ERRORS (module -> one-line error) instead of raising."""
    import importlib
    import pkgutil
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_") or info.name == "style":
            continue
        try:
            importlib.import_module(f"{__name__}.{info.name}")
            IMPORT_ERRORS.pop(info.name, None)
        except Exception as err:  # another study's module must not hide these figures
            IMPORT_ERRORS[info.name] = f"{type(err).__name__}: {err}"


def known_figures():
    """Sorted names of every registered figure (after importing all figure modules)."""
    _load_all()
    return sorted(FIGURES)


def figure_names(results):
    """The figures a study wants: its stored spec's `figures`, else those of the bundled spec
    of the same name (a store made before the spec listed figures)."""
    spec = results.manifest.get("spec", {}) or {}
    names = list(spec.get("figures", []))
    if names:
        return names
    study = results.manifest.get("study") or spec.get("name")
    if study:
        from ..spec import bundled_specs, load_spec
        path = bundled_specs().get(study)
        if path is not None:
            return list(load_spec(path).figures)
    return []


def current(results):
    """Results restricted to the runs of the latest sweep (the manifest's grid): a store that
    served several scales keeps all their runs, and a figure should show one scale."""
    from dataclasses import replace
    grid = results.manifest.get("grid")
    if not grid or results.runs.empty or "run_id" not in results.runs:
        return results
    ids = {g["run_id"] for g in grid}

    def keep(frame):
        if frame.empty or "run_id" not in frame:
            return frame
        return frame[frame["run_id"].isin(ids)].reset_index(drop=True)

    return replace(results, runs=keep(results.runs), history=keep(results.history),
                   layers=keep(results.layers))


def _unknown_message(unknown):
    broken = "".join(f"; module {m} failed to import: {e}" for m, e in IMPORT_ERRORS.items())
    return f"figures: unknown name(s) {unknown}; known: {sorted(FIGURES)}{broken}"


def draw(results, out_dir, names=None, errors=None, dpi=None, pdf=True):
    """Renders the named figures (default: those the study's spec lists) to out_dir as PNG and
    PDF; returns the list of (Figure, png_path, pdf_path) (pdf_path None when pdf=False).

    errors: None raises on the first failing figure; a list collects (name, message) pairs
    instead and draws the rest (the report uses this). dpi: PNG resolution (style.DPI)."""
    from .style import save
    _load_all()
    names = list(names if names is not None else figure_names(results))
    unknown = [n for n in names if n not in FIGURES]
    if unknown:
        if errors is None:
            raise ValueError(_unknown_message(unknown))
        errors.extend((n, _unknown_message([n])) for n in unknown)
        names = [n for n in names if n in FIGURES]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    made = []
    for name in names:
        try:
            for fig in FIGURES[name](results):
                paths = save(fig.fig, out_dir / fig.stem, dpi=dpi,
                             formats=("png", "pdf") if pdf else ("png",))
                made.append((fig, paths[0], paths[1] if pdf else None))
        except Exception as err:
            if errors is None:
                raise
            import matplotlib.pyplot as plt
            plt.close("all")
            where = traceback.extract_tb(err.__traceback__)[-1]
            errors.append((name, f"{type(err).__name__}: {err} "
                                 f"({Path(where.filename).name}:{where.lineno})"))
    return made


def load_current(path, spec=None):
    """The runs of a store's latest sweep (studies.plots.current), labelled under the
    thresholds of `spec` or of the spec the store was made from (studies.store.load_labelled);
    a store without runs is an error naming the path."""
    from studies.store import load_labelled
    results = current(load_labelled(path, spec))
    if results.runs.empty:
        raise ValueError(f"{path}: the store holds no runs yet (run the study first: "
                         f"gradlab run <study> --out {path})")
    return results


def check_figure_names(names, results):
    """names, when each is a registered figure that this study lists; otherwise a ValueError
    naming the unknown or foreign names and this study's figures."""
    _load_all()
    unknown = [n for n in names if n not in FIGURES]
    if unknown:
        raise ValueError(_unknown_message(unknown))
    own = figure_names(results)
    foreign = [n for n in names if own and n not in own]
    if foreign:
        study = results.manifest.get("study", "this study")
        raise ValueError(f"--only: {', '.join(map(repr, foreign))} not among the figures of "
                         f"study {study!r}; expected some of: {', '.join(own)}")
    return list(names)
