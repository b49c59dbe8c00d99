"""Study specs: TOML files with fixed settings, sweep axes, seeds, label thresholds and scales.

    name = "vanishing"
    description = "one line"
    seeds = [0, 1]
    [fixed]            # configuration keys (studies.config.FIELDS) held constant
    [axes]             # key = [values]: the grid is their Cartesian product
    [labels]           # pathology thresholds (studies.analysis.labels.Thresholds)
    [scales.smoke]     # overrides per scale: seeds, and [scales.smoke.fixed] / [scales.smoke.axes]

Every error names the file, the key, the bad value and what is allowed: the type of every key,
nesting deeper than MAX_DEPTH, figure names (those studies/plots registers) and dataset files
(they must exist and be readable before any run starts).
"""
import ast
import functools
import itertools
import os
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .config import FIELDS, check_value, resolve, suggest

SCALES = ("smoke", "quick", "full")
TOP_KEYS = ("name", "description", "seeds", "fixed", "axes", "labels", "scales", "section",
            "figures")
SCALE_KEYS = ("seeds", "fixed", "axes")
SPEC_DIR = Path(__file__).parent / "specs"
PLOTS_DIR = Path(__file__).parent / "plots"
MAX_DEPTH = 32  # tables and arrays nested deeper than this are rejected


class SpecError(ValueError):
    """A study spec that cannot be used; the message names the file and the key."""


@dataclass
class StudySpec:
    name: str
    description: str
    path: str
    fixed: dict
    axes: dict
    seeds: list
    labels: dict = field(default_factory=dict)
    scales: dict = field(default_factory=dict)
    section: str = ""
    figures: list = field(default_factory=list)
    raw: dict = field(default_factory=dict)

    def at_scale(self, scale):
        """(fixed, axes, seeds) with the scale's overrides applied."""
        if scale not in SCALES:
            raise SpecError(f"scale: {scale!r} is not allowed{suggest(scale, SCALES)}; "
                            f"expected one of {list(SCALES)}")
        over = self.scales.get(scale, {})
        fixed = {**self.fixed, **over.get("fixed", {})}
        axes = {**self.axes, **over.get("axes", {})}
        for key in over.get("fixed", {}):
            axes.pop(key, None)
        for key in over.get("axes", {}):
            fixed.pop(key, None)
        return fixed, axes, list(over.get("seeds", self.seeds))

    def grid(self, scale="quick"):
        """Resolved configurations: the Cartesian product of the axes, times the seeds."""
        fixed, axes, seeds = self.at_scale(scale)
        keys = list(axes)
        configs = []
        for values in itertools.product(*(axes[k] for k in keys)):
            for seed in seeds:
                config = {**fixed, **dict(zip(keys, values)), "seed": seed}
                configs.append(resolve(config, where=f"{self.path}"))
        return configs


def bundled_specs():
    """{name: path} of the studies shipped under studies/specs."""
    return {p.stem: p for p in sorted(SPEC_DIR.glob("*.toml"))}


def find_spec(name_or_path):
    """A bundled study name or a path to a TOML file."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise SpecError(f"{name_or_path}: no such spec file")
        return path
    bundled = bundled_specs()
    if name_or_path in bundled:
        return bundled[name_or_path]
    raise SpecError(f"study {name_or_path!r} is neither a bundled study{suggest(name_or_path, bundled)}"
                    f" ({', '.join(bundled)}) nor a .toml file")


def load_spec(name_or_path):
    """Parses and validates a spec."""
    path = find_spec(name_or_path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise SpecError(f"{path}: cannot read the spec: {err.strerror or err}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise SpecError(f"{path}: not UTF-8 text (byte 0x{data[err.start]:02x} at offset "
                        f"{err.start}); save the spec as UTF-8") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise SpecError(f"{path}: not valid TOML: {err}") from None
    except RecursionError:
        raise SpecError(f"{path}: tables or arrays nested too deeply (at most {MAX_DEPTH} "
                        f"levels)") from None
    return parse_spec(raw, str(path))


def _depth(value):
    """Nesting depth of tables and lists (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        deepest = max(deepest, depth + 1)
        if deepest > MAX_DEPTH:
            return deepest
        stack.extend((child, depth + 1) for child in children)
    return deepest


@functools.lru_cache(maxsize=1)
def _declared_figures():
    """Names the figure modules of studies/plots register with @figure("name"), read from
    their sources (importing them would load matplotlib for every spec)."""
    names = set()
    for source in sorted(PLOTS_DIR.glob("*.py")):
        if source.name.startswith("_"):
            continue
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "figure" and \
                    node.args and isinstance(node.args[0], ast.Constant):
                names.add(node.args[0].value)
    return frozenset(names)


def figure_choices():
    """Sorted names a spec's figures may use: those studies/plots declares, and any figure
    registered at run time in this process."""
    plots = sys.modules.get("studies.plots")
    return sorted(_declared_figures() | set(getattr(plots, "FIGURES", {})))


def store_thresholds(manifest):
    """The label thresholds a store is shown under: those of the spec file it was made from as
    that file reads now (the manifest's spec_path), else those its manifest recorded."""
    path = manifest.get("spec_path")
    if isinstance(path, str) and Path(path).is_file():
        try:
            spec = load_spec(path)
        except SpecError:
            spec = None
        if spec is not None and spec.name == manifest.get("study"):
            return dict(spec.labels)
    labels = (manifest.get("spec") or {}).get("labels") or {}
    return dict(labels) if isinstance(labels, dict) else {}


def _fail(where, message):
    raise SpecError(f"{where}: {message}")


def _check_seeds(seeds, where):
    if not isinstance(seeds, list) or not seeds or any(
            isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
        _fail(where, f"seeds = {seeds!r}: expected a non-empty list of non-negative integers")
    if len(set(seeds)) != len(seeds):
        _fail(where, f"seeds = {seeds!r}: repeated seeds")
    return list(seeds)


def _checked(key, value, where):
    try:
        return check_value(key, value, where)
    except ValueError as err:
        raise SpecError(str(err)) from None
    except (TypeError, ArithmeticError) as err:
        _fail(where, f"{key} = {value!r}: not a usable value ({err})")


def _check_fixed(table, where):
    if not isinstance(table, dict):
        _fail(where, f"expected a table of configuration keys, got {table!r}")
    out = {}
    for key, value in table.items():
        if key == "seed":
            _fail(where, "seed: use the top-level 'seeds' list instead")
        out[key] = _checked(key, value, where)
    return out


def _check_axes(table, where):
    if not isinstance(table, dict):
        _fail(where, f"expected a table of key = [values], got {table!r}")
    out = {}
    for key, values in table.items():
        if key == "seed":
            _fail(where, "seed: use the top-level 'seeds' list instead")
        if not isinstance(values, list) or not values:
            _fail(where, f"{key} = {values!r}: an axis needs a non-empty list of values")
        out[key] = [_checked(key, v, where) for v in values]
        if len(set(map(repr, out[key]))) != len(out[key]):
            _fail(where, f"{key} = {values!r}: repeated values")
    return out


def _check_text(raw, key, path):
    value = raw.get(key, "")
    if not isinstance(value, str):
        _fail(path, f"{key} = {value!r}: expected a string")
    return value


def _check_figures(raw, path):
    figures = raw.get("figures", [])
    if not isinstance(figures, list) or not all(isinstance(f, str) for f in figures):
        _fail(path, f"figures = {figures!r}: expected a list of figure names")
    if len(set(figures)) != len(figures):
        _fail(path, f"figures = {figures!r}: repeated names")
    allowed = figure_choices()
    unknown = [f for f in figures if f not in allowed]
    if unknown:
        _fail(path, f"figures: unknown name {unknown[0]!r}{suggest(unknown[0], allowed)}; "
              f"allowed: {', '.join(allowed)}")
    return list(figures)


def _check_labels(raw, path):
    labels = raw.get("labels", {})
    if not isinstance(labels, dict):
        _fail(path, f"[labels] = {labels!r}: expected a table of thresholds such as "
              f"{{dead_fraction = 0.5}}")
    from studies.analysis.labels import Thresholds
    try:
        Thresholds.from_dict(labels)
    except (TypeError, ValueError) as err:
        raise SpecError(f"{path} [labels]: {err}") from None
    return dict(labels)


def _check_scales(raw, path):
    raw_scales = raw.get("scales", {})
    if not isinstance(raw_scales, dict):
        _fail(path, f"scales = {raw_scales!r}: expected a table of smoke/quick/full tables")
    scales = {}
    for scale, table in raw_scales.items():
        where = f"{path} [scales.{scale}]"
        if scale not in SCALES:
            _fail(where, f"unknown scale {scale!r}{suggest(scale, SCALES)}; expected one of "
                  f"{list(SCALES)}")
        if not isinstance(table, dict):
            _fail(where, f"{scale} = {table!r}: expected a table with seeds, [fixed] or [axes]")
        for key in table:
            if key not in SCALE_KEYS:
                hint = suggest(key, SCALE_KEYS)
                if key in FIELDS:
                    hint = f" (put it under [scales.{scale}.fixed])"
                _fail(where, f"unknown key {key!r}{hint}; allowed: {list(SCALE_KEYS)}")
        scales[scale] = {"fixed": _check_fixed(table.get("fixed", {}), f"{where}.fixed"),
                         "axes": _check_axes(table.get("axes", {}), f"{where}.axes")}
        if "seeds" in table:
            scales[scale]["seeds"] = _check_seeds(table["seeds"], f"{where} seeds")
    return scales


def check_dataset(name, where):
    """A dataset name of the registry, or a file or folder that exists and can be read."""
    from studies.data.datasets import DATASETS
    from studies.data.files import MNIST_FILES, _find_beside, reader_for
    if name in DATASETS:
        return
    path = Path(name)
    if not path.exists():
        if os.sep not in name and "/" not in name and not path.suffix:
            _fail(where, f"dataset = {name!r}: unknown dataset{suggest(name, DATASETS)}; "
                  f"expected one of {sorted(DATASETS)} or a path to a data file")
        _fail(where, f"dataset = {name!r}: no such file or directory")
    if not path.is_dir() and not path.is_file():
        _fail(where, f"dataset = {name!r}: not a regular file")
    files = [path]
    if path.is_dir():  # an MNIST IDX folder: its four files
        found = {base: _find_beside(path, base) for base in MNIST_FILES.values()}
        missing = [base for base, file in found.items() if file is None]
        if missing:
            _fail(where, f"dataset = {name!r}: a folder must hold the MNIST IDX files; missing "
                  f"{', '.join(missing)} (.gz allowed)")
        files = list(found.values())
    for file in files:
        try:
            with open(file, "rb") as handle:
                handle.read(1)
        except OSError as err:
            _fail(where, f"dataset = {name!r}: {file} cannot be read: {err.strerror or err}")
    try:
        reader_for(path)
    except ValueError as err:
        _fail(where, f"dataset = {name!r}: {err}")


def parse_spec(raw, path="<spec>"):
    """A StudySpec from a parsed TOML dict; errors name the file and key."""
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: expected a table of keys, got {type(raw).__name__}")
    if _depth(raw) > MAX_DEPTH:
        _fail(path, f"tables or arrays nested deeper than {MAX_DEPTH} levels")
    for key in raw:
        if key not in TOP_KEYS:
            _fail(path, f"unknown key {key!r}{suggest(key, TOP_KEYS)}; allowed: {list(TOP_KEYS)}")
    name = raw.get("name")
    if not isinstance(name, str) or not name.isidentifier():
        _fail(path, f"name = {name!r}: expected an identifier-like string")
    description, section = _check_text(raw, "description", path), _check_text(raw, "section",
                                                                              path)
    fixed = _check_fixed(raw.get("fixed", {}), f"{path} [fixed]")
    axes = _check_axes(raw.get("axes", {}), f"{path} [axes]")
    both = sorted(set(fixed) & set(axes))
    if both:
        _fail(path, f"{both[0]!r} is both fixed and swept; keep it in one of [fixed] or [axes]")
    seeds = _check_seeds(raw.get("seeds", [0]), f"{path} seeds")
    scales = _check_scales(raw, path)
    labels = _check_labels(raw, path)
    spec = StudySpec(name=name, description=description, path=path, fixed=fixed, axes=axes,
                     seeds=seeds, labels=labels, scales=scales, section=section,
                     figures=_check_figures(raw, path), raw=raw)
    datasets = set()
    for scale in SCALES:  # every scale must resolve
        try:
            datasets.update(config["dataset"] for config in spec.grid(scale))
        except (TypeError, ValueError) as err:
            raise SpecError(f"{path} (scale {scale}): {err}") from None
    for dataset in sorted(datasets):
        check_dataset(dataset, path)
    return spec
