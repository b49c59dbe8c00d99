"""Study specs: TOML files with fixed settings, sweep axes, seeds, label thresholds and scales.

    name = "vanishing"
    description = "one line"
    seeds = [0, 1]
    [fixed]            # configuration keys (studies.config.FIELDS) held constant
    [axes]             # key = [values]: the grid is their Cartesian product
    [labels]           # pathology thresholds (studies.analysis.labels.Thresholds)
    [scales.smoke]     # overrides per scale: seeds, and [scales.smoke.fixed] / [scales.smoke.axes]

Every error names the file, the key, the bad value and what is allowed.
"""
import itertools
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .config import FIELDS, check_value, resolve, suggest

SCALES = ("smoke", "quick", "full")
TOP_KEYS = ("name", "description", "seeds", "fixed", "axes", "labels", "scales", "section",
            "figures")
SCALE_KEYS = ("seeds", "fixed", "axes")
SPEC_DIR = Path(__file__).parent / "specs"


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
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise SpecError(f"{path}: not valid TOML: {err}") from None
    return parse_spec(raw, str(path))


def _fail(where, message):
    raise SpecError(f"{where}: {message}")


def _check_seeds(seeds, where):
    if not isinstance(seeds, list) or not seeds or any(
            isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
        _fail(where, f"seeds = {seeds!r}: expected a non-empty list of non-negative integers")
    if len(set(seeds)) != len(seeds):
        _fail(where, f"seeds = {seeds!r}: repeated seeds")
    return list(seeds)


def _check_fixed(table, where):
    if not isinstance(table, dict):
        _fail(where, f"expected a table of configuration keys, got {table!r}")
    out = {}
    for key, value in table.items():
        if key == "seed":
            _fail(where, "seed: use the top-level 'seeds' list instead")
        try:
            out[key] = check_value(key, value, where)
        except ValueError as err:
            raise SpecError(str(err)) from None
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
        try:
            out[key] = [check_value(key, v, where) for v in values]
        except ValueError as err:
            raise SpecError(str(err)) from None
        if len(set(map(repr, out[key]))) != len(out[key]):
            _fail(where, f"{key} = {values!r}: repeated values")
    return out


def parse_spec(raw, path="<spec>"):
    """A StudySpec from a parsed TOML dict; errors name the file and key."""
    for key in raw:
        if key not in TOP_KEYS:
            _fail(path, f"unknown key {key!r}{suggest(key, TOP_KEYS)}; allowed: {list(TOP_KEYS)}")
    name = raw.get("name")
    if not isinstance(name, str) or not name.isidentifier():
        _fail(path, f"name = {name!r}: expected an identifier-like string")
    fixed = _check_fixed(raw.get("fixed", {}), f"{path} [fixed]")
    axes = _check_axes(raw.get("axes", {}), f"{path} [axes]")
    both = sorted(set(fixed) & set(axes))
    if both:
        _fail(path, f"{both[0]!r} is both fixed and swept; keep it in one of [fixed] or [axes]")
    seeds = _check_seeds(raw.get("seeds", [0]), f"{path} seeds")
    scales = {}
    raw_scales = raw.get("scales", {})
    if not isinstance(raw_scales, dict):
        _fail(path, "[scales] must be a table of smoke/quick/full tables")
    for scale, table in raw_scales.items():
        where = f"{path} [scales.{scale}]"
        if scale not in SCALES:
            _fail(where, f"unknown scale {scale!r}{suggest(scale, SCALES)}; expected one of "
                  f"{list(SCALES)}")
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
    labels = raw.get("labels", {})
    try:
        from studies.analysis.labels import Thresholds
        Thresholds.from_dict(labels)
    except ValueError as err:
        raise SpecError(f"{path} [labels]: {err}") from None
    spec = StudySpec(name=name, description=str(raw.get("description", "")), path=path,
                     fixed=fixed, axes=axes, seeds=seeds, labels=labels, scales=scales,
                     section=str(raw.get("section", "")), figures=list(raw.get("figures", [])),
                     raw=raw)
    for scale in SCALES:  # every scale must resolve
        try:
            spec.grid(scale)
        except ValueError as err:
            raise SpecError(f"{path} (scale {scale}): {err}") from None
    return spec
